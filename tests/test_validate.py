"""splitbench-validate without vLLM: processes, faults, step cache, proxy, calibration fit and
the sim-vs-real comparison on synthetic records with known percentiles."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.validation import compare as cmp
from experiments.validation.calibrate import fit_line, summarize
from experiments.validation.config import DeployConfig, InstanceConfig
from experiments.validation.deploy import Deployment
from experiments.validation.errors import StepError
from experiments.validation.procs import ServerProcess, Supervisor, free_port, port_free
from experiments.validation.proxy import decode_body, make_app, prefill_body
from experiments.validation.steps import Steps

# A stand-in for `python -m vllm.entrypoints.openai.api_server ...`: reads --port, serves
# /health, /v1/models and /v1/completions (JSON, or SSE with one chunk per token), starts a
# child process (to check that the whole process group is stopped), and exits with code 9
# after FAKE_DIE_AFTER_S seconds when that is set. FAKE_FAIL_AT_START=msg: print msg, exit 3.
FAKE_SERVER = textwrap.dedent(
    r"""
    import json, os, subprocess, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    if os.environ.get("FAKE_FAIL_AT_START"):
        print(os.environ["FAKE_FAIL_AT_START"], flush=True)
        sys.exit(3)
    port = int(sys.argv[sys.argv.index("--port") + 1])
    model = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else "fake"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print(f"child {child.pid}", flush=True)
    die = float(os.environ.get("FAKE_DIE_AFTER_S", "0"))
    if die:
        threading.Timer(die, lambda: os._exit(9)).start()
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def _json(self, obj, code=200):
            b = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)
        def do_GET(self):
            if self.path == "/health":
                self._json({})
            elif self.path == "/v1/models":
                self._json({"data": [{"id": model}]})
            else:
                self._json({"error": "no"}, 404)
        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(n))
            k = int(body.get("max_tokens", 1))
            time.sleep(0.001 * len(body.get("prompt", [])))
            if not body.get("stream"):
                self._json({"choices": [{"text": "x" * k, "token_ids": list(range(k))}]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(k):
                time.sleep(0.005)
                c = {"choices": [{"text": "x", "token_ids": [i]}]}
                self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture
def fake_python(tmp_path):
    """An 'interpreter' that runs the fake server whatever module it is asked for."""
    src = tmp_path / "fake_vllm.py"
    src.write_text(FAKE_SERVER)
    exe = tmp_path / "fake-python"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {src} "$@"\n')
    exe.chmod(0o755)
    return str(exe)


def _model_dir(tmp_path) -> str:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text("{}")
    return str(d)


def _dep(design, tmp_path, cfg, sup) -> Deployment:
    return Deployment(design, _model_dir(tmp_path), cfg, tmp_path / "dep", sup)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ps_group(pgid: int) -> list[str]:
    """Live (non-zombie) processes of process group ``pgid``, as ``ps`` lists them."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    rows = [ln.split() for ln in out.splitlines() if ln.strip()]
    return [r[0] for r in rows if int(r[1]) == pgid and not r[2].startswith("Z")]


def _ps_args(needle: str) -> list[str]:
    """Live processes whose command line mentions ``needle`` (a test's temp dir), per ``ps``."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    rows = [ln.split(None, 2) for ln in out.splitlines() if ln.strip()]
    return [r[0] for r in rows if len(r) == 3 and needle in r[2] and not r[1].startswith("Z")
            and int(r[0]) != os.getpid()]  # fmt: skip


def _child_pid(log: Path) -> int:
    for _ in range(100):
        for ln in log.read_text().splitlines() if log.exists() else []:
            if ln.startswith("child "):
                return int(ln.split()[1])
        time.sleep(0.05)
    raise AssertionError("fake server did not report its child")


# ---------------------------------------------------------------- processes and faults
def test_port_in_use_is_one_line_naming_the_step(tmp_path, fake_python):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert not port_free(port)
        cfg = DeployConfig(colocated=InstanceConfig(port=port), python=fake_python)
        with Supervisor() as sup, pytest.raises(StepError) as e:
            _dep("baseline", tmp_path, cfg, sup).start("deploy-baseline")
        assert str(e.value) == (
            f"step deploy-baseline: colocated: port {port} on 127.0.0.1 is already in use"
        )
        assert sup.pids() == []  # nothing was started


def test_server_dying_at_start_names_its_last_log_line(tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL_AT_START", "ValueError: connector Bogus is not registered")
    cfg = DeployConfig(colocated=InstanceConfig(port=free_port()), python=fake_python,
                       health_timeout_s=20)  # fmt: skip
    with Supervisor() as sup, pytest.raises(StepError) as e:
        _dep("baseline", tmp_path, cfg, sup).start("deploy-baseline")
    msg = str(e.value)
    assert msg.startswith("step deploy-baseline: colocated (pid ")
    assert "exited with code 3" in msg and "connector Bogus is not registered" in msg
    assert "\n" not in msg


def test_dead_server_mid_run_interrupts_and_nothing_is_left(tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_DIE_AFTER_S", "1.5")
    port = free_port()
    cfg = DeployConfig(colocated=InstanceConfig(port=port), python=fake_python,
                       health_timeout_s=20)  # fmt: skip
    with Supervisor(poll_s=0.1) as sup:
        dep = _dep("baseline", tmp_path, cfg, sup)
        dep.start("deploy-baseline")
        srv = dep.servers["colocated"]
        child = _child_pid(srv.log)
        assert _alive(child)
        sup.watch()
        with pytest.raises(StepError) as e:
            try:
                for _ in range(100):  # bounded: 10 s at most
                    time.sleep(0.1)
            except KeyboardInterrupt:
                sup.raise_if_died("replay-baseline-x-r0")
            raise AssertionError("the watchdog did not interrupt")
        pgid = srv.pid
    assert str(e.value).startswith(f"step replay-baseline-x-r0: colocated (pid {pgid}, port {port})"
                                   " exited with code 9 mid-run")  # fmt: skip
    # the server's orphaned child (same process group) was stopped too
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)
    assert _ps_group(pgid) == []
    assert port_free(port)


def test_stop_kills_the_whole_group_on_ctrl_c(tmp_path, fake_python):
    port = free_port()
    srv = ServerProcess("x", [fake_python, "--port", str(port)], tmp_path / "x.log",
                        f"http://127.0.0.1:{port}/health", port)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        with Supervisor() as sup:
            sup.start(srv, "deploy", 20)
            child = _child_pid(srv.log)
            raise KeyboardInterrupt
    assert not _alive(srv.pid) and not _alive(child)
    assert _ps_group(srv.pid) == []


def test_health_timeout_is_bounded(tmp_path):
    port = free_port()  # nothing will listen there
    srv = ServerProcess("quiet", [sys.executable, "-c", "import time; time.sleep(30)"],
                        tmp_path / "q.log", f"http://127.0.0.1:{port}/health", port)  # fmt: skip
    t0 = time.monotonic()
    with Supervisor() as sup, pytest.raises(StepError, match="not healthy after 1 s"):
        sup.start(srv, "deploy", 1.0)
    assert time.monotonic() - t0 < 8
    assert not _alive(srv.pid)


# ---------------------------------------------------------------- the step cache
def test_steps_reuse_rerun_and_keep_finished_output(tmp_path):
    calls = []

    def mk(tag):
        def fn(d: Path):
            calls.append(tag)
            (d / "out.txt").write_text(tag)
            return {"tag": tag}

        return fn

    s = Steps(tmp_path, log=lambda m: None)
    s.run("a", {"x": 1}, mk("a1"))
    s.run("b", {"y": 1}, mk("b1"), inputs=["a"])
    assert calls == ["a1", "b1"]
    s2 = Steps(tmp_path, log=lambda m: None)
    assert s2.run("a", {"x": 1}, mk("a2")) == {"tag": "a1"}
    s2.run("b", {"y": 1}, mk("b2"), inputs=["a"])
    assert calls == ["a1", "b1"] and s2.reused == ["a", "b"]
    s3 = Steps(tmp_path, log=lambda m: None)  # a's config changes: b (downstream) reruns too
    s3.run("a", {"x": 2}, mk("a3"))
    s3.run("b", {"y": 1}, mk("b3"), inputs=["a"])
    assert calls == ["a1", "b1", "a3", "b3"]

    def boom(d: Path):
        raise StepError("c", "server died")

    with pytest.raises(StepError, match="step c: server died"):
        s3.run("c", {}, boom, inputs=["b"])
    assert not (tmp_path / "c" / "step.json").exists()
    assert (tmp_path / "b" / "out.txt").read_text() == "b3"
    assert json.loads((tmp_path / "b" / "step.json").read_text())["result"] == {"tag": "b3"}

    def interrupted(d: Path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # passes through: the app says so, exit 130
        s3.run("d", {}, interrupted)
    assert not (tmp_path / "d" / "step.json").exists()


# ---------------------------------------------------------------- proxy
def test_proxy_bodies():
    body = {"prompt": [1, 2, 3], "max_tokens": 9, "min_tokens": 9, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}  # fmt: skip
    p = prefill_body(body, kv_params=False)
    assert p == {"prompt": [1, 2, 3], "max_tokens": 1, "stream": False, "ignore_eos": True}
    assert body["max_tokens"] == 9  # the client's request is not changed
    p = prefill_body(body, kv_params=True)
    assert p["kv_transfer_params"]["do_remote_decode"] is True
    d = decode_body(body, {"kv_transfer_params": {"remote_block_ids": [1]}}, kv_params=True)
    assert d["kv_transfer_params"] == {"remote_block_ids": [1]} and d["max_tokens"] == 9
    assert "kv_transfer_params" not in decode_body(body, {"kv_transfer_params": {"a": 1}}, False)


def test_proxy_two_legs_streams_decode_and_relays_errors():
    import aiohttp
    from aiohttp import web

    seen: dict[str, list] = {"prefill": [], "decode": []}

    def fake(kind: str, fail: bool = False):
        async def completions(request):
            body = await request.json()
            seen[kind].append(body)
            if fail:
                return web.json_response({"error": "KV cache is full"}, status=500)
            if not body.get("stream"):
                return web.json_response({"choices": [{"text": "a"}],
                                          "kv_transfer_params": {"blocks": [7]}})  # fmt: skip
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(body["max_tokens"]):
                await asyncio.sleep(0.01)
                await resp.write(f'data: {{"choices": [{{"text": "t{i}"}}]}}\n\n'.encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp

        app = web.Application()
        app.router.add_post("/v1/completions", completions)

        async def health(request):
            return web.Response(text="ok")

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
            pre = await serve(fake("prefill"))
            dec = await serve(fake("decode"))
            bad = await serve(fake("decode", fail=True))
            proxy = await serve(make_app(pre, dec, kv_params=True))
            proxy_bad = await serve(make_app(pre, bad))
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{proxy}/health") as r:
                    assert r.status == 200
                body = {"prompt": [5] * 40, "max_tokens": 4, "min_tokens": 4, "stream": True}
                arrivals = []
                async with s.post(f"{proxy}/v1/completions", json=body) as r:
                    assert r.status == 200
                    assert float(r.headers["X-Prefill-Seconds"]) >= 0
                    async for line in r.content:
                        if line.startswith(b"data: {"):
                            arrivals.append(time.perf_counter())
                assert len(arrivals) == 4
                assert arrivals[-1] - arrivals[0] > 0.02  # relayed as they came, not at once
                async with s.post(f"{proxy_bad}/v1/completions", json=body) as r:
                    assert r.status == 500 and r.headers["X-Failed-Leg"] == "decode"
                    assert "KV cache is full" in await r.text()
        finally:
            for r in runners:
                await r.cleanup()

    asyncio.run(main())
    assert seen["prefill"][0]["max_tokens"] == 1 and seen["prefill"][0]["stream"] is False
    assert "min_tokens" not in seen["prefill"][0]
    assert seen["decode"][0]["max_tokens"] == 4
    assert seen["decode"][0]["kv_transfer_params"] == {"blocks": [7]}


# ---------------------------------------------------------------- calibration fit
def test_kv_fit_recovers_line_and_replay_terms():
    a, b = 0.012, 2.5e-5
    rows = []
    for L in (128, 384, 768, 1536):
        for k, noise in enumerate((-1e-4, 0.0, 1e-4)):
            pre = 0.3 * L / 512
            rows += [
                {"prompt_tokens": L, "repeat": k, "kind": "prefill", "seconds": pre},
                {"prompt_tokens": L, "repeat": k, "kind": "proxy_prefill_leg", "seconds": pre},
                {"prompt_tokens": L, "repeat": k, "kind": "proxy_ttft",
                 "seconds": pre + a + b * L + noise, "kv_bytes": 2048 * 16 * ((L - 1) // 16)},
                {"prompt_tokens": L, "repeat": k, "kind": "handover", "seconds": a + b * L + noise,
                 "kv_bytes": 2048 * 16 * ((L - 1) // 16)},
            ]  # fmt: skip
    res = summarize(pd.DataFrame(rows), kv_bytes_per_token=4096, block_size=16)
    h = res["handover_fit"]
    assert h["a"] == pytest.approx(a, abs=1e-9) and h["b"] == pytest.approx(b, rel=1e-6)
    assert res["replay_kv_transfer"]["network_bytes_per_s"] == pytest.approx(4096 / b, rel=1e-6)
    assert res["replay_kv_transfer"]["kv_exposed_transfer_s"] == pytest.approx(a, abs=1e-9)
    by = {p["prompt_tokens"]: p for p in res["per_length"]}
    assert by[128]["recomputed_tokens_expected"] == 16  # 112 injected (7 whole blocks)
    assert by[384]["injected_tokens_expected"] == 368
    assert res["stored_bytes_fit"]["b"] == pytest.approx(2048, rel=0.02)
    with pytest.raises(ValueError):
        fit_line([5, 5], [1, 2])


# ---------------------------------------------------------------- comparison
N = 100


def _real_dir(path: Path, scale: float) -> Path:
    """Request i: TTFT (i+1)/100 * scale, 3 tokens with both gaps (i+1)/1000 s, arrival i s."""
    path.mkdir(parents=True)
    ttft = (np.arange(N) + 1) / 100 * scale
    gap = (np.arange(N) + 1) / 1000
    req = pd.DataFrame({
        "request_id": np.arange(N), "arrival_s": np.arange(N, dtype=float),
        "prompt_tokens": 10, "output_tokens": 3, "prompt_machine": 0, "token_machine": 0,
        "queue_s": np.nan, "ttft_s": ttft, "e2e_s": ttft + 2 * gap, "kv_transfer_s": np.nan,
        "tbt_mean_s": gap, "tbt_max_s": gap, "preemptions": pd.array([pd.NA] * N, "Int64"),
    })  # fmt: skip
    req.to_parquet(path / "requests.parquet")
    tok = pd.DataFrame({"request_id": np.arange(N),
                        "token_times_s": [[t, t + g, t + 2 * g] for t, g in zip(ttft, gap, strict=True)]})  # fmt: skip
    tok.to_parquet(path / "tokens.parquet")
    return path


def _sim_dir(path: Path, ttft_scale: float, gap_scale: float) -> Path:
    path.mkdir(parents=True)
    ttft = (np.arange(N) + 1) / 100 * ttft_scale
    gap = (np.arange(N) + 1) / 1000 * gap_scale
    req = pd.DataFrame({
        "request_id": np.arange(N), "arrival_s": np.arange(N, dtype=float),
        "prompt_tokens": 10, "output_tokens": 3, "prompt_machine": 0, "token_machine": 1,
        "queue_s": 0.0, "ttft_s": ttft, "e2e_s": ttft + 2 * gap, "kv_transfer_s": 0.0,
        "tbt_mean_s": gap, "tbt_max_s": gap, "preemptions": 0,
    })  # fmt: skip
    req.to_parquet(path / "requests.parquet")
    it = pd.DataFrame({"start_s": 0.0, "iterations": 2, "first_s": gap, "increment_s": 0.0,
                       "batch_size": 1, "first_excluded": 0, "prefill_tokens": 0})  # fmt: skip
    it.to_parquet(path / "iterations.parquet")
    pd.DataFrame({"request_id": pd.Series([], dtype="int64"),
                  "gap_s": pd.Series([], dtype=float)}).to_parquet(path / "request_gaps.parquet")  # fmt: skip
    return path


def test_known_percentiles_of_both_run_kinds(tmp_path):
    real = cmp.load_run(_real_dir(tmp_path / "real", 1.0))
    sim = cmp.load_run(_sim_dir(tmp_path / "sim", 1.0, 1.0))
    assert real.kind == "real" and sim.kind == "sim" and real.tbt_exact and sim.tbt_exact
    for run in (real, sim):
        m = cmp.run_metrics(run)
        assert m["ttft_s"]["p50"] == pytest.approx(0.50)
        assert m["ttft_s"]["p90"] == pytest.approx(0.90)
        assert m["ttft_s"]["p99"] == pytest.approx(0.99)
        assert m["tbt_s"]["p50"] == pytest.approx(0.050)  # 200 gaps, each value twice
        assert m["tbt_s"]["p99"] == pytest.approx(0.099)
        assert m["completed"] == N


def test_error_table_and_noise(tmp_path):
    reals = [_real_dir(tmp_path / f"r{k}", s) for k, s in enumerate((0.95, 1.0, 1.05))]
    sim = _sim_dir(tmp_path / "sim", 1.08, 0.80)
    df = cmp.compare_runs(sim, reals, design="splitwise", load="conv-r1")
    row = df.set_index(["metric", "stat"])
    for q in ("p50", "p90", "p99"):
        assert row.loc[("ttft_s", q), "rel_error"] == pytest.approx(0.08, abs=1e-9)
        assert row.loc[("ttft_s", q), "noise"] == pytest.approx(0.05, abs=1e-9)
        assert row.loc[("tbt_s", q), "rel_error"] == pytest.approx(-0.20, abs=1e-9)
        assert row.loc[("tbt_s", q), "noise"] == pytest.approx(0.0, abs=1e-12)
    assert bool(row.loc[("ttft_s", "p50"), "within_target"])  # 8% <= 10%
    assert not bool(row.loc[("tbt_s", "p50"), "within_target"])
    assert bool(row.loc[("ttft_s", "p99"), "within_target"])  # 15% for P99
    assert not bool(row.loc[("ttft_s", "p50"), "within_noise"])
    thr = row.loc[("throughput_rps", "value")]
    want_sim = cmp.run_metrics(cmp.load_run(sim))["throughput_rps"]
    want_real = np.mean([cmp.run_metrics(cmp.load_run(r))["throughput_rps"] for r in reals])
    assert thr["sim"] == pytest.approx(want_sim) and thr["real"] == pytest.approx(want_real)
    assert thr["rel_error"] == pytest.approx(want_sim / want_real - 1) and thr["repeats"] == 3
    assert 0.9 < want_sim < 1.1  # ~1 completion per second in the steady window
    assert set(df["design"]) == {"splitwise"}
    text = cmp.format_table(df)
    assert "| splitwise | conv-r1 | ttft_s | p50 |" in text and "+8.0%" in text


def test_cdf_figure_and_bad_dirs(tmp_path):
    real = cmp.load_run(_real_dir(tmp_path / "real", 1.0))
    sim = cmp.load_run(_sim_dir(tmp_path / "sim", 1.1, 1.0))
    f = cmp.plot_cdfs(sim, [real], tmp_path / "fig" / "cdf.png", title="t")
    assert f.stat().st_size > 1000
    x, y = cmp.cdf_points([3.0, 1.0, 2.0, np.nan], [1, 1, 2, 5])
    assert list(x) == [1.0, 2.0, 3.0] and list(y) == [0.25, 0.75, 1.0]
    from experiments.errors import ExperimentError

    with pytest.raises(ExperimentError, match="no requests.parquet"):
        cmp.load_run(tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"request_id": [1]}).to_parquet(bad / "requests.parquet")
    with pytest.raises(ExperimentError, match="missing contract-4 column"):
        cmp.load_run(bad)


# ---------------------------------------------------------------- the app (no vLLM)
def _app(tmp_path, *args, env=None):
    exe = Path(sys.executable).parent / "splitbench-validate"
    e = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path), **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=tmp_path,
                          env=e, timeout=120, check=False)  # fmt: skip


APP_ARGS = [
    "designs=[splitwise]", "repeats=1", "profile.mode=skip", "model.build=false",
    "loads=[{name: smoke, rate: 1.0, duration_s: 3}]", "calibrate.lengths=[40,80]",
    "calibrate.repeats=1", "deploy.health_timeout_s=20", "preflight.on_busy=flag",
]  # fmt: skip


def _ports():
    return [f"deploy.prefill.port={free_port()}", f"deploy.decode.port={free_port()}",
            f"deploy.proxy_port={free_port()}"]  # fmt: skip


def test_app_port_in_use_is_found_before_anything_starts(tmp_path, fake_python):
    """Issue 25: ports are checked before any step runs or any server starts."""
    model = _model_dir(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = _app(tmp_path, *APP_ARGS, *_ports(), f"deploy.decode.port={port}",
                 f"model.dir={model}", f"deploy.python={fake_python}", "hydra.run.dir=out")  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: deploy.decode.port: port {port} on 127.0.0.1 is already in use"]
    assert not (tmp_path / "out" / "model").exists()
    assert not (tmp_path / "out" / "deploy-splitwise").exists()
    assert _ps_args(str(tmp_path)) == []


def test_app_calibrates_through_the_proxy_then_names_a_dead_server(tmp_path, fake_python):
    """Fake instances: the calibration runs through the real proxy; then the load generator
    step (absent or present) fails and the run stops with one line, all servers gone."""
    model = _model_dir(tmp_path)
    r = _app(tmp_path, *APP_ARGS, *_ports(), f"model.dir={model}",
             f"deploy.python={fake_python}", "hydra.run.dir=out")  # fmt: skip
    cal = tmp_path / "out" / "calibrate-splitwise"
    assert (cal / "step.json").is_file(), r.stdout + r.stderr
    res = json.loads((cal / "kv_transfer.json").read_text())
    assert res["handover_fit"]["points"] == 2 and res["lengths"] == [40, 80]
    rec = json.loads((cal / "step.json").read_text())["result"]["records"]
    assert set(rec["run_delay"]["servers"]) == {"prefill", "decode", "proxy"}
    assert rec["run_delay"]["servers"]["prefill"]["cpu_s"] > 0 and rec["loadavg"]["before"]
    csv = pd.read_csv(cal / "kv_transfer.csv")
    assert set(csv["kind"]) == {"prefill", "proxy_ttft", "proxy_prefill_leg", "handover",
                                "prefill_engine", "prefill_engine_queue"}
    # the fake instances have no /metrics: the engine's own times are NaN, never made up
    assert csv.loc[csv["kind"].str.startswith("prefill_engine"), "seconds"].isna().all()
    # prefill 1 ms per prompt token in the fake: the measured prefill grows with length
    med = csv[csv["kind"] == "prefill"].groupby("prompt_tokens")["seconds"].median()
    assert med[80] > med[40]
    logs = tmp_path / "out" / "deploy-splitwise" / "logs"
    children = [_child_pid(logs / f"{n}.log") for n in ("prefill", "decode")]
    assert not any(_alive(c) for c in children)
    assert _ps_args(str(tmp_path)) == []
    if r.returncode != 0:  # no load generator in this checkout, or it failed: one line
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: step replay-splitwise-smoke-r0:")
    # rerun: the finished steps are reused
    r2 = _app(tmp_path, *APP_ARGS, *_ports(), f"model.dir={model}",
              f"deploy.python={fake_python}", "hydra.run.dir=out")  # fmt: skip
    assert "[model] reused" in r2.stdout and "[trace-smoke] reused" in r2.stdout


def test_app_dead_server_during_calibration(tmp_path, fake_python):
    model = _model_dir(tmp_path)
    r = _app(tmp_path, *APP_ARGS, *_ports(), f"model.dir={model}",
             f"deploy.python={fake_python}", "hydra.run.dir=out",
             "calibrate.lengths=[1000,2000]", "calibrate.repeats=50",
             env={"FAKE_DIE_AFTER_S": "3"})  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: step calibrate-splitwise: ")
    assert "exited with code 9 mid-run" in lines[0]
    assert (tmp_path / "out" / "trace-smoke" / "step.json").is_file()
    logs = tmp_path / "out" / "deploy-splitwise" / "logs"
    for n in ("prefill", "decode"):
        assert not _alive(_child_pid(logs / f"{n}.log"))
    assert _ps_args(str(tmp_path)) == []


def test_run_metrics_nan_safe_on_empty_run(tmp_path):
    d = _real_dir(tmp_path / "r", 1.0)
    req = pd.read_parquet(d / "requests.parquet")
    req["e2e_s"] = np.nan
    req["ttft_s"] = np.nan
    req.to_parquet(d / "requests.parquet")
    m = cmp.run_metrics(cmp.load_run(d))
    assert m["completed"] == 0 and math.isnan(m["ttft_s"]["p50"])


def test_injected_tokens_are_read_from_the_decode_log(tmp_path):
    with Supervisor() as sup:
        dep = _dep("splitwise", tmp_path, DeployConfig(), sup)
        assert dep.injected_tokens() == []
        log = tmp_path / "decode.log"
        log.write_text(
            "(Worker pid=1) INFO [example_connector.py:171] Inject KV cache of 640 tokens to the"
            " paged memory\nother line\n(Worker pid=1) INFO Inject KV cache of 128 tokens to\n"
        )
        dep.servers["decode"] = ServerProcess("decode", ["x"], log, "http://x", 1)
        assert dep.injected_tokens() == [640, 128]


# ---------------------------------------------------------------- simulator side, report
def _default_cfg(*overrides):
    from hydra import compose, initialize_config_dir

    from experiments.apps.validate import load_config
    from experiments.config.schemas import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return load_config(compose("validate", overrides=list(overrides)))


def test_sim_overrides_follow_the_deployment():
    from experiments.validation.simargs import sim_overrides

    c = _default_cfg("deploy.colocated.max_num_seqs=7")
    b = sim_overrides(c, "baseline", "p.csv")
    assert {"model=tiny-llama-512", "gpu=cpu", "design=baseline", "design.machines=1",
            "design.machine_policy=vllm", "scheduler.vllm.max_num_seqs=7",
            "scheduler.vllm.max_num_batched_tokens=2048", "scheduler.vllm.block_size=128",
            "profiles.slo_reference_source=p.csv"} <= set(b)  # fmt: skip
    # the split design runs as vLLM disaggregated serving (each instance vLLM's scheduler)
    s = sim_overrides(c, "splitwise", "p.csv")
    assert {"design=splitwise", "design.prompt_machines=1", "design.token_machines=1",
            "design.mixed_pool=false", "design.machine_policy=vllm",
            "scheduler.vllm.max_num_seqs=32", "scheduler.kv_transfer.handover_s=0",
            "scheduler.kv_transfer.enabled=false"} <= set(s)  # fmt: skip
    c = _default_cfg("simulate.machine_policy.splitwise=reference")
    s = sim_overrides(c, "splitwise", "p.csv")
    assert {"design.machine_policy=reference", "scheduler.max_batch_size=32",
            "scheduler.prompt_batch_tokens=2048"} <= set(s)  # fmt: skip
    assert not any(x.startswith(("scheduler.vllm.", "scheduler.kv_transfer.")) for x in s)


def test_handover_overrides_and_decode_step(tmp_path):
    from experiments.validation.simargs import decode_step_s, handover_overrides

    cal = {"handover_fit": {"a": 0.2, "b": 1e-4}}
    assert handover_overrides(cal, 0.05) == [
        "scheduler.kv_transfer.handover_s=0.15",
        "scheduler.kv_transfer.per_token_s=0.0001",
    ]
    assert handover_overrides(cal, 0.5)[0] == "scheduler.kv_transfer.handover_s=0"
    assert handover_overrides({}, 0.0) == [] and handover_overrides(None) == []
    split = {**cal, "handover_split_fit": {"a": 0.03, "b_injected_s_per_token": 1e-4,
                                           "b_recomputed_s_per_token": 9e-4}}  # fmt: skip
    assert handover_overrides(split, 0.01, block_size=3) == [  # 0.03 + 8e-4 x 2 - 0.01
        "scheduler.kv_transfer.handover_s=0.0216",
        "scheduler.kv_transfer.per_token_s=0.0001",
    ]
    assert handover_overrides(split, 0.05) == handover_overrides(cal, 0.05)  # no block size
    f = tmp_path / "p" / "profiles.csv"
    f.parent.mkdir()
    pd.DataFrame({"phase": ["prefill", "decode", "decode", "decode"],
                  "batch_size": [1, 1, 1, 4], "latency_s": [0.01, 0.04, 0.03, 0.02]}
                 ).to_csv(f, index=False)  # fmt: skip
    assert decode_step_s(str(f)) == pytest.approx(0.03)
    assert decode_step_s(str(tmp_path)) == pytest.approx(0.03)  # a folder: every table under it
    assert decode_step_s("reference") == 0.0 and decode_step_s(None) == 0.0


def test_split_first_token_moves_to_the_decode_side(tmp_path):
    sim = _sim_dir(tmp_path / "sim", 1.0, 1.0)
    # request 0 and 5: a first decode gap after the KV transfer of 0.5 s (and a later one)
    pd.DataFrame({"request_id": [0, 5, 0], "gap_s": [0.5, 0.25, 9.0]}).to_parquet(
        sim / "request_gaps.parquet"
    )
    a = cmp.load_run(sim)
    b = cmp.load_run(sim, first_token="decode")
    ta, tb = (
        a.requests.set_index("request_id")["ttft_s"],
        b.requests.set_index("request_id")["ttft_s"],
    )
    assert tb[0] == pytest.approx(ta[0] + 0.5) and tb[5] == pytest.approx(ta[5] + 0.25)
    assert (tb.drop([0, 5]) == ta.drop([0, 5])).all()
    assert a.gaps[0].size - b.gaps[0].size == 2  # the two first gaps left the TBT sample
    assert 9.0 in set(b.gaps[0]) and 0.5 not in set(b.gaps[0])
    from experiments.errors import ExperimentError

    with pytest.raises(ExperimentError, match="first_token"):
        cmp.load_run(sim, first_token="x")


def test_report_files_and_summary(tmp_path):
    from types import SimpleNamespace

    from experiments.validation.report import summary_table, write_report

    reals = [_real_dir(tmp_path / f"r{k}", s) for k, s in enumerate((0.95, 1.0, 1.05))]
    sim = _sim_dir(tmp_path / "sim", 1.08, 0.80)
    steps = Steps(tmp_path / "run", log=lambda s: None)
    d = steps.path("compare-baseline-conv-r1")
    d.mkdir(parents=True)
    df = cmp.compare_runs(sim, reals, design="baseline", load="conv-r1")
    (d / "errors.csv").write_text(df.to_csv(index=False))
    cmp.plot_cdfs(cmp.load_run(sim), [cmp.load_run(r) for r in reals], d / "cdf.png")
    steps.results["compare-baseline-conv-r1"] = {}
    # the serving probes' result (probe-baseline): its terms, fits and engines in the report
    from experiments.validation.serving_fit import TERMS

    probe = {"terms": {**dict.fromkeys(TERMS, 0.0), "arrival_s": 0.05,
                       "arrival_s_per_token": 2e-4, "iteration_s": 0.004},
             "fits": {"alpha": {"points": 15, "rms_s": 0.002, "max_abs_residual_s": 0.004},
                      "delta": {"points": 6, "rms_s": 0.0005, "max_abs_residual_s": 0.001}},
             "engines": {"colocated": {"block_size": 128, "num_gpu_blocks": 64,
                                       "source": "metrics vllm:cache_config_info"}},
             "notes": ["delivery_s: test"]}  # fmt: skip
    steps.path("probe-baseline").mkdir(parents=True)
    (steps.path("probe-baseline") / "probes.csv").write_text("probe\nalpha\n")
    steps.results["probe-baseline"] = probe
    c = _default_cfg("designs=[baseline]")
    loads = [SimpleNamespace(name="conv-r1", trace="azure-conv-2023", rate=1.0, duration_s=9)]
    pub = tmp_path / "pub"
    rows = write_report(c, loads, steps, tmp_path / "run", pub, ["splitbench-validate", "x=1"])
    assert rows == len(df) == 10
    for n in ("report.md", "repeat_errors.csv", "summary.csv", "noise.png", "versions.json",
              "cdf-baseline-conv-r1.png"):  # fmt: skip
        assert (pub / n).is_file(), n
    s = summary_table(df).iloc[0]
    assert s["ttft_p50_err"] == pytest.approx(0.08) and s["tbt_p90_err"] == pytest.approx(-0.2)
    assert s["noise_max"] == pytest.approx(0.05, abs=1e-9)
    text = (pub / "report.md").read_text()
    assert "| baseline | conv-r1 | +8% / +8% | -20% / -20% |" in text
    assert "splitbench-validate x=1" in text
    assert json.loads((pub / "versions.json").read_text())["python"]
    serving = pd.read_csv(pub / "serving.csv")
    row = serving.set_index("term").loc["arrival_s"]
    assert row["value"] == 0.05 and row["unit"] == "s" and row["probe"] == "alpha"
    assert row["fit_points"] == 15 and row["fit_rms_s"] == 0.002
    assert (pub / "probes-baseline.csv").is_file()
    assert "| baseline | `iteration_s` | 0.004 | s | delta | 6 | 0.50 | 1.00 |" in text
    assert "colocated 64 blocks x 128 tokens" in text
    # the remaining gap per component in absolute ms (real - sim P50), beside the terms in sim
    assert "## Remaining gap per component, absolute ms" in text
    gap = df[(df.metric == "ttft_s") & (df.stat == "p50")]
    ms = float(gap["real"].iloc[0] - gap["sim"].iloc[0]) * 1e3
    assert f"| baseline | conv-r1 | {ms:.2f} |" in text


def test_deployment_turns_prefix_caching_off_unless_asked():
    from experiments.validation.deploy import vllm_argv

    inst = InstanceConfig(port=8100, cpus="0")
    off = vllm_argv(DeployConfig(), "m", inst, None)
    on = vllm_argv(DeployConfig(prefix_caching=True), "m", inst, None)
    assert "--no-enable-prefix-caching" in off and "--no-enable-prefix-caching" not in on
    assert _default_cfg().deploy.prefix_caching is False


@pytest.mark.parametrize("key, allowed", [
    ("simulate.speed_sentinel_as", "overhead, scale"),
    ("simulate.decode_leg_as", "work, latency"),
    ("simulate.arrival_as", "latency, work, auto"),
])  # fmt: skip
def test_app_refuses_an_unknown_placement_in_one_line(tmp_path, key, allowed):
    r = _app(tmp_path, *APP_ARGS, f"model.dir={_model_dir(tmp_path)}", f"{key}=bogus",
             "hydra.run.dir=out")  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {key}: must be one of {allowed}, got 'bogus'"]
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "trace-smoke").exists()
