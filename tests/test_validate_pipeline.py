"""splitbench-validate's structure and correctness without vLLM (issues 22 and 25): the typed
config, Ctrl-C mid-run, one-line errors, the connector roles and whole prompts of the
disaggregated deployment, per-run prompt ids, prefix-cache counters, the preflight records and
the judge (bootstrap errors, capacity, R*, the ladder) on synthetic records."""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_validate import fake_python  # noqa: F401 - the fixture

from experiments.errors import ExperimentError
from experiments.validation import judge
from experiments.validation.config import (
    DeployConfig,
    ValidateConfig,
    from_plain,
)
from experiments.validation.errors import StepError

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- structure and config
def test_validation_never_imports_the_apps_layer():
    for f in sorted((ROOT / "experiments" / "validation").rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                assert not n.startswith("experiments.apps"), f"{f.name} imports {n}"
    door = (ROOT / "experiments" / "apps" / "validate.py").read_text().splitlines()
    assert len(door) <= 110


def test_yaml_ports_are_the_schema_defaults():
    from test_validate import _default_cfg

    c = _default_cfg()
    d = DeployConfig()
    assert (c.deploy.colocated.port, c.deploy.prefill.port, c.deploy.decode.port,
            c.deploy.proxy_port) == (d.colocated.port, d.prefill.port, d.decode.port,
                                     d.proxy_port)  # fmt: skip
    text = (ROOT / "experiments" / "conf" / "validate.yaml").read_text()
    import re

    assert not re.search(r"\bport\b|_port", "".join(ln.split("#")[0] for ln in text.splitlines()))


def test_kv_bytes_come_from_the_model_spec():
    from test_validate import _default_cfg

    from characterize.modeling.specs import load_model

    c = _default_cfg()
    assert not hasattr(c.calibrate, "kv_bytes_per_token")
    assert c.model.spec().kv_bytes_per_token == load_model("tiny-llama-512").kv_bytes_per_token


def _plain(**over) -> ValidateConfig:
    base = {"loads": [{"name": "a", "rate": 1.0}], "model": {"dir": "/x"}}
    base.update(over)
    return from_plain(base)


@pytest.mark.parametrize(
    ("over", "msg"),
    [
        ({"loads": [{"name": "a", "rate": 1.0, "prompt_scale": -1}]},
         "loads[0].prompt_scale: must be > 0, got -1"),
        ({"load_defaults": {"max_prompt_tokens": 0}}, "load_defaults.max_prompt_tokens"),
        ({"loads": [{"name": "a", "rate": 1.0, "max_context": 1}]}, "loads[0].max_context"),
        ({"loads": [{"name": "a", "rate": 1.0, "bogus": 1}]}, "loads[0].bogus: unknown key"),
        ({"deploy": {"proxy_port": 8120}}, "deploy.proxy_port: port 8120 is also deploy.decode"),
        ({"deploy": {"prefill": {"max_num_batched_tokens": 512}}},
         "deploy.prefill.max_num_batched_tokens: must be >= deploy.max_model_len"),
        ({"deploy": {"prefix_caching": True}}, "deploy.prefix_caching"),
        ({"loadgen": {"cpus": "99999"}}, "loadgen.cpus: core(s) 99999 do not exist"),
        ({"deploy": {"dtype": "float16"}}, "deploy.dtype: float16 (2 bytes) disagrees"),
        ({"calibrate": {"lengths": [5, 5000]}}, "calibrate.lengths[1]"),
        ({"probes": {"alpha_lengths": [16, 5000]}}, "probes.alpha_lengths[1]: must be <"),
        ({"probes": {"alpha_lengths": [16, 16]}}, "probes.alpha_lengths: needs at least two"),
        ({"probes": {"delta_streams": [1, 64]}}, "probes.delta_streams: needs two distinct"),
        ({"probes": {"stall_lengths": [0]}}, "probes.stall_lengths[0]: must be >= 1"),
        ({"probes": {"bogus": 1}}, "probes.bogus: unknown key"),
        ({"probes": {"sentinel_streams": -1}}, "probes.sentinel_streams: must be >= 0"),
        ({"probes": {"delta_streams": [4, 8], "sentinel_streams": 2}},
         "probes.sentinel_streams: must be 0 or >= the fewest probes.delta_streams (4), got 2"),
        ({"deploy": {"colocated": {"server_cpus": "99999"}}},
         "deploy.colocated.server_cpus: core(s) 99999 do not exist"),
    ],
)  # fmt: skip
def test_config_checks_name_the_key(over, msg):
    with pytest.raises(ExperimentError) as e:
        _plain(**over).check()
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_loads_take_load_defaults_and_the_context():
    c = _plain(loads=[{"name": "a", "rate": 2.0, "output_scale": 0.5}],
               load_defaults={"prompt_scale": 0.1}).check()  # fmt: skip
    (ld,) = c.loads_resolved()
    assert (ld.rate, ld.prompt_scale, ld.output_scale, ld.max_context) == (2.0, 0.1, 0.5, 4096)


def test_one_token_scaling_rule_with_caps():
    """The validation's loads and the load generator's ``lengths`` scale with one function
    (issue 23: it was written twice beside scale_tokens): max(1, round(x * s)), half to even,
    then the cap; a factor of 1 still lifts a 0; a new table, block hashes kept."""
    import pandas as pd

    from traces.transforms import scale_capped, scaled_lengths

    df = pd.DataFrame({"request_id": [0, 1, 2], "arrival_s": [0.0, 1.0, 2.0],
                       "prompt_tokens": [2, 5, 4000], "output_tokens": [0, 3, 7],
                       "block_hashes": ["a", "b", "c"]})  # fmt: skip
    out, changed = scale_capped(df, 0.25, 1.0, 512, None)
    assert out["prompt_tokens"].tolist() == [1, 1, 512]
    assert out["output_tokens"].tolist() == [1, 3, 7]
    assert changed["prompt_tokens"].tolist() == [True, True, True]
    assert changed["output_tokens"].tolist() == [True, False, False]
    assert "block_hashes" in out and df["prompt_tokens"].tolist() == [2, 5, 4000]
    assert scaled_lengths([5, 6, 7], 0.5).tolist() == [2, 3, 4]


def test_a_user_model_folder_of_the_spec_shape_is_accepted(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8,
        "num_key_value_heads": 2, "intermediate_size": 1536, "vocab_size": 32000}))  # fmt: skip
    _plain(model={"dir": str(tmp_path), "build": False}).check()
    (tmp_path / "config.json").write_text(json.dumps({"num_key_value_heads": 4}))
    with pytest.raises(ExperimentError, match="num_key_value_heads = 4, but model spec"):
        _plain(model={"dir": str(tmp_path), "build": False}).check()


