"""The report on tiny runs: a synthetic study plus a real tiny replay run -> report.md, PNG + SVG
figures with their CSVs, ratio tables, deterministic output, one-line input errors."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import replay as replay_app
from experiments.apps import report as report_app
from experiments.apps import study as study_app
from experiments.errors import ExperimentError
from experiments.report import write_report
from experiments.schemas import CONF_DIR, register

register()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("sb")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        scfg = compose(
            "study", overrides=[f"paths.root={root}", "experiment=tiny", "study.report=false"]
        )
        rcfg = compose(
            "replay",
            overrides=[
                "design=splitwise-hh",
                "design.prompt_machines=1",
                "design.token_machines=1",
                "trace.resample_rate=2",
                "trace.resample_duration_s=10",
                "progress=false",
            ],
        )
    study = study_app.run(scfg, evaluator=synthetic)["dir"]
    run_dir = root / "runs" / "hh"
    replay_app.run(rcfg, run_dir=run_dir)
    return root, study, run_dir


@pytest.mark.slow
def test_report_from_study_and_run(inputs):
    root, study, run_dir = inputs
    out = root / "report"
    path = write_report([study, run_dir], out, phase=False)
    md = path.read_text()
    assert "## Study `tiny`" in md and "## Replay runs" in md
    assert "**Conversation trace, iso-power**" in md and "**Conversation trace, iso-cost**" in md
    assert "x Baseline-A100" in md and "x Baseline-H100" in md
    assert "### Iso-throughput" in md and "### Provisioning heatmap" in md
    assert "config.yaml" in md and "code `splitbench-" in md
    figs = out / "figures"
    for name in (
        "tiny_throughput",
        "tiny_heatmap",
        "tiny_azure-conv-2023_cdf",
        "tiny_azure-conv-2023_slo_vs_rate",
        "runs_cdf",
    ):
        for ext in ("png", "svg", "csv"):
            assert (figs / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
        assert f"figures/{name}.png" in md
    # every design's row at iso-power, with its ratio to Baseline-H100
    budget = pd.read_csv(study / "budget.csv")
    iso = budget[budget["budget"] == "iso-power"]
    assert set(iso["design"]) == {"baseline-a100", "baseline-h100", "splitwise-hh", "splitwise-ha"}
    bh = iso[iso["design"] == "baseline-h100"].iloc[0]
    assert bh["max_rate_vs_baseline-h100"] == 1.0
    for _, r in iso.iterrows():
        assert f"| {r['design_display']} |" in md
    # deterministic: a second report is byte-identical (markdown, CSV and SVG)
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_report([study, run_dir], out, phase=False)
    second = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    for name in first:
        if not name.endswith(".png"):
            assert first[name] == second[name], name


@pytest.mark.slow
def test_report_app_with_phase_figures(inputs):
    root, study, run_dir = inputs
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "report",
            overrides=[
                f"paths.root={root}",
                f"inputs=[{study}]",
                "output_dir=rep",
                "formats=[png]",
            ],
        )
    path = report_app.run(cfg)
    assert path == root / "rep" / "report.md"
    md = path.read_text()
    assert "## Phase characterization" in md and "held-out error" in md
    for name in ("phase_prefill_latency", "phase_decode_latency", "phase_power"):
        assert (root / "rep" / "figures" / f"{name}.png").exists()
        data = pd.read_csv(root / "rep" / "figures" / f"{name}.csv")
        assert len(data) > 10


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ExperimentError, match="inputs: no such folder"):
        write_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExperimentError, match="holds no study.json"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "study.json").write_text("{not json")
    with pytest.raises(ExperimentError, match="study.json: cannot read JSON"):
        write_report([bad], tmp_path / "out")
