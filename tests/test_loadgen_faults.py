"""The load generator under faults (issue 25, "nothing lost, nothing silent"): a misbehaving
OpenAI-compatible server (tests/fake_openai.py) sends malformed stream chunks, drops streams,
answers HTTP 500, short answers, stalls, HTML or odd model lists; the disk fills up; Ctrl-C
comes during the probe, the warm-up and the run. Every request ends in the accounting with a
status and a reason, errors are one line with exit 2, Ctrl-C is one line with exit 130, and what
finished is on disk."""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_openai import (
    BAD_CHUNKS,
    DROP_LEN,
    ERROR_LEN,
    HANG_LEN,
    SHORT_LEN,
    SLOW_LEN,
    STALL_LEN,
    FakeServer,
)

from experiments.loadgen import client, records

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FINAL = ("ok", "short", "error", "dropped", "timeout")
#: what pyarrow raises when the disk is full (errno 28, no file name)
ENOSPC = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left")


@pytest.fixture(scope="module")
def server():
    with FakeServer(ttft_s=0.02, tbt_s=0.01, slow_s=3.0, hang_s=30.0) as s:
        yield s


def _replay(plan, opts, **kw):
    """client.replay in a fresh loop; also returns what reached the loop's exception handler
    (a task exception never retrieved, ...)."""
    seen = []

    async def go():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx))
        return await client.replay(plan, opts, **kw)

    st = asyncio.run(go())
    gc.collect()
    return st, seen


def test_malformed_chunks_and_every_fault_end_in_the_accounting(server, capfd):
    lens = [5, *BAD_CHUNKS, ERROR_LEN, DROP_LEN, SHORT_LEN, SLOW_LEN, STALL_LEN, 6]
    plan = [client.Record(i, 0.0, n, 6) for i, n in enumerate(lens)]
    # 2 s: well above a normal answer (0.1 s) on a loaded machine, below a stall (3 s)
    opts = client.ClientOptions(base_url=server.base_url, request_timeout_s=2.0)
    st, handler_calls = _replay(plan, opts)
    assert not handler_calls
    err = capfd.readouterr().err
    assert "never retrieved" not in err and "Traceback" not in err
    by = {r.prompt_tokens: r for r in st.records}
    for r in st.records:
        assert r.status in FINAL and (r.status == "ok" or r.reason), (r.prompt_tokens, r)
    assert by[5].status == by[6].status == "ok"
    for n, payload in BAD_CHUNKS.items():
        r = by[n]
        assert r.status == "error" and r.reason.startswith("bad stream chunk: "), (payload, r)
        assert not records.request_table([r])["e2e_s"].notna().any()
    assert "a JSON list, not an object" in by[41].reason
    assert "usage.prompt_tokens is null" in by[46].reason
    assert "choices[0] is not an object" in by[47].reason
    assert "not JSON: {not json" in by[53].reason
    assert by[ERROR_LEN].status == "error" and "HTTP 500" in by[ERROR_LEN].reason
    assert by[DROP_LEN].status == "dropped"
    assert by[SHORT_LEN].status == "short" and by[SHORT_LEN].reason == "3 of 6 tokens"
    assert by[SLOW_LEN].status == by[STALL_LEN].status == "timeout"
    req = records.request_table(st.records)
    blk = records.client_block(req, st, cpu_s=0.1, wall_s=1.0)
    assert blk["status"]["ok"] + blk["short"] + blk["failed"] == len(plan)
    assert blk["failed"] == len(BAD_CHUNKS) + 4
    assert blk["status"]["in_flight"] == blk["status"]["not_sent"] == 0


def test_chunk_shapes():
    assert client.parse_chunk({"choices": [{"text": "a"}]}) == (1, -1, -1)
    assert client.parse_chunk({"choices": [{"token_ids": [1, 2, 3]}]}) == (3, -1, -1)
    assert client.parse_chunk({"choices": [], "usage": {"prompt_tokens": 4}}) == (0, 4, -1)
    assert client.parse_chunk({"choices": [{"text": "a"}], "usage": None}) == (1, -1, -1)
    for bad in ([1, 2], 42, None, {"choices": ["x"]}, {"usage": {"completion_tokens": -1}}):
        with pytest.raises(client.BadChunk):
            client.parse_chunk(bad)