# ---------------------------------------------------------------- processes
def test_empty_log_is_said_so(tmp_path):
    from experiments.validation.procs import ServerProcess, Supervisor, free_port

    port = free_port()
    srv = ServerProcess("colocated", [sys.executable, "-c", "import sys; sys.exit(4)"],
                        tmp_path / "colocated.log", f"http://127.0.0.1:{port}/health", port)  # fmt: skip
    with Supervisor() as sup, pytest.raises(StepError) as e:
        sup.start(srv, "deploy", 10)
    msg = str(e.value)
    assert "exited with code 4" in msg and "colocated.log is empty" in msg and ": )" not in msg


def test_log_contains_is_gone():
    from experiments.validation import procs

    assert not hasattr(procs, "log_contains")


def test_ctrl_c_mid_run_is_one_line_exit_130_and_resumes(tmp_path, fake_python):  # noqa: F811
    """Issue 25: Ctrl-C during the calibration: 'interrupted', exit 130, servers stopped,
    finished steps kept; the rerun reuses them."""
    from test_validate import APP_ARGS, _model_dir, _ports, _ps_args

    model = _model_dir(tmp_path)
    exe = Path(sys.executable).parent / "splitbench-validate"
    args = [*APP_ARGS, *_ports(), f"model.dir={model}", f"deploy.python={fake_python}",
            "hydra.run.dir=out", "calibrate.lengths=[1000,2000]", "calibrate.repeats=50"]  # fmt: skip
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    p = subprocess.Popen([str(exe), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        for line in p.stdout:
            if line.startswith("[calibrate-splitwise] running") or time.monotonic() > deadline:
                break
        time.sleep(2.0)  # inside the calibration, servers up
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    out = tmp_path / "out"
    assert (out / "model" / "step.json").is_file() and (out / "trace-smoke" / "step.json").is_file()
    assert not (out / "calibrate-splitwise" / "step.json").exists()
    assert _ps_args(str(tmp_path)) == []


# ---------------------------------------------------------------- deployment settings
def test_each_instance_has_its_role_and_the_prefill_never_chunks(tmp_path):
    from experiments.validation.deploy import Deployment, vllm_argv
    from experiments.validation.procs import Supervisor

    d = DeployConfig()
    with Supervisor() as sup:
        a = Deployment("splitwise", "m", d, tmp_path / "a", sup)
        b = Deployment("splitwise", "m", d, tmp_path / "a", sup)
    kv = a.kv_configs()
    assert kv["prefill"]["kv_role"] == "kv_producer" and kv["decode"]["kv_role"] == "kv_consumer"
    # its own storage folder per deployment (never another run's stored KV)
    assert a.storage != b.storage and a.storage.parent == b.storage.parent
    assert kv["prefill"]["kv_connector_extra_config"]["shared_storage_path"] == str(a.storage)
    pre = vllm_argv(d, "m", d.prefill, kv["prefill"], whole_prompts=True)
    assert "--no-enable-chunked-prefill" in pre
    assert int(pre[pre.index("--max-num-batched-tokens") + 1]) >= d.max_model_len
    dec = vllm_argv(d, "m", d.decode, kv["decode"])
    assert "--no-enable-chunked-prefill" not in dec


def test_server_processes_go_where_no_engine_computes(tmp_path, monkeypatch):
    import experiments.validation.deploy as dm
    from experiments.validation.procs import Supervisor

    monkeypatch.setattr(dm.os, "sched_getaffinity", lambda pid: {0, 1})
    d = DeployConfig()
    with Supervisor() as sup:
        base = dm.Deployment("baseline", "m", d, tmp_path / "a", sup)
        free = base._server("colocated", d.colocated, None)
        split = dm.Deployment("splitwise", "m", d, tmp_path / "b", sup)
        own = split._server("decode", d.decode, None)
        d.colocated.server_cpus = "0"
        pinned = base._server("colocated", d.colocated, None)
    # the baseline computes on core 0 only: its API server and engine core go to core 1 (only
    # vLLM's OpenMP threads are bound to `cpus`); the split design computes on both cores: each
    # server's tree stays with its engine; server_cpus set wins
    assert free.cpus == [1] and own.cpus == [1] and pinned.cpus == [0]
    assert free.env["VLLM_CPU_OMP_THREADS_BIND"] == "0" and free.env["OMP_NUM_THREADS"] == "1"
    assert dm.free_cores(d, "baseline") == [1] and dm.free_cores(d, "splitwise") is None
    assert dm.free_cores(d, "baseline2") is None
    place = dm.placement(d, "splitwise")
    # the client side (proxy, load generator) goes to the first engine's core: the prefill
    # core, not the decode core; baseline2's first instance's (the layout controls of 7 Dec
    # 2026); a free core where there is one
    assert place["prefill"] == {"compute": [0], "server": [0]} and place["proxy"] == [0]
    assert dm.client_cores(d, "baseline") == [1] and dm.client_cores(d, "baseline2") == [0]
    assert dm.placement(d, "baseline2")["proxy"] == [0]
    d.proxy_cpus = "1"
    assert dm.placement(d, "splitwise")["proxy"] == [1]


def test_every_run_has_its_own_prompt_ids():
    from experiments.validation.live import prompt_seed

    seeds = {prompt_seed(0, d, ld, r) for d in ("baseline", "splitwise")
             for ld in ("conv", "code") for r in range(3)}  # fmt: skip
    assert len(seeds) == 12
    assert prompt_seed(0, "splitwise", "conv", 1) == prompt_seed(0, "splitwise", "conv", 1)


def test_prefix_cache_counters_are_parsed_and_checked():
    from experiments.validation import engine_metrics as em

    text = (
        "# HELP vllm:prefix_cache_hits_total x\n"
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 0.0\n'
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 612.0\n'
        'vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 512.0\n'
    )
    c = em.parse_counters(text)
    assert c["vllm:prefix_cache_queries"] == 612 and c["vllm:prefix_cache_hits"] == 0
    assert c["vllm:external_prefix_cache_hits"] == 512
    assert math.isnan(c["vllm:external_prefix_cache_queries"])
    zero = em.parse_counters("".join(f"{n}_total 0\n" for n in em.COUNTERS))
    deltas = {"decode": em.diff(zero, c), "prefill": em.diff(zero, zero)}
    em.check_no_reuse("replay-x", deltas, loader="decode")  # the hand-over itself: fine
    with pytest.raises(StepError, match="prefill loaded 512 tokens of stored KV"):
        em.check_no_reuse("replay-x", {"prefill": em.diff(zero, c)}, loader="decode")
    hit = em.parse_counters("vllm:prefix_cache_hits_total 7\n")
    with pytest.raises(StepError, match="colocated reported 7 prefix-cache hit tokens"):
        em.check_no_reuse("replay-x", {"colocated": em.diff(zero, hit)}, loader=None)


def test_preflight_refuses_or_flags_a_busy_machine(tmp_path):
    from experiments.validation.preflight import check_quiet

    f = tmp_path / "loadavg"
    f.write_text("3.50 2.00 1.00 4/300 12345\n")
    with pytest.raises(ExperimentError, match="preflight.max_loadavg: the machine is busy"):
        check_quiet(0.5, "refuse", "at the start", str(f))
    rec = check_quiet(0.5, "flag", "at the start", str(f))
    assert rec["busy"] and rec["load1"] == 3.5 and rec["runnable"] == 4
    f.write_text("0.10 0.20 0.30 1/300 12345\n")
    assert not check_quiet(0.5, "refuse", "x", str(f))["busy"]
    # the previous design's servers just stopped: wait for the 1-minute load to fall
    loads = iter(["2.30 1.9 1.4 1/100 5", "1.10 1.8 1.4 1/100 5", "0.40 1.7 1.4 1/100 5"])
    slept = []

    def fall(s):
        slept.append(s)
        f.write_text(next(loads))

    f.write_text("3.0 2 1 1/100 5")
    rec = check_quiet(0.5, "refuse", "before design splitwise", str(f), settle_s=60, sleep=fall)
    assert not rec["busy"] and rec["waited_s"] == 15 and slept == [5, 5, 5]
    f.write_text("3.0 2 1 1/100 5")
    with pytest.raises(ExperimentError, match="after 8 s of preflight.settle_s"):
        check_quiet(0.5, "refuse", "x", str(f), settle_s=8, sleep=lambda s: None)


def test_run_delay_of_a_process_group():
    from experiments.validation.preflight import RunDelay

    p = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t"
                          "<0.5: pass\ntime.sleep(5)"], start_new_session=True)  # fmt: skip
    try:
        rd = RunDelay({"engine": p.pid}).start()
        time.sleep(0.8)
        rec = rd.stop()
    finally:
        p.kill()
        p.wait()
    s = rec["servers"]["engine"]
    assert s["cpu_s"] > 0.05 and s["run_delay_s"] >= 0 and s["processes"][0]["pid"] == p.pid


