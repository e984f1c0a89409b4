"""The report's one set of cell and table helpers (experiments/report/format.py), and that the
report writes the study-table contract (experiments/study/tables.py) nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.report.format import config_text, md_rows, md_table, num, pct
from experiments.study import tables

REPORT = Path(__file__).resolve().parents[1] / "experiments" / "report"


def test_num_reads_every_missing_value_and_numbers_written_as_text():
    for missing in (None, float("nan"), np.nan, np.float64("nan"), pd.NA, pd.NaT):
        assert num(missing) == "-"
    assert num(3) == "3.00" and num(np.int64(1234), ",.0f") == "1,234"
    assert num(np.float32(2.5), ".1f") == "2.5" and num(7, "d") == "7"
    assert num("3.5") == "3.50"  # a number CSV left as text
    assert num("n/a") == "n/a"  # text that is no number stays
    assert pct(0.125) == "+12.5%" and pct(-0.0001) == "+0.0%" and pct(None) == "-"


def test_md_table_is_md_rows_of_its_formatted_cells():
    df = pd.DataFrame({"design": ["HH", None], "rate": [1.234, np.nan], "n": [3, 4]})
    cols = [("design", "design", ""), ("rate", "rate (req/s)", ".2f"), ("n", "points", "d")]
    want = md_rows(["design", "rate (req/s)", "points"], [["HH", "1.23", "3"], ["-", "-", "4"]],
                   [False, True, True])  # fmt: skip
    assert md_table(df, cols) == want
    assert want.splitlines()[1] == "|---|---:|---:|"


def test_config_text_of_split_and_colocated_configurations():
    assert config_text(pd.Series({"prompt_machines": 2.0, "token_machines": 3.0})) == "2P + 3T"
    assert config_text({"prompt_machines": np.nan, "machines": 8.0}) == "8"
    # a split row missing its token count is not read as one: its machines (or -)
    assert config_text({"prompt_machines": 2.0, "token_machines": np.nan, "machines": 5}) == "5"
    assert config_text({"prompt_machines": np.nan, "machines": np.nan}) == "-"


def _literals(path: Path) -> tuple[set[str], list[tuple]]:
    tree = ast.parse(path.read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}  # fmt: skip
    seqs = [
        tuple(e.value for e in n.elts)
        for n in ast.walk(tree)
        if isinstance(n, ast.Tuple | ast.List)
        and n.elts
        and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in n.elts)
    ]
    return strings, seqs


def test_the_report_writes_no_table_name_list_column_list_or_baseline_of_its_own():
    """The study tables' names and columns and the headline baselines are the contract's
    (experiments/study/tables.py): no module of the report spells them again, nor a ratio column
    of a headline baseline (``max_rate_vs_baseline-a100``)."""
    contract = {tables.TABLES, tables.OPTIONAL_TABLES, tables.STUDY_TABLES,
                tables.HEADLINE_BASELINES, *tables.TABLE_COLUMNS.values()}  # fmt: skip
    stray = []
    for p in sorted(REPORT.rglob("*.py")):
        strings, seqs = _literals(p)
        rel = p.relative_to(REPORT).as_posix()
        stray += [(rel, s) for s in seqs if s in contract]
        stray += [(rel, s) for s in strings for b in tables.HEADLINE_BASELINES if b in s]
    assert not stray, stray