@pytest.mark.parametrize(
    "answer, model, expect",
    [
        ((200, "text/html", "<!doctype html><p>Welcome"), None, "text/html, not JSON"),
        ((200, "application/json", '{"data": [{"id": 5}]}'), "m", "model id 5 is not a string"),
        ((200, "application/json", '{"data": [{"id": [1]}]}'), None, "is not a string"),
        ((200, "application/json", '{"data": "x"}'), "m", "is not an OpenAI model list"),
    ],
)
def test_probe_says_what_a_wrong_server_answered(answer, model, expect):
    with FakeServer(models=answer) as s:
        opts = client.ClientOptions(base_url=s.base_url, model=model)
        with pytest.raises(client.LoadgenError) as e:
            asyncio.run(client.replay([client.Record(0, 0, 5, 2)], opts))
    assert expect in str(e.value) and "cannot reach" not in str(e.value)


def test_a_failing_checkpoint_stops_the_run_and_is_raised(server):
    plan = [client.Record(0, 0.0, 5, 2), *(client.Record(i, 0.0, HANG_LEN, 2) for i in (1, 2))]
    calls = []

    def progress(state):  # the disk fills up once the first request is done
        calls.append([r.status for r in state.records])
        if calls[-1][0] == "ok":
            raise ENOSPC

    opts = client.ClientOptions(base_url=server.base_url)
    t = time.perf_counter()
    with pytest.raises(OSError, match="No space left"):
        _replay(plan, opts, on_progress=progress, checkpoint_s=0.2)
    assert time.perf_counter() - t < 10  # in-flight requests cancelled, not waited for
    assert calls[-1] == ["ok", "in_flight", "in_flight"]  # the checkpoint's copy
    assert [r.status for r in plan] == ["ok", "interrupted", "interrupted"]


# ---- the app (console script) -------------------------------------------------------------


def _trace(path: Path, prompts: list[int], gap: float = 0.0, out: int = 6) -> Path:
    pd.DataFrame(
        {
            "request_id": range(len(prompts)),
            "arrival_s": [gap * i for i in range(len(prompts))],
            "prompt_tokens": prompts,
            "output_tokens": [out] * len(prompts),
        }
    ).to_csv(path, index=False)
    return path


def _argv(server, tmp: Path, trace: Path, *extra: str) -> list[str]:
    return [
        f"target.base_url={server.base_url}",
        f"trace.path={trace}",
        "client.warmup_requests=0",
        "client.checkpoint_s=0.2",
        f"hydra.run.dir={tmp / 'run'}",
        *extra,
    ]


def _env(tmp: Path) -> dict:
    return {**os.environ, "SPLITBENCH_ROOT": str(tmp), "OMP_NUM_THREADS": "1"}


def _start(args: list[str], tmp: Path, prelude: str = "") -> subprocess.Popen:
    """``splitbench-loadgen args`` (through ``python -c`` when a prelude must run first)."""
    if prelude:
        code = f"{prelude}\nfrom experiments.apps.loadgen import main\nmain({args!r})"
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [str(BIN / "splitbench-loadgen"), *args]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
        env=_env(tmp),
        stdin=subprocess.DEVNULL,
    )


def _finish(p: subprocess.Popen, timeout: float = 60) -> tuple[int, str, list[str]]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, [x for x in err.splitlines() if x.strip()]


def test_app_counts_every_request_of_a_misbehaving_server(server, tmp_path):
    lens = [5, 41, 45, 46, 47, ERROR_LEN, DROP_LEN, SHORT_LEN, STALL_LEN, 6]
    tr = _trace(tmp_path / "t.csv", lens)
    p = _start(_argv(server, tmp_path, tr, "client.request_timeout_s=2"), tmp_path)
    rc, out, err = _finish(p)
    assert rc == 0 and not err, err
    assert "client      2 ok, 1 short, 7 failed, 0 interrupted, 0 not sent;" in out
    req = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert len(req) == len(lens) and req["status"].isin(FINAL).all()
    assert (req.loc[req["status"] != "ok", "reason"].str.len() > 0).all()
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["loadgen"]["failed"] == 7 and s["requests"]["total"] == len(lens)


@pytest.mark.parametrize(
    "answer, extra, expect",
    [
        (
            (200, "application/json", '{"data": [{"id": 1}, {"id": {"a": 2}}]}'),
            ["target.model=m"],
            "model id 1 is not a string",
        ),
        ((200, "text/html", "<html><body>router login</body></html>"), [], "text/html, not JSON"),
    ],
)
def test_app_wrong_server_is_one_line(tmp_path, answer, extra, expect):
    tr = _trace(tmp_path / "t.csv", [5])
    with FakeServer(models=answer) as s:
        rc, out, err = _finish(_start(_argv(s, tmp_path, tr, *extra), tmp_path))
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: target.base_url: ") and expect in err[0], err