# ---------------------------------------------------------------- the judge
def _per_request(x):
    return [np.array([v]) for v in x]


def test_bootstrap_point_values_use_the_suite_percentiles_and_are_deterministic():
    from replay.metrics import weighted_percentiles

    rng = np.random.default_rng(1)
    real = rng.lognormal(0, 0.5, 300)
    sim = real * 1.1
    a = judge.paired_bootstrap(_per_request(sim), _per_request(real), resamples=300, seed=3)
    b = judge.paired_bootstrap(_per_request(sim), _per_request(real), resamples=300, seed=3)
    wp = weighted_percentiles(real)
    assert a["real"][1] == wp["p90"] and a["sim"][0] == weighted_percentiles(sim)["p50"]
    assert np.allclose(a["rel_error"], 0.1)
    # a constant 10% error: every paired resample says 10% too
    assert np.allclose(a["ci_low"], 0.1) and np.allclose(a["ci_high"], 0.1)
    assert np.array_equal(a["ci_low"], b["ci_low"])


def test_bootstrap_interval_covers_and_narrows_with_more_requests():
    rng = np.random.default_rng(2)
    widths = []
    for n in (100, 2000):
        real = rng.exponential(1.0, n)
        sim = rng.exponential(1.0, n)  # the same distribution, unpaired noise
        r = judge.paired_bootstrap(_per_request(sim), _per_request(real), (50,), 400, seed=0)
        assert r["ci_low"][0] <= 0.0 <= r["ci_high"][0] or abs(r["rel_error"][0]) < 0.2
        widths.append(r["ci_high"][0] - r["ci_low"][0])
    assert widths[1] < widths[0] / 2


