"""The committed validation report follows from its own records: every judged rung simulated
again from what it published, judged against its published real runs, gives its errors.csv and
capacity.csv value for value (a simulator, phase-model, trace or judge change shows here;
sim-vs-real itself is not gated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUB = ROOT / "results/reference/validation"


def test_committed_validation_report_is_recomputed_exactly(tmp_path):
    from experiments.validation.recompute import check

    assert (PUB / "predict.json").is_file() and (PUB / "config.json").is_file()
    pred = json.loads((PUB / "predict.json").read_text())
    assert set(pred) == {"baseline", "baseline2", "splitwise"}
    sims = sorted((PUB / "sims").glob("*/*/sim.json"))
    assert len(sims) == 24  # 8 rungs x 3 designs
    assert check(PUB, tmp_path) == []


def test_recompute_names_a_missing_file_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.validation.recompute", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and "config.json" in lines[0]


def test_recompute_names_a_broken_sim_file_in_one_line(tmp_path):
    import shutil

    for f in ("config.json", "predict.json", "errors.csv"):
        shutil.copyfile(PUB / f, tmp_path / f)
    bad = tmp_path / "sims" / "baseline" / "conv-1R" / "sim.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    r = subprocess.run([sys.executable, "-m", "experiments.validation.recompute", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1
    assert str(bad) in lines[0] and "JSONDecodeError" in lines[0]


def test_committed_iteration_audit_follows_from_the_published_runs():
    import pandas as pd

    from experiments.validation.iteration_audit import audit, published_rungs

    want = (PUB / "iteration_audit.csv").read_text()
    got = audit(published_rungs(PUB)).to_csv(index=False, float_format="%.4g")
    assert got == want
    df = pd.read_csv(PUB / "iteration_audit.csv")
    # every audited design's quiet iterations are there, with the real batches of its rungs
    assert {"baseline", "splitwise"} <= set(df.loc[df["event"] == "quiet", "design"])
