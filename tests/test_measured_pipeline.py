"""Measure -> fit -> replay -> report with no hand steps (issue 9): a CPU profile of the tiny
smoke-test model, found by ``profiles=measured`` right after ``splitbench-characterize``.

Every step is the console script a user runs, in a fresh project folder (``SPLITBENCH_ROOT``);
a tiny sweep and a 20 s slice of the coding trace keep it to a few seconds of work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")

BIN = Path(sys.executable).parent


def _run(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SPLITBENCH_ROOT": str(cwd),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    return subprocess.run(
        [str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


REPLAY = [
    "model=tiny-llama",
    "gpu=cpu",
    "design=baseline",
    "design.machines=1",
    "profiles=measured",
    "trace=azure-code-2023",
    "trace.end_s=20",
    "progress=false",
]
# the paper's DGX-A100 never ran the smoke-test model: slowdowns against the CPU profile itself
SELF_REFERENCE = [
    "profiles.slo_reference_source=${profiles.source}",
    "profiles.slo_reference_gpu=cpu",
    "profiles.slo_reference_tp=1",
]


def test_characterize_fit_replay_report_on_cpu(tmp_path):
    # 1. measure: writes results/profiles/<run>/profiles.csv, labelled with the device (cpu)
    _ok(
        _run(
            "splitbench-characterize",
            "model=tiny-llama",
            "device=cpu",
            "sweep=tiny",
            "power=off",
            "progress=false",
            "fit=false",
            cwd=tmp_path,
        )
    )
    csv = tmp_path / "results/profiles/tiny-llama-tp1-native-cpu-tiny/profiles.csv"
    prof = pd.read_csv(csv)
    assert len(prof) == 8 + 12  # the tiny sweep: 8 prefill and 12 decode points
    assert set(prof["gpu"]) == {"cpu"} and prof["source"].str.startswith("cpu").all()

    # 2. fit the folder the study and profiles=measured read (every table under it)
    out = _ok(_run("splitbench-profiles", "fit", "--source", "results/profiles", cwd=tmp_path))
    assert "tiny-llama-tp1-native-cpu-tiny/profiles.csv" in out  # the merged table is named
    fit_rows = [ln.split() for ln in out.splitlines() if ln.startswith("tiny-llama ")]
    assert [(r[1], r[2], r[3]) for r in fit_rows] == [
        ("cpu", "1", "prefill"),
        ("cpu", "1", "decode"),
    ]
    assert all(r[9] == "fallback" for r in fit_rows)  # no power measured on a CPU run: marked
    assert max(len(ln) for ln in out.splitlines()) <= 100

    # 3. replay with profiles=measured: the default slowdown reference (the paper's
    # DGX-A100 TP8) has no tiny-llama, which is one line naming the settings to change
    bad = _run("splitbench-replay", *REPLAY, "hydra.run.dir=results/runs/bad", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no slowdown reference tiny-llama/a100-80gb/tp8" in bad.stderr
    assert "profiles.slo_reference_source" in bad.stderr
    run_dir = tmp_path / "results/runs/smoke"
    _ok(
        _run(
            "splitbench-replay", *REPLAY, *SELF_REFERENCE, f"hydra.run.dir={run_dir}", cwd=tmp_path
        )
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    point = json.loads((run_dir / "point.json").read_text())
    assert point["profiles"]["source"] == str(tmp_path / "results/profiles")
    assert point["profiles"]["tables"] == ["tiny-llama-tp1-native-cpu-tiny/profiles.csv"]
    assert point["profiles"]["slo_reference"]["gpu"] == "cpu"
    reqs = pd.read_parquet(run_dir / "requests.parquet")
    assert summary["requests"]["completed"] == len(reqs) > 10
    assert (reqs["prompt_tokens"] + reqs["output_tokens"] <= 256).all()  # the model's window
    # the reference is the same machine alone: a request that waited nothing has slowdown 1
    assert summary["slowdown"]["ttft"]["p50"] == pytest.approx(1.0, rel=0.05)

    # 4. report on the run
    _ok(
        _run(
            "splitbench-report",
            f"inputs=[{run_dir}]",
            "model=tiny-llama",
            "profiles=measured",
            "output_dir=results/report",
            "formats=[png]",
            cwd=tmp_path,
        )
    )
    md = (tmp_path / "results/report/smoke/report.md").read_text()  # a folder per inputs set
    assert "## Replay runs" in md and "Baseline-CPU (smoke test)" in md


def test_measured_profiles_are_git_ignored_but_the_readme():
    """A CPU smoke profile never slips into a commit: results/profiles/ is ignored but its
    README (a measured table is committed only on purpose, with git add -f)."""
    import shutil

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(rel: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", rel], cwd=root).returncode == 0

    assert ignored("results/profiles/tiny-llama-tp1-native-cpu-tiny/profiles.csv")
    assert ignored("results/profiles/profiles.csv")
    assert not ignored("results/profiles/README.md")