def test_tbt_gaps_travel_with_their_request():
    # request i has gaps all equal to i: resampling requests keeps every gap of a request
    real = [np.full(5, float(i)) for i in range(1, 51)]
    sim = [g * 2 for g in real]
    r = judge.paired_bootstrap(sim, real, (50, 90), 200, seed=0)
    assert np.allclose(r["rel_error"], 1.0) and np.allclose(r["ci_low"], 1.0)


def test_error_rows_score_p99_only_with_enough_requests_and_throughput_only_saturated():
    real = np.linspace(0.1, 1.0, 300)
    rows = judge.error_rows("baseline", "conv-0.9R", 0.9, 1.0,
                            {"ttft": (_per_request(real * 1.05), _per_request(real))},
                            held_out=True, resamples=100, throughput=(0.9, 0.9))  # fmt: skip
    assert [r["stat"] for r in rows] == ["p50", "p90", "p99", "value"]
    assert all(set(judge.ERROR_COLUMNS) == set(r) for r in rows)
    by = {r["stat"]: r for r in rows}
    assert by["p50"]["scored"] and by["p90"]["scored"] and not by["p99"]["scored"]
    assert not by["value"]["scored"] and by["p50"]["rate_fraction"] == pytest.approx(0.9)
    assert by["p50"]["rel_error"] == pytest.approx(0.05) and by["p50"]["n_requests"] == 300
    rows = judge.error_rows("b", "x", 1.3, 1.0, {"e2e": (_per_request(real),
                            _per_request(real))}, held_out=False, p99_min_requests=100,
                            resamples=100, throughput=(1.0, 1.1), saturated=True)  # fmt: skip
    by = {r["stat"]: r for r in rows}
    assert by["p99"]["scored"] and by["value"]["scored"]


def test_realized_rate_capacity_and_rstar():
    a = np.arange(101) * 0.5  # 2 req/s
    assert judge.realized_rate(a) == pytest.approx(2.0)
    # a backlogged server completing one request every 0.25 s
    arr = np.zeros(400)
    e2e = (np.arange(400) + 1) * 0.25
    cap = judge.capacity_rps(arr, e2e, trim=0.1)
    assert cap["value"] == pytest.approx(4.0, rel=0.01)
    assert cap["ci_low"] < 4.0 < cap["ci_high"]
    r = judge.rstar_interpolated([1, 2, 3, 4], [0.5, 0.8, 1.2, 2.0])
    assert r["bound"] == "interpolated" and r["value"] == pytest.approx(2.5)
    assert judge.rstar_interpolated([1, 2], [1.5, 2])["bound"] == "below"
    assert judge.rstar_interpolated([1, 2], [0.5, 0.9])["bound"] == "above"
    assert judge.rstar_bisect(lambda x: x <= 3.3, 0.5, 10.0, rel_tol=1e-4) == pytest.approx(3.3,
                                                                                        rel=1e-3)  # fmt: skip
    assert math.isnan(judge.rstar_bisect(lambda x: False, 1, 2))
    rows = judge.capacity_rows("baseline", {"sim": 4.4, "real": cap},
                               {"sim": 2.0, "real": {"value": 2.5}})  # fmt: skip
    assert [r["quantity"] for r in rows] == ["capacity_rps", "rstar_rps"]
    assert rows[1]["rel_error"] == pytest.approx(-0.2) and set(rows[0]) == set(
        judge.CAPACITY_COLUMNS
    )
    assert rows[1]["note"] == ""
    # a side whose SLO held at every rung has no R* value: the note says where it lies
    above = judge.rstar_interpolated([10.0, 22.8], [0.5, 0.9])
    rows = judge.capacity_rows("baseline2", {"sim": 19.7, "real": cap},
                               {"sim": above["value"], "sim_bound": above,
                                "real": judge.rstar_interpolated([1, 2], [1.5, 2])})  # fmt: skip
    assert math.isnan(rows[1]["sim"]) and math.isnan(rows[1]["rel_error"])
    assert rows[1]["note"] == ("sim R* above 22.8 req/s (the SLO held at every rung); "
                               "real R* below 1 req/s (no rung met the SLO)")  # fmt: skip


