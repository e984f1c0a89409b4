"""splitbench-replay end to end on a tiny trace: via hydra.compose + run(cfg), and the console
script with hydra.run.dir (no torch imported, deterministic files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
from hydra import compose, initialize_config_dir

from experiments.apps import replay as replay_app
from experiments.config.schemas import CONF_DIR, register

register()

TINY = [
    "design=splitwise-hh",
    "design.prompt_machines=1",
    "design.token_machines=1",
    "trace=azure-conv-2023",
    "trace.resample_rate=2",
    "trace.resample_duration_s=15",
    "trace.seed=3",
    "progress=false",
]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("replay", overrides=list(overrides))


def test_replay_run_writes_files_and_is_deterministic(tmp_path, capsys):
    cfg = _cfg(*TINY)
    summary = replay_app.run(cfg, run_dir=tmp_path / "a")
    out = capsys.readouterr().out
    assert "throughput" in out and "wrote" in out
    req = pd.read_parquet(tmp_path / "a" / "requests.parquet")
    assert 10 <= len(req) <= 60  # ~2 req/s for 15 s
    assert {"request_id", "ttft_s", "e2e_s", "tbt_mean_s", "prompt_machine"} <= set(req.columns)
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["design"]["prompt_machines"] == 1 and s["design"]["token_machines"] == 1
    assert s["design"]["cost_per_hour"] == 76.0  # 2 x DGX-H100 from the specs
    assert s["slo"]["name"] == "paper" and isinstance(s["slo"]["all_ok"], bool)
    assert s["context"]["policy"] == "clip" and s["context"]["max_context"] == 4096
    assert s["context"]["clipped"] == s["trace"]["context"]["clipped"]
    assert summary["requests"]["completed"] == len(req)
    point = json.loads((tmp_path / "a" / "point.json").read_text())
    assert point["trace"]["resample_rate"] == 2.0 and point["trace"]["seed"] == 3
    replay_app.run(cfg, run_dir=tmp_path / "b")
    for f in ("requests.parquet", "summary.json", "point.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_baseline_and_strict_slo(tmp_path, capsys):
    cfg = _cfg("design=baseline-a100", "design.machines=2", "slo=strict", *TINY[3:])
    s = replay_app.run(cfg, run_dir=tmp_path)
    assert s["design"]["kind"] == "baseline" and s["design"]["prompt_machines"] == 2
    assert s["slo"]["name"] == "strict"
    assert "SLO (strict)" in capsys.readouterr().out


def test_strict_slo_changes_goodput_and_verdict(tmp_path, capsys):
    """The configured SLO is the one judged: goodput and the printed verdict follow it."""
    base = ["design=baseline-h100", "design.machines=1", *TINY[3:]]
    base = [a for a in base if not a.startswith("trace.resample_rate")] + ["trace.resample_rate=4"]
    paper = replay_app.run(_cfg(*base), run_dir=tmp_path / "paper")
    out_paper = capsys.readouterr().out
    strict = replay_app.run(_cfg(*base, "slo=strict"), run_dir=tmp_path / "strict")
    out_strict = capsys.readouterr().out
    # same replay (same seeds): only the judgment differs
    assert paper["requests"] == strict["requests"]
    assert paper["throughput_rps"] == strict["throughput_rps"]
    assert paper["slo"]["all_ok"] is True and strict["slo"]["all_ok"] is False
    assert strict["goodput_rps"] < paper["goodput_rps"]
    assert "SLO (paper) met" in out_paper
    assert "SLO (strict) MISSED" in out_strict
    assert strict["slo"]["limits"]["ttft"] == [1.5, 2.0, 3.5]


def test_console_script_with_run_dir_and_no_torch(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys\n"
        "from experiments.apps.replay import main\n"
        "main()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-c", code, *TINY, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (run_dir / "requests.parquet").exists() and (run_dir / "summary.json").exists()
    assert (run_dir / ".hydra" / "config.yaml").exists()  # Hydra records the config
    assert "design" in p.stdout and "SLO" in p.stdout


def test_ctrl_c_prints_one_line_exits_130_and_keeps_nothing(tmp_path, capsys, monkeypatch):
    from experiments import point

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(point, "simulate_point", interrupted)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("earlier")
    try:
        replay_app.run(_cfg(*TINY), run_dir=run_dir)
    except SystemExit as e:
        assert e.code == 130
    else:
        raise AssertionError("no SystemExit")
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert err == ["interrupted: replay stopped, nothing written (rerun to replay)"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["keep.txt"]


def test_summary_context_block_counts_clipped_requests(tmp_path, capsys):
    """The context policy's counts travel from the trace into summary.json and the table."""
    args = [*TINY, "trace.max_context=600"]
    s = replay_app.run(_cfg(*args), run_dir=tmp_path)
    out = capsys.readouterr().out
    c = s["context"]
    assert c["policy"] == "clip" and c["max_context"] == 600
    assert c["clipped"] > 0 and c["clipped_tokens"] > 0 and c["rejected"] == 0
    assert f"{c['clipped']} clipped ({c['clipped_tokens']} tokens removed)" in out
    rej = replay_app.run(_cfg(*args, "trace.context_policy=reject"), run_dir=tmp_path / "r")
    assert rej["context"]["rejected"] == c["clipped"] and rej["context"]["clipped"] == 0
    assert rej["requests"]["total"] == s["requests"]["total"] - c["clipped"]
