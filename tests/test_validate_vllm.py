"""splitbench-validate against real vLLM CPU servers (marked ``vllm``; skipped without vLLM).

A few seconds of trace; the disaggregated design (two vLLM instances, the connector and the
proxy), so that the KV calibration and the serving probes run for real (and the co-located one
for the alpha probe); then the load-generator step as far as the merged pieces allow. Each test is bounded (the app's own timeouts, and subprocess timeouts).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]

from test_validate import _ports, _ps_args  # noqa: E402

from experiments.validation.procs import free_port  # noqa: E402


def _app(tmp_path, *args, timeout=900, env=None):
    exe = Path(sys.executable).parent / "splitbench-validate"
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path), **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=timeout, check=False)  # fmt: skip


BASE = [
    "repeats=1", "profile.mode=skip", "calibrate.lengths=[200,600]", "calibrate.repeats=2",
    "loads=[{name: smoke, rate: 1.0, duration_s: 4, max_prompt_tokens: 256, "
    "max_output_tokens: 16}]",
    "deploy.prefill.kvcache_gib=1", "deploy.decode.kvcache_gib=1", "deploy.max_model_len=2048",
    "preflight.on_busy=flag",
]  # fmt: skip

#: a second model shape (issue 22: more layers and KV heads, head size 128), a user spec
SECOND_SHAPE = """name = "tiny-llama-kv4"
display_name = "tiny Llama, 6 layers, 4 KV heads of 128 (vLLM CPU test)"
family = "llama"
num_layers = 6
hidden_size = 512
num_attention_heads = 4
num_kv_heads = 4
head_dim = 128
ffn_size = 1536
vocab_size = 32000
max_context_tokens = 4096
bytes_per_param = 4
kv_bytes_per_element = 4
gated_mlp = true
"""


def test_smoke_second_model_shape_with_long_prompts(tmp_path):
    """The disaggregated crash of issue 22 (another shape, long coding prompts sharing the
    prefill's step budget): the run completes, the connector roles are set, and no engine
    reuses KV (prefix-cache counters checked by the run itself)."""
    specs = tmp_path / "specs" / "models"
    specs.mkdir(parents=True)
    (specs / "tiny-llama-kv4.toml").write_text(SECOND_SHAPE)
    env = {"SPLITBENCH_SPEC_PATH": str(tmp_path / "specs")}
    r = _app(tmp_path, "designs=[splitwise]", *[a for a in BASE if not a.startswith("loads=")],
             "loads=[{name: code, trace: azure-code-2023, rate: 1.5, duration_s: 6, "
             "max_prompt_tokens: 900, max_output_tokens: 8}]",
             *_ports(), "model.name=tiny-llama-kv4", f"model.dir={tmp_path / 'm'}",
             "hydra.run.dir=out", env=env)  # fmt: skip
    out = tmp_path / "out"
    assert r.returncode == 0, r.stderr[-2000:]
    deploy = json.loads((out / "deploy-splitwise" / "deploy.json").read_text())
    assert deploy["connector"]["prefill"]["kv_role"] == "kv_producer"
    assert deploy["connector"]["decode"]["kv_role"] == "kv_consumer"
    assert "--no-enable-chunked-prefill" in deploy["servers"]["prefill"]["argv"]
    cal = json.loads((out / "calibrate-splitwise" / "kv_transfer.json").read_text())
    assert cal["kv_bytes_per_token_spec"] == 2 * 6 * 4 * 128 * 4
    rec = json.loads((out / "replay-splitwise-code-r0" / "records.json").read_text())
    assert rec["prefix_cache"]["prefill"]["vllm:prefix_cache_hits"] == 0
    assert rec["run_delay"]["servers"]["decode"]["cpu_s"] > 0
    assert _ps_args(str(tmp_path)) == []


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from experiments.validation.model_dir import build_model_dir

    return str(build_model_dir(tmp_path_factory.mktemp("m") / "tiny-llama-512"))


#: the committed phase profile of the validation report (vLLM engine iterations on this CPU)
PROFILE = Path(__file__).resolve().parents[1] / "results/reference/validation/profile/profiles.csv"


#: short serving probes (the defaults take about a minute per design)
PROBES = ["probes.delta_streams=[1,4,16]", "probes.delta_output_tokens=32",
          "probes.alpha_lengths=[16,256,768]", "probes.alpha_repeats=2",
          "probes.stall_lengths=[200,600,1000]", "probes.stall_repeats=1",
          "probes.stall_streams=2"]  # fmt: skip


def test_smoke_splitwise_end_to_end(tmp_path, model_dir):
    # the whole chain: fit, calibrate, the serving probes, simulate with the measured serving
    # component (the split design as vLLM disaggregated serving), replay, compare; baseline
    # too, for the alpha probe
    r = _app(tmp_path, "designs=[baseline,splitwise]", *BASE, *_ports(), *PROBES,
             f"deploy.colocated.port={free_port()}", f"model.dir={model_dir}",
             "model.build=false", "hydra.run.dir=out", "profile.mode=source",
             f"profile.source={PROFILE}", "report_dir=pub")  # fmt: skip
    out = tmp_path / "out"
    # the probes ran on the real servers: raw records, fits and the engines' KV blocks
    for design, kinds in (("baseline", {"alpha", "delta"}), ("splitwise", {"delta", "stall"})):
        d = out / f"probe-{design}"
        assert (d / "step.json").is_file(), r.stderr[-2000:]
        rec = pd.read_csv(d / "probes.csv")
        assert set(rec["probe"]) == kinds and (rec["seconds"] > 0).all()
        assert rec[rec["probe"] == "delta"]["streams"].nunique() == 3
        res = json.loads((d / "serving.json").read_text())
        assert all(v >= 0 for v in res["terms"].values())
        eng = res["engines"]["decode" if design == "splitwise" else "colocated"]
        # 1 GiB of float32 KV of the tiny Llama (4096 bytes per token) in 128-token blocks
        assert eng["block_size"] == 128 and eng["num_gpu_blocks"] == 2**30 // 4096 // 128
        assert json.loads((d / "records.json").read_text())["prefix_cache"]
    stall = pd.read_csv(out / "probe-splitwise" / "probes.csv").query("probe == 'stall'")
    assert set(stall["injected_tokens"]) == {128, 512, 896}  # whole blocks of L - 1
    res = json.loads((out / "probe-baseline" / "serving.json").read_text())
    alpha = res["fits"]["alpha"]
    # the sign of alpha0 is a measurement (a few ms either way on this CPU engine): the
    # simulator gets the fit clamped at 0, and a clamp is said in the notes
    assert alpha["points"] == 6 and np.isfinite(alpha["a"]) and np.isfinite(alpha["b"])
    assert res["terms"]["arrival_s"] == max(0.0, alpha["a"])
    assert (alpha["a"] < 0) == any(n.startswith("arrival_s:") for n in res["notes"])
    cal = json.loads((out / "calibrate-splitwise" / "kv_transfer.json").read_text())
    assert cal["handover_fit"]["points"] == 2
    per = {p["prompt_tokens"]: p for p in cal["per_length"]}
    # the connector wrote the KV of whole 128-token blocks (vLLM's CPU block size): more for the
    # longer prompt, and the decode instance injected them (128 of 200, 512 of 600 tokens)
    assert per[600]["stored_bytes"] > per[200]["stored_bytes"] > 0
    assert per[200]["injected_tokens_measured"] == 128
    assert per[600]["injected_tokens_measured"] == 512
    assert all(p["handover_s"] > 0 for p in per.values())
    deploy = json.loads((out / "deploy-splitwise" / "deploy.json").read_text())
    assert set(deploy["servers"]) == {"prefill", "decode", "proxy"}
    assert deploy["connector"]["prefill"]["kv_connector"] == "ExampleConnector"
    loadgen = Path(sys.executable).parent / "splitbench-loadgen"
    if loadgen.exists():
        assert r.returncode == 0, r.stderr[-2000:]
        summ = json.loads((out / "replay-splitwise-smoke-r0" / "run" / "summary.json").read_text())
        assert summ["requests"]["completed"] >= 1
        # the speed sentinel ran before the real run (4 streams: the most the probes ran up
        # to 8) and the rung was simulated with its excess gap as per-iteration overhead
        sent = json.loads((out / "replay-splitwise-smoke-r0" / "sentinel.json").read_text())
        assert sent["streams"] == 4 and sent["n_gaps"] > 0 and 0.2 < sent["factor"] < 5
        sim = json.loads((out / "simulate-splitwise-smoke" / "step.json").read_text())
        assert sim["result"]["sentinel_factor"] == pytest.approx(sent["factor"], rel=1e-5)
        assert sim["config"]["speed_factor"] == 1.0
        assert sim["config"]["sentinel_as"] == "overhead"
        assert (tmp_path / "pub" / "drift.csv").is_file()
        ov = sim["config"]["overrides"]
        assert {"design.machine_policy=vllm", "scheduler.vllm.num_gpu_blocks=2048",
                "scheduler.kv_transfer.handover_s=0"} <= set(ov)  # fmt: skip
        assert any(o.startswith("serving.decode_work_s=") for o in ov)  # decode_leg_as=work
        assert not any(o.startswith("scheduler.kv_transfer.per_token_s=") for o in ov)
        err = pd.read_csv(out / "compare-splitwise-smoke" / "errors.csv")
        assert len(err) == 10 and err["real"].notna().all() and err["sim"].notna().all()
        text = (tmp_path / "pub" / "report.md").read_text()
        assert "## Serving component (probe-<design>, serving.csv)" in text
        assert "## Remaining gap per component, absolute ms" in text
        assert (tmp_path / "pub" / "serving.csv").is_file()
        assert (tmp_path / "pub" / "cdf-splitwise-smoke.png").is_file()
    else:  # the load generator is another branch's: the run stops there, one line
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            "error: step replay-splitwise-smoke-r0: splitbench-loadgen is not installed in "
            "this environment"
        ]
    assert _ps_args(str(tmp_path)) == []  # every server stopped


def test_connector_that_fails_to_load(tmp_path, model_dir):
    r = _app(tmp_path, "designs=[splitwise]", *BASE, *_ports(), f"model.dir={model_dir}",
             "model.build=false", "hydra.run.dir=out",
             "deploy.connector.name=NoSuchConnector")  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: step deploy-splitwise: ")
    assert "exited with code" in lines[0]
    assert (tmp_path / "out" / "trace-smoke" / "step.json").is_file()
    assert _ps_args(str(tmp_path)) == []


def test_kv_cache_too_small(tmp_path, model_dir):
    r = _app(tmp_path, "designs=[baseline]", *BASE, f"deploy.colocated.port={free_port()}",
             "deploy.colocated.kvcache_gib=0.001", f"model.dir={model_dir}",
             "model.build=false", "hydra.run.dir=out")  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: step deploy-baseline: colocated")
    assert _ps_args(str(tmp_path)) == []


def test_mini_ladder_baseline(tmp_path, model_dir):
    """make validate in small: the simulator's C and R* place a two-rung ladder (0.5 x R* and
    an overload at 1.3 x C), each rung has its speed sentinel and is simulated at its factor,
    and the judge writes errors and capacity for both sides."""
    r = _app(tmp_path, "designs=[baseline]", "ladder.enabled=true", "ladder.min_requests=20",
             "ladder.fractions={azure-conv-2023: [0.5]}", "~ladder.fractions.azure-code-2023",
             "~ladder.sentinel.azure-conv-2023", "repeats=1", "profile.mode=source", f"profile.source={PROFILE}",
             *PROBES, "probes.sentinel_streams=4", f"deploy.colocated.port={free_port()}",
             f"model.dir={model_dir}", "model.build=false", "preflight.on_busy=flag",
             "compare.bootstrap=200", "hydra.run.dir=out")  # fmt: skip
    out = tmp_path / "out"
    assert r.returncode == 0, r.stderr[-2000:]
    pred = json.loads((out / "predict-baseline" / "step.json").read_text())["result"]
    assert 0 < pred["rstar_rps"] <= pred["capacity_rps"]
    rungs = sorted(p.name for p in out.glob("replay-baseline-*-r0"))
    assert rungs == ["replay-baseline-conv-0.5R-r0", "replay-baseline-conv-1.3C-r0"]
    for name in rungs:
        sent = json.loads((out / name / "sentinel.json").read_text())
        assert sent["streams"] == 4 and sent["factor"] > 0
    err = pd.read_csv(out / "judge-baseline" / "errors.csv")
    assert set(err["load"]) == {"conv-0.5R", "conv-1.3C"}
    lat = err[err["metric"].isin(["ttft", "tbt", "e2e"])]
    assert lat["sim"].notna().all() and lat["real"].notna().all()
    cap = pd.read_csv(out / "judge-baseline" / "capacity.csv").set_index("quantity")
    assert np.isfinite(cap.loc["capacity_rps", ["sim", "real"]].astype(float)).all()
    assert (out / "drift.csv").is_file() and (out / "report.md").is_file()
    assert _ps_args(str(tmp_path)) == []