def test_ladder_is_placed_from_c_and_rstar():
    lad = judge.ladder(3.5, 2.0, {"azure-conv-2023": [0.3, 0.9, 1.15], "azure-code-2023": [0.5]},
                       {"azure-conv-2023": 1.3}, min_requests=200, seed=1)  # fmt: skip
    rates = {d["name"]: d["rate"] for d in lad}
    assert rates == pytest.approx({"conv-0.3R": 0.6, "conv-0.9R": 1.8, "conv-1.15R": 2.3,
                                   "conv-1.3C": 4.55, "code-0.5R": 1.0})  # fmt: skip
    assert sorted(d["order"] for d in lad) == list(range(5))
    assert all(d["duration_s"] * d["rate"] * 0.8 >= 200 for d in lad)
    assert lad == judge.ladder(3.5, 2.0, {"azure-conv-2023": [0.3, 0.9, 1.15],
                                          "azure-code-2023": [0.5]}, {"azure-conv-2023": 1.3},
                               min_requests=200, seed=1)  # fmt: skip
    with pytest.raises(ValueError):
        judge.ladder(0, 1, {}, {})
    lad = judge.ladder(3.5, 2.0, {"azure-conv-2023": [0.3, 0.8]}, {},
                       sentinel={"azure-conv-2023": 0.8})  # fmt: skip
    last = lad[-1]
    assert last["name"] == "conv-0.8R-sentinel" and last["order"] == len(lad) - 1
    first = next(d for d in lad if d["name"] == "conv-0.8R")
    assert (first["seed"], first["rate"]) == (last["seed"], last["rate"])  # the same arrivals


def test_judge_tables_from_run_folders_and_the_report(tmp_path):
    """sim TTFT 8% above real on every request: errors.csv says +8% with a tight interval;
    capacity.csv carries the predicted C and R*; the report publishes both."""
    import pandas as pd
    from test_validate import _default_cfg, _real_dir, _sim_dir

    from experiments.validation.report import write_report
    from experiments.validation.scoring import design_tables
    from experiments.validation.steps import Steps
    from experiments.validation.workload import Load

    reals = [_real_dir(tmp_path / f"r{k}", 1.0) for k in range(2)]
    sim = _sim_dir(tmp_path / "sim", 1.08, 1.0)
    trace = tmp_path / "trace.csv"
    pd.DataFrame({"request_id": range(100), "arrival_s": np.arange(100.0)}).to_csv(trace)
    c = _default_cfg("designs=[baseline]", "compare.bootstrap=200")
    ld = Load(name="conv-1R", trace="azure-conv-2023", rate=1.0)
    pred = {"capacity_rps": 3.0, "rstar_rps": 1.25}
    err, cap = design_tables(c, "baseline", [ld], {ld.name: sim}, {ld.name: reals},
                             {ld.name: trace}, pred)  # fmt: skip
    assert list(err.columns) == judge.ERROR_COLUMNS and list(cap.columns) == judge.CAPACITY_COLUMNS
    t = err.set_index(["metric", "stat"])
    assert t.loc[("ttft", "p50"), "rel_error"] == pytest.approx(0.08)
    assert t.loc[("ttft", "p90"), "ci_low"] == pytest.approx(0.08)
    assert t.loc[("tbt", "p50"), "rel_error"] == pytest.approx(0.0)
    assert t.loc[("ttft", "p50"), "n_requests"] == 200  # 100 requests x 2 repeats, paired
    assert t.loc[("ttft", "p50"), "offered_rps"] == pytest.approx(1.0)
    assert t.loc[("ttft", "p50"), "rate_fraction"] == pytest.approx(0.8)
    assert not t.loc[("ttft", "p99"), "scored"] and not t.loc[("throughput", "value"), "scored"]
    assert bool(t.loc[("ttft", "p50"), "held_out"])
    assert cap.set_index("quantity").loc["rstar_rps", "sim"] == 1.25
    steps = Steps(tmp_path / "run", log=lambda s: None)
    d = steps.path("judge-baseline")
    d.mkdir(parents=True)
    err.to_csv(d / "errors.csv", index=False)
    cap.to_csv(d / "capacity.csv", index=False)
    steps.results["judge-baseline"] = {}
    rep = steps.path("replay-baseline-conv-1R-r0")
    rep.mkdir()
    import shutil

    shutil.copytree(reals[0], rep / "run")
    (rep / "records.json").write_text("{}")
    steps.results["replay-baseline-conv-1R-r0"] = {}
    write_report(c, [ld], steps, tmp_path / "run", tmp_path / "pub", ["splitbench-validate"])
    assert pd.read_csv(tmp_path / "pub" / "errors.csv").shape == err.shape
    assert (tmp_path / "pub" / "capacity.csv").is_file()
    pub_run = tmp_path / "pub" / "runs" / "replay-baseline-conv-1R-r0"
    assert {p.name for p in pub_run.iterdir()} == {"requests.parquet", "tokens.parquet",
                                                   "records.json"}  # fmt: skip
    text = (tmp_path / "pub" / "report.md").read_text()
    assert "## Judged errors" in text and "| baseline | rstar_rps | 1.25 |" in text


