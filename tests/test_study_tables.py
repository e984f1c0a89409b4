"""The study's contracts after issue 23: a design answers its own shape, each study table holds
the columns its contract (experiments.study.tables) names with the kinds it names, every task
kind is one class, and the headline baselines and the slowdown reference's defaults are written
once."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import study as study_app
from experiments.config.schemas import CONF_DIR, register
from replay.designs import DesignConfig
from replay.errors import DesignError
from tests.test_study_variants import variant_aware

register()
ROOT = Path(__file__).resolve().parent.parent


def test_a_design_answers_its_own_shape():
    b = DesignConfig("b", kind="baseline", machine="dgx-a100", machines=3)
    s = DesignConfig("s", kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-a100")
    assert (b.pool_names, b.count_keys, b.machine_specs) == (
        ("machines",), ("machines",), ("dgx-a100",))  # fmt: skip
    assert (s.pool_names, s.count_keys, s.machine_specs) == (
        ("prompt", "token"), ("prompt_machines", "token_machines"), ("dgx-h100", "dgx-a100"))  # fmt: skip
    assert not b.is_split and s.is_split
    assert b.counts == (3,) and s.counts == (None, None)
    s2 = s.with_counts((2, 5))
    assert s2.counts == (2, 5) and s.counts == (None, None)  # a copy
    assert s2.count_fields((2, 5)) == {"prompt_machines": 2, "token_machines": 5}
    assert b.with_counts([7]).machines == 7
    with pytest.raises(DesignError, match=r"^design.counts: a splitwise design has 2 pool\(s\)"):
        s.with_counts((1,))


def test_pools_follow_the_design_shape():
    from experiments.config.schemas import SearchConf
    from experiments.study import pools_of

    s = DesignConfig("s", kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-a100")
    search = SearchConf()
    pools = pools_of(s, search)
    assert [p.name for p in pools] == ["prompt", "token"]
    assert [(p.min_count, p.max_count) for p in pools] == [
        (search.prompt_min, search.prompt_max), (search.token_min, search.token_max)]  # fmt: skip
    assert [(p.min_count, p.max_count) for p in pools_of(s, search, (3, 4))] == [(1, 3), (1, 4)]
    b = DesignConfig("b", kind="baseline", machine="dgx-a100")
    assert [(p.name, p.max_count) for p in pools_of(b, search)] == [
        ("machines", search.machines_max)]  # fmt: skip


def test_every_table_holds_its_contract_columns_of_their_kinds(tmp_path):
    """A study with every task kind: each table written holds the columns
    ``tables.TABLE_COLUMNS`` names, of the kinds ``tables.COLUMN_KINDS`` names, and every
    ratio column of the headline baselines."""
    from experiments.study.kinds import KINDS
    from experiments.study.tables import (
        COLUMN_KINDS,
        HEADLINE_BASELINES,
        RATIO_METRICS,
        STUDY_TABLES,
        TABLE_COLUMNS,
        ratio_column,
    )

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("study", overrides=[
            f"paths.root={tmp_path}", "experiment=tiny", "study.report=false",
            "study.traces=[azure-conv-2023,azure-code-2023]", "study.mismatch=true",
            "study.load_factors=[0.5,1.0]", "study.batch_overload=3.0", "study.batch_configs=2",
            "study.variant_budget=iso-power",
            "study.variants=[{name: rr, group: routing, set: {scheduler.policy: round-robin}}]",
        ])  # fmt: skip
    out = study_app.run(cfg, evaluator=variant_aware)
    meta = json.loads((out["dir"] / "study.json").read_text())
    assert {t["kind"] for t in meta["tasks"]} == set(KINDS)  # every kind ran
    assert set(meta["tables"]) == set(STUDY_TABLES)  # every table written
    for name, rec in meta["tables"].items():
        assert rec["rows"] > 0, name
        missing = set(TABLE_COLUMNS[name]) - set(rec["columns"])
        assert not missing, (name, missing)
        df = pd.read_csv(out["dir"] / f"{name}.csv")
        for col in TABLE_COLUMNS[name]:
            if col in COLUMN_KINDS and df[col].notna().any():  # an empty column is text
                assert rec["columns"][col] == COLUMN_KINDS[col], (name, col)
    for table, metrics in RATIO_METRICS.items():
        for m in metrics:
            for b in HEADLINE_BASELINES:
                assert ratio_column(m, b) in meta["tables"][table]["columns"]


def _literals(path: Path) -> set[str]:
    return {
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


#: files that still write a literal below while their owners move it; this list only shrinks
#: (the profiles schema's default now reads characterize's REFERENCE_GPU)
PENDING: set[str] = set()


def test_headline_baselines_and_slo_reference_are_written_once():
    """The headline baselines live in experiments/study/tables.py, the slowdown reference's GPU
    in characterize's phase model set (REFERENCE_GPU): no other module of experiments/ or
    replay/ writes them."""
    once = {
        "baseline-a100": "experiments/study/tables.py",
        "baseline-h100": "experiments/study/tables.py",
        "a100-80gb": "characterize/modeling/phase/model_set.py",
    }
    stray = set()
    for pkg in ("experiments", "replay"):
        for p in (ROOT / pkg).rglob("*.py"):
            rel = p.relative_to(ROOT).as_posix()
            for lit in _literals(p) & set(once):
                if rel != once[lit]:
                    stray.add(rel)
    assert stray <= PENDING, sorted(stray - PENDING)