def _wait(cond, timeout: float = 30.0, what: str = "") -> None:
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def _interrupt(p: subprocess.Popen) -> tuple[int, str, list[str], float]:
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc, out, err = _finish(p, timeout=30)
    return rc, out, err, time.monotonic() - t


@pytest.mark.parametrize("phase", ["probe", "warm-up"])
def test_ctrl_c_during_probe_or_warmup_is_prompt_and_130(tmp_path, phase):
    tr = _trace(tmp_path / "t.csv", [5, 6])
    extra = ["client.request_timeout_s=60", "client.connect_timeout_s=30"]
    if phase == "warm-up":
        extra += ["client.warmup_requests=1", f"client.warmup_prompt_tokens={HANG_LEN}"]
    with FakeServer(hang_s=60, models_delay_s=60 if phase == "probe" else 0) as s:
        p = _start([*_argv(s, tmp_path, tr), *extra], tmp_path)
        target = (lambda: s.bodies) if phase == "warm-up" else s.seen.is_set
        _wait(target, what=f"the {phase} request")
        rc, out, err, took = _interrupt(p)
    assert rc == 130 and len(err) == 1, (rc, err)
    assert err[0].startswith(f"interrupted during the {phase} of "), err
    assert took < 10  # not the request timeout (60 s)
    assert not (tmp_path / "run" / "requests.parquet").exists()


def test_checkpoints_reach_disk_during_the_run_and_ctrl_c_keeps_them(server, tmp_path):
    tr = _trace(tmp_path / "t.csv", [5, 6, 8, HANG_LEN, HANG_LEN, 9], gap=0.02)
    p = _start(_argv(server, tmp_path, tr, "client.request_timeout_s=60"), tmp_path)
    path = tmp_path / "run" / "requests.parquet"

    def four_done():
        return path.exists() and (pd.read_parquet(path)["status"] == "ok").sum() == 4

    _wait(four_done, what="a checkpoint with the 4 finished requests")  # the run goes on
    assert p.poll() is None
    during = pd.read_parquet(path)
    assert set(during["status"]) <= {"ok", "in_flight"}  # a kill now would keep these
    rc, out, err, took = _interrupt(p)
    assert rc == 130 and len(err) == 1, (rc, err)
    assert err[0].startswith("interrupted: 4 requests finished, 0 failed, 2 cut in flight"), err
    assert took < 10
    req = pd.read_parquet(path)
    assert sorted(req["status"]) == ["interrupted"] * 2 + ["ok"] * 4
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["loadgen"]["stopped_by"] == "interrupt" and s["requests"]["completed"] == 4
    assert "client      4 ok, 0 short, 0 failed, 2 interrupted, 0 not sent" in out


#: run first in the app's process: the disk fills up after the first checkpoint (2 tables),
#: for Parquet (pyarrow's error) and JSON (open()'s error) alike; neither names a file
_FULL_DISK = """
import errno, pyarrow.parquet as pq, common.atomic as atomic
_real, _n = pq.write_table, [0]
def _write_table(*a, **kw):
    _n[0] += 1
    if _n[0] > 2:
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space")
    return _real(*a, **kw)
def _open(*a, **kw):
    raise OSError(errno.ENOSPC, "No space left on device")
pq.write_table = _write_table
if {json}:
    atomic.open = _open
"""


def test_disk_full_during_the_run_is_one_line_naming_the_file(server, tmp_path):
    tr = _trace(tmp_path / "t.csv", [5, 6, HANG_LEN, HANG_LEN], gap=0.02)
    p = _start(
        _argv(server, tmp_path, tr, "client.request_timeout_s=60"),
        tmp_path,
        prelude=_FULL_DISK.format(json=False),
    )
    rc, out, err = _finish(p, timeout=30)
    run = tmp_path / "run"
    assert rc == 2 and len(err) == 1, (rc, err)
    assert err[0].startswith(f"error: {run / 'requests.parquet'}: cannot write: "), err
    assert "No space" in err[0], err
    # the first checkpoint is whole on disk (what finished by then), no temporary file left
    req = pd.read_parquet(run / "requests.parquet")
    assert set(req["status"]) <= {"ok", "in_flight"} and len(req) >= 2
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


def test_disk_full_before_the_run_is_one_line_naming_the_file(server, tmp_path):
    tr = _trace(tmp_path / "t.csv", [5, 6])
    prelude = _FULL_DISK.format(json=True)
    rc, out, err = _finish(_start(_argv(server, tmp_path, tr), tmp_path, prelude=prelude))
    assert rc == 2 and len(err) == 1, (rc, err)
    assert err[0].startswith(f"error: {tmp_path / 'run' / 'loadgen.json'}: cannot write: "), err
    assert "No space" in err[0], err