def test_ladder_loads_and_probe_loads_from_the_config():
    from test_validate import _default_cfg

    from experiments.validation.predict import ladder_loads, probe_load

    c = _default_cfg("ladder.enabled=true", "profile.mode=source", "profile.source=reference")
    loads = ladder_loads(c, 3.0, 2.0)
    assert {ld.name for ld in loads} == {"conv-0.6R", "conv-0.9R", "conv-1R", "conv-1.15R",
                                         "conv-1.3C", "code-0.5R", "code-0.9R",
                                         "conv-0.8R-sentinel"}  # fmt: skip
    assert loads[-1].name == "conv-0.8R-sentinel"
    one = next(ld for ld in loads if ld.name == "conv-1.3C")
    assert one.rate == pytest.approx(3.9) and one.trace == "azure-conv-2023"
    assert one.prompt_scale == c.load_defaults.prompt_scale and one.max_context == 4096
    p = probe_load(c, 2.0, "rstar")
    assert p.trace == c.ladder.rstar_trace and p.duration_s * 2.0 * 0.8 >= c.ladder.min_requests
    with pytest.raises(ExperimentError, match="ladder.enabled"):
        _plain(ladder={"enabled": True}, profile={"mode": "skip"}).check()


# ---------------------------------------------------------------- baseline2 (equal resources)
def test_baseline2_config_and_simulator_settings():
    from test_validate import _default_cfg

    from experiments.validation.simargs import sim_overrides

    c = _default_cfg("designs=[baseline,baseline2,splitwise]")
    ov = sim_overrides(c, "baseline2", "p.csv")
    assert {"design=baseline", "design.machines=2", "design.machine_policy=vllm"} <= set(ov)
    assert c.deploy.colocated2.cpus != c.deploy.colocated.cpus
    with pytest.raises(ExperimentError, match="deploy.colocated2.cpus: shares core"):
        _plain(designs=["baseline2"], deploy={"colocated2": {"cpus": "0", "port": 8101}}).check()
    with pytest.raises(ExperimentError, match="deploy.proxy_port: port 8101 is also"):
        _plain(designs=["baseline2"], deploy={"proxy_port": 8101}).check()


def test_router_sends_each_request_to_the_least_loaded_backend():
    import asyncio

    import aiohttp
    from aiohttp import web

    from experiments.validation.procs import free_port
    from experiments.validation.proxy import RouterState, make_router_app, request_load

    st = RouterState(2)
    st.prompt[0] = 10
    assert st.pick() == 1 and request_load({"prompt": [1, 2, 3], "max_tokens": 4}) == (3, 4)
    seen = {0: 0, 1: 0}

    def fake(i):
        async def completions(request):
            body = await request.json()
            seen[i] += 1
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for k in range(body["max_tokens"]):
                await asyncio.sleep(0.005)
                await resp.write(f'data: {{"choices": [{{"text": "t{k}"}}]}}\n\n'.encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp

        async def health(request):
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        app.router.add_get("/health", health)
        return app

    async def main():
        runners = []

        async def serve(app):
            port = free_port()
            r = web.AppRunner(app)
            await r.setup()
            await web.TCPSite(r, "127.0.0.1", port).start()
            runners.append(r)
            return f"http://127.0.0.1:{port}"

        try:
            backends = [await serve(fake(0)), await serve(fake(1))]
            router = await serve(make_router_app(backends))
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{router}/health") as r:
                    assert r.status == 200

                async def one(n):
                    body = {"prompt": [5] * 10, "max_tokens": n, "stream": True}
                    async with s.post(f"{router}/v1/completions", json=body) as r:
                        chunks = [ln async for ln in r.content if ln.startswith(b"data: {")]
                        return int(r.headers["X-Backend"]), len(chunks)

                # a long request on one backend: the next ones go to the other
                first = asyncio.create_task(one(200))
                await asyncio.sleep(0.1)
                rest = await asyncio.gather(*(one(2) for _ in range(3)))
                b0, n0 = await first
            assert n0 == 200 and all(n == 2 for _, n in rest)
            assert all(b != b0 for b, _ in rest)
        finally:
            for r in runners:
                await r.cleanup()

    asyncio.run(main())
    assert seen[0] + seen[1] == 4


def test_app_baseline2_deploys_two_instances_behind_the_router(tmp_path, fake_python):  # noqa: F811
    from test_validate import _model_dir, _ps_args

    from experiments.validation.procs import free_port

    model = _model_dir(tmp_path)
    exe = Path(sys.executable).parent / "splitbench-validate"
    args = ["designs=[baseline2]", "repeats=1", "profile.mode=skip", "model.build=false",
            "loads=[{name: smoke, rate: 2.0, duration_s: 3}]", "deploy.health_timeout_s=20",
            "preflight.on_busy=flag", f"deploy.colocated.port={free_port()}",
            f"deploy.colocated2.port={free_port()}", f"deploy.proxy_port={free_port()}",
            f"model.dir={model}", f"deploy.python={fake_python}", "hydra.run.dir=out"]  # fmt: skip
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    r = subprocess.run([str(exe), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300, check=False)  # fmt: skip
    out = tmp_path / "out"
    dep = json.loads((out / "deploy-baseline2" / "deploy.json").read_text())
    assert set(dep["servers"]) == {"colocated", "colocated2", "proxy"}
    assert dep["servers"]["proxy"]["argv"].count("--backend") == 2
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "replay-baseline2-smoke-r0" / "records.json").read_text())
    assert set(rec["run_delay"]["servers"]) == {"colocated", "colocated2", "proxy"}
    summ = json.loads((out / "replay-baseline2-smoke-r0" / "run" / "summary.json").read_text())
    assert summ["requests"]["completed"] >= 1
    assert _ps_args(str(tmp_path)) == []


def test_a_dead_engine_is_named_with_its_error(tmp_path):
    """vLLM's API server outlives its engine core: the client sees a stream end without a
    token; the step's line names the engine's own error (issue 22's crash, as vLLM 0.32 logs
    it with chunked prefill on the prefill instance)."""
    from experiments.validation.deploy import Deployment
    from experiments.validation.procs import ServerProcess, Supervisor

    log = tmp_path / "decode.log"
    log.write_text(
        "(Worker pid=31776) INFO 12-07 06:43:45 [example_connector.py:171] Inject KV cache of 896"
        " tokens to the paged memory\n"
        "(Worker pid=31776) ERROR 12-07 06:43:45 [multiproc_executor.py:1063] Traceback (most "
        "recent call last):\n"
        "(Worker pid=31776) ERROR 12-07 06:43:45 [multiproc_executor.py:1063] RuntimeError: shape"
        " mismatch: value tensor of shape [512, 4, 256] cannot be broadcast to indexing result "
        "of shape [896, 4, 256]\n"
        "(EngineCore pid=31706) ERROR 12-07 06:43:45 [core.py:1512] EngineCore encountered a "
        "fatal error.\n"
    )
    with Supervisor() as sup:
        dep = Deployment("splitwise", "m", DeployConfig(), tmp_path / "dep", sup)
        assert dep.engine_failure() is None
        dep.servers["prefill"] = ServerProcess("prefill", ["x"], tmp_path / "none.log", "u", 1)
        dep.servers["decode"] = ServerProcess("decode", ["x"], log, "u", 2)
        msg = dep.engine_failure()
    assert msg.startswith("decode's engine died: RuntimeError: shape mismatch: value tensor of "
                          "shape [512, 4, 256]")  # fmt: skip


def _fifo_sim(service_s: float, gap_s: float):
    """A stand-in for splitbench-replay: one FIFO server, ``service_s`` per request (the last
    2 gaps of ``gap_s`` inside it); writes a sim run folder the comparison code reads."""
    import pandas as pd

    def simulate(trace: Path, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        t = pd.read_csv(trace)
        free, start = 0.0, []
        for a in t["arrival_s"]:
            s = max(free, float(a))
            start.append(s)
            free = s + service_s
        start = np.asarray(start)
        arr = t["arrival_s"].to_numpy(dtype=float)
        n = len(t)
        pd.DataFrame({
            "request_id": t["request_id"], "arrival_s": arr, "prompt_tokens": 10,
            "output_tokens": 3, "prompt_machine": 0, "token_machine": 0,
            "queue_s": start - arr, "ttft_s": start - arr + service_s - 2 * gap_s,
            "e2e_s": start - arr + service_s, "kv_transfer_s": 0.0, "tbt_mean_s": gap_s,
            "tbt_max_s": gap_s, "preemptions": 0,
        }).to_parquet(out / "requests.parquet")  # fmt: skip
        pd.DataFrame({"start_s": start, "iterations": 2, "first_s": gap_s, "increment_s": 0.0,
                      "batch_size": 1, "first_excluded": 0, "prefill_tokens": 0}
                     ).to_parquet(out / "iterations.parquet")  # fmt: skip
        pd.DataFrame({"request_id": pd.Series([], dtype="int64"),
                      "gap_s": pd.Series([], dtype=float)}).to_parquet(out / "request_gaps.parquet")  # fmt: skip
        assert n > 0
        return out

    return simulate


def test_predict_finds_capacity_and_rstar_of_a_known_server(tmp_path):
    """A FIFO server of 0.25 s per request: C = 4 req/s; R* (TTFT P90 <= 1 s) below C, and
    the probes around it bracket the SLO."""
    from test_validate import _default_cfg

    from experiments.validation.predict import predict

    c = _default_cfg("ladder.enabled=true", "profile.mode=source", "profile.source=reference",
                     "ladder.slo.ttft_p90_s=1.0", "ladder.hi_rps=8", "ladder.lo_rps=0.5",
                     "ladder.min_requests=150")  # fmt: skip
    res = predict(c, "baseline", tmp_path, _fifo_sim(0.25, 0.01))
    assert res["capacity_rps"] == pytest.approx(4.0, rel=0.03)
    assert 1.5 < res["rstar_rps"] < 4.0
    rs = [p for p in res["probes"] if p["kind"] == "rstar"]
    ok = [p["rate"] for p in rs if p["slo_ratio"] <= 1]
    bad = [p["rate"] for p in rs if p["slo_ratio"] > 1]
    assert res["rstar_rps"] == max(ok) and (not bad or min(bad) > res["rstar_rps"])
    assert (tmp_path / f"capacity-{8:.6g}" / "trace.csv").is_file()


def test_simulated_gaps_are_rebuilt_per_request_from_the_iterations(tmp_path):
    """A request's simulated TBT gaps are its machine's iteration durations from its first token
    to its last (not its mean gap repeated); a request whose count does not match falls back to
    the mean."""
    import pandas as pd

    from experiments.validation.scoring import _sim_samples, iteration_ends

    d = tmp_path / "sim"
    d.mkdir()
    # machine 0: a prefill (0.1 s), then 3 decode iterations of 0.02, 0.03, 0.04 s
    pd.DataFrame({"machine": [0, 0], "role": ["mixed", "mixed"], "start_s": [0.0, 0.1],
                  "iterations": [1, 3], "first_s": [0.1, 0.02], "increment_s": [0.0, 0.01],
                  "batch_size": [0, 2], "first_excluded": [0, 0],
                  "prefill_tokens": [10, 0]}).to_parquet(d / "iterations.parquet")  # fmt: skip
    n = 2
    pd.DataFrame({
        "request_id": [0, 1], "arrival_s": [0.0, 0.0], "prompt_tokens": 5,
        "output_tokens": [4, 6], "prompt_machine": 0, "token_machine": 0, "queue_s": 0.0,
        "ttft_s": [0.1, 0.1], "e2e_s": [0.19, 0.19], "kv_transfer_s": 0.0,
        "tbt_mean_s": [0.03, 0.018], "tbt_max_s": 0.04, "preemptions": [0] * n,
    }).to_parquet(d / "requests.parquet")  # fmt: skip
    pd.DataFrame({"request_id": pd.Series([], dtype="int64"),
                  "gap_s": pd.Series([], dtype=float)}).to_parquet(d / "request_gaps.parquet")  # fmt: skip
    np.testing.assert_allclose(iteration_ends(d)[0], [0.1, 0.12, 0.15, 0.19])
    s = _sim_samples(d, "prompt")
    np.testing.assert_allclose(s[0]["tbt"], [0.02, 0.03, 0.04])  # exact
    np.testing.assert_allclose(s[1]["tbt"], [0.018] * 5)  # 5 gaps expected, 3 found: the mean


def test_serving_overrides_do_not_depend_on_the_order_of_the_probes_terms():
    # a step's result reloaded from step.json has its keys sorted; the overrides enter the
    # next steps' keys, so both orders must give the same list (a resume re-simulated otherwise)
    import json

    from experiments.validation.simargs import serving_overrides

    terms = {"iteration_s": 0.001, "prefill_leg_s": 0.005, "decode_leg_s": 0.01,
             "kv_save_s": 0.009, "arrival_s": 0.0}  # fmt: skip
    reloaded = json.loads(json.dumps({"terms": terms}, sort_keys=True))
    a = serving_overrides({"terms": terms}, "splitwise", "vllm")
    assert a == serving_overrides(reloaded, "splitwise", "vllm")
    assert a == sorted(a) and "serving.arrival_s=0" not in " ".join(a)
    # the decode leg as decode-instance work: the same measured values under the work terms
    w = serving_overrides({"terms": terms}, "splitwise", "vllm", "work")
    assert "serving.decode_work_s=0.01" in w and not any("decode_leg" in o for o in w)
    assert w == sorted(w) and len(w) == len(a)
    assert serving_overrides({"terms": terms}, "baseline", "vllm", "work") == [
        "serving.iteration_s=0.001"]  # fmt: skip
    # a co-located design's arrival terms as the instances' work (simulate.arrival_as)
    t2 = {"arrival_s": 0.002, "arrival_s_per_token": 5e-5, "iteration_s": 0.001}
    assert serving_overrides({"terms": t2}, "baseline2", "vllm", "work", True) == [
        "serving.arrival_work_s=0.002", "serving.arrival_work_s_per_token=5e-05",
        "serving.iteration_s=0.001"]  # fmt: skip
    assert serving_overrides({"terms": t2}, "baseline2", "reference", "work", True)[0] == (
        "serving.arrival_s=0.002")  # the reference policy has no such term


def test_arrival_as_auto_is_work_where_the_servers_share_their_engines_cores():
    from test_validate import _default_cfg

    from experiments.validation.simargs import arrival_as_work

    c = _default_cfg("simulate.arrival_as=auto")
    # two cores: the baseline's server on the free core, baseline2's on its engines' own
    assert c.deploy.colocated.cpus is not None
    got = {d: arrival_as_work(c, d) for d in ("baseline", "baseline2", "splitwise")}
    import os

    if len(os.sched_getaffinity(0)) == 2:
        assert got == {"baseline": False, "baseline2": True, "splitwise": False}
    assert not got["splitwise"]
    assert arrival_as_work(_default_cfg(), "baseline2") == got["baseline2"]  # auto: the default
    assert not arrival_as_work(_default_cfg("simulate.arrival_as=latency"), "baseline2")
    assert arrival_as_work(_default_cfg("simulate.arrival_as=work"), "baseline")
