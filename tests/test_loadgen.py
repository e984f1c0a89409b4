"""splitbench-loadgen against a small real HTTP server with known delays (tests/fake_openai.py)."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pandas as pd
import pytest
from fake_openai import DROP_LEN, ERROR_LEN, SHORT_LEN, SLOW_LEN, FakeServer

from experiments.loadgen import client, records

TTFT, TBT = 0.08, 0.02
# The lower bounds are exact (a token cannot come before the server sends it); the upper slack
# is generous because the suite runs on 2 shared cores (load averages above 10 seen). The exact
# metric arithmetic is tested on fixed times in test_summary_goes_through_the_simulator_metrics.
SLACK = 0.5


@pytest.fixture(scope="module")
def server():
    with FakeServer(ttft_s=TTFT, tbt_s=TBT, slow_s=3.0) as s:
        yield s


def _opts(server, **kw):
    return client.ClientOptions(base_url=server.base_url, **kw)


def _run(plan, opts, **kw):
    return asyncio.run(client.replay(plan, opts, **kw))


def test_streamed_times_match_the_server_delays(server):
    plan = [client.Record(i, 0.05 * i, 20 + i, 6) for i in range(4)]
    st = _run(plan, _opts(server))
    req = records.request_table(st.records)
    assert list(req["status"]) == ["ok"] * 4
    assert (req["output_tokens"] == 6).all()
    for r in st.records:
        t = np.asarray(r.token_times_s) - r.arrival_s
        assert len(t) == 6
        assert TTFT <= t[0] <= TTFT + SLACK
        gaps = np.diff(t)
        # token k leaves the server TTFT + k*TBT after the request at the earliest
        assert (t >= TTFT + TBT * np.arange(6) - 1e-3).all()
        assert (gaps <= TBT + SLACK).all()
    assert (req["ttft_s"] >= TTFT).all() and (req["ttft_s"] <= TTFT + SLACK).all()
    # E2E = TTFT + 5 gaps of TBT
    assert (req["e2e_s"] >= TTFT + 5 * TBT - 0.01).all()
    # the request body: exact-length id prompt, max_tokens = min_tokens = output, ignore_eos
    b = server.bodies[-1]
    assert b["stream"] is True and b["ignore_eos"] is True
    assert b["max_tokens"] == b["min_tokens"] == 6
    assert isinstance(b["prompt"], list) and len(b["prompt"]) == 23
    assert all(100 <= x < 32000 for x in b["prompt"])
    assert st.model == "fake-model"


def test_prompts_are_seeded_and_exact():
    o = client.ClientOptions(base_url="http://127.0.0.1:1", seed=3)
    a, b = client.make_prompt(o, 5, 40), client.make_prompt(o, 5, 40)
    assert a == b and len(a) == 40
    assert client.make_prompt(o, 6, 40) != a
    t = client.make_prompt(client.ClientOptions(base_url="x", prompt_mode="text"), 1, 9)
    assert len(t.split()) == 9


def test_faults_are_records_and_the_run_goes_on(server):
    lens = [5, ERROR_LEN, DROP_LEN, SHORT_LEN, SLOW_LEN, 6]
    plan = [client.Record(i, 0.0, n, 8) for i, n in enumerate(lens)]
    st = _run(plan, _opts(server, request_timeout_s=1.0))
    by = {r.prompt_tokens: r for r in st.records}
    assert by[5].status == "ok" and by[6].status == "ok"
    assert by[ERROR_LEN].status == "error" and "HTTP 500" in by[ERROR_LEN].reason
    assert by[DROP_LEN].status == "dropped" and by[DROP_LEN].reason
    assert by[SHORT_LEN].status == "short" and by[SHORT_LEN].reason == "4 of 8 tokens"
    assert by[SLOW_LEN].status == "timeout"
    req = records.request_table(st.records)
    short = req[req["status"] == "short"].iloc[0]
    assert short["output_tokens"] == 4 and short["requested_output_tokens"] == 8
    assert not math.isnan(short["e2e_s"])
    failed = req[req["status"].isin(["error", "dropped", "timeout"])]
    assert failed["e2e_s"].isna().all() and failed["ttft_s"].isna().all()
    s = records.summarize(req, records.token_table(st.records))
    assert s["requests"] == {"total": 6, "completed": 3, "rejected": 0, "incomplete": 3}
    blk = records.client_block(req, st, cpu_s=0.1, wall_s=1.0)
    assert blk["short"] == 1 and blk["failed"] == 3
    assert blk["status"]["timeout"] == 1


def test_unreachable_endpoint_and_wrong_model_fail_before_the_run(server):
    with pytest.raises(client.LoadgenError, match="cannot reach"):
        _run([client.Record(0, 0, 5, 2)], client.ClientOptions(base_url="http://127.0.0.1:9"))
    with pytest.raises(client.LoadgenError, match="target.model: 'nope' is not served"):
        _run([client.Record(0, 0, 5, 2)], _opts(server, model="nope"))


def test_bounded_outstanding_makes_lag_and_reports_it(server, capsys):
    # 6 requests due at once, 1 in flight at a time: each waits for the previous (~0.18 s)
    plan = [client.Record(i, 0.0, 5, 6) for i in range(6)]
    st = _run(plan, _opts(server, max_outstanding=1, lag_warn_s=0.1))
    lags = [r.lag_s for r in st.records]
    assert lags[0] < SLACK
    assert lags[-1] >= 5 * (TTFT + 5 * TBT) - 0.01
    assert st.lag_warnings >= 1 and "behind schedule" in capsys.readouterr().err
    assert max(lags) - SLACK <= st.max_lag_s <= max(lags)  # stamped just before each send
    # TTFT counts from the scheduled arrival: the lag is inside it (no coordinated omission)
    req = records.request_table(st.records)
    assert req["ttft_s"].iloc[-1] >= lags[-1] + TTFT


def test_stop_keeps_partial_results(server):
    plan = [client.Record(i, 0.3 * i, 5, 30) for i in range(10)]
    stop = asyncio.Event()
    seen = []

    async def go():
        asyncio.get_running_loop().call_later(0.5, stop.set)
        return await client.replay(
            plan, _opts(server), stop=stop, on_progress=seen.append, checkpoint_s=0.2
        )

    st = asyncio.run(go())
    status = [r.status for r in st.records]
    assert st.stopped_by == "interrupt"
    assert "interrupted" in status and status[-1] == "not_sent"
    assert seen  # the app writes its checkpoint files here
    req = records.request_table(st.records)
    assert "not_sent" not in set(req["status"])  # never-sent requests are not records
    assert len(req) == sum(s != "not_sent" for s in status)
    blk = records.client_block(req, st, cpu_s=0.0, wall_s=1.0)
    assert blk["status"]["not_sent"] == status.count("not_sent") > 0


def test_max_requests_and_duration_bound_the_run(server):
    plan = [client.Record(i, 0.01 * i, 5, 2) for i in range(50)]
    st = _run(plan, _opts(server, max_requests=5))
    assert len(st.records) == 5
    st = _run(plan, _opts(server, max_duration_s=0.1))
    assert st.stopped_by == "max_duration_s"
    assert sum(r.status == "ok" for r in st.records) == 11


def test_summary_goes_through_the_simulator_metrics_exactly():
    recs = []
    for i, times in enumerate([[0.1, 0.3, 0.4], [0.2, 0.25], [0.5, 0.6, 0.8, 0.9]]):
        r = client.Record(
            i,
            float(i),
            10,
            len(times),
            sent_s=float(i),
            token_times_s=[i + t for t in times],
            status="ok",
        )
        recs.append(r)
    recs.append(client.Record(3, 3.0, 10, 4, sent_s=3.0, status="error", reason="HTTP 500"))
    req = records.request_table(recs)
    tok = records.token_table(recs)
    assert req["ttft_s"].tolist()[:3] == pytest.approx([0.1, 0.2, 0.5])
    assert req["e2e_s"].tolist()[:3] == pytest.approx([0.4, 0.25, 0.9])
    s = records.summarize(req, tok)
    gaps = [0.2, 0.1, 0.05, 0.1, 0.2, 0.1]
    assert s["tbt_s"]["p50"] == pytest.approx(0.1)
    assert s["tbt_s"]["p99"] == pytest.approx(0.2)
    assert s["tbt_s"]["mean"] == pytest.approx(np.mean(gaps))
    assert s["ttft_s"]["p50"] == pytest.approx(0.2)
    assert s["requests"]["completed"] == 3 and s["requests"]["incomplete"] == 1
    assert "exact" in s["tbt_weighting"]
    assert tok["token_times_s"].tolist()[1] == pytest.approx([0.2, 0.25])


def _write_trace(path, n=8, gap=0.05):
    df = pd.DataFrame(
        {
            "request_id": range(n),
            "arrival_s": [gap * i for i in range(n)],
            "prompt_tokens": [80 + 4 * i for i in range(n)],
            "output_tokens": [8] * n,
        }
    )
    df.to_csv(path, index=False)


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from experiments.config.schemas import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("loadgen", overrides=overrides)


def test_app_writes_a_replay_like_run_dir_the_report_reads(server, tmp_path):
    from experiments.apps import loadgen
    from experiments.report import load_inputs

    _write_trace(tmp_path / "t.csv")
    cfg = _compose(
        [
            f"target.base_url={server.base_url}",
            f"trace.path={tmp_path / 't.csv'}",
            "lengths.prompt_scale=0.25",
            "lengths.output_scale=0.5",
            "client.warmup_requests=1",
            f"paths.root={tmp_path}",
        ]
    )
    out = tmp_path / "run"
    n0 = len(server.bodies)
    s = loadgen.run(cfg, run_dir=out)
    assert len(server.bodies) - n0 == 9  # 1 warm-up + 8
    req = pd.read_parquet(out / "requests.parquet")
    tok = pd.read_parquet(out / "tokens.parquet")
    assert len(req) == 8 and (req["status"] == "ok").all()  # the warm-up is not a record
    assert req["prompt_tokens"].tolist() == [20 + i for i in range(8)]
    assert (req["output_tokens"] == 4).all()
    assert s["requests"]["completed"] == 8
    assert s["trace_info"]["length_scaling"]["changed"] == 8
    assert s["context"] == {
        "policy": "clip",
        "max_context": 4096,
        "clipped": 0,
        "clipped_tokens": 0,
        "rejected": 0,
        "rejected_tokens": 0,
    }
    assert s["loadgen"]["cpu_ms_per_request"] > 0
    assert len(tok) == 8 and all(len(t) == 4 for t in tok["token_times_s"])
    assert json.loads((out / "summary.json").read_text())["loadgen"]["warmup_requests"] == 1
    _, runs = load_inputs([str(out)])
    assert len(runs) == 1 and len(runs[0]["requests"]) == 8


def test_app_config_errors_name_the_key(tmp_path):
    from experiments.apps import loadgen
    from experiments.errors import ExperimentError

    for ov, key in [
        (["target.base_url=http://example.com:80"], "target.base_url"),
        (["client.max_outstanding=0"], "client.max_outstanding"),
        (["lengths.prompt_scale=-1"], "lengths.prompt_scale"),
        (["target.prompt_mode=words"], "target.prompt_mode"),
    ]:
        with pytest.raises(ExperimentError, match=key):
            loadgen.check_config(_compose(ov))


def test_plan_scales_lengths_then_fits_the_context_window(tmp_path):
    from experiments.config.checks import loadgen_config
    from experiments.loadgen.plan import load_plan

    _write_trace(tmp_path / "t.csv")  # prompts 80 + 4i, outputs 8
    cfg = _compose(
        [
            f"trace.path={tmp_path / 't.csv'}",
            "lengths.prompt_scale=0.25",  # -> 20 + i
            "lengths.output_scale=0.5",  # -> 4
            "target.max_model_len=26",  # 20+i + 4 > 26 for i >= 3: output clipped to 26 - p
        ]
    )
    df, info = load_plan(loadgen_config(cfg))
    # i=6,7: the prompt alone leaves no room, so it is clipped to 25 and the output to 1
    assert df["prompt_tokens"].tolist() == [20, 21, 22, 23, 24, 25, 25, 25]
    assert df["output_tokens"].tolist() == [4, 4, 4, 3, 2, 1, 1, 1]
    assert info["length_scaling"]["changed"] == 8
    assert info["context"] == {
        "policy": "clip",
        "max_context": 26,
        "clipped": 5,
        "clipped_tokens": 220 - 205,
        "rejected": 0,
        "rejected_tokens": 0,
    }


def test_config_is_typed_and_the_trace_is_checked_before_the_run():
    """The loadgen config is a typed schema (experiments.config): a wrongly typed value fails at
    composition, and a bad trace value is one line before any request is sent."""
    from omegaconf import OmegaConf

    from experiments.config.checks import loadgen_config
    from experiments.config.loadgen import ClientConf, TargetConf
    from experiments.errors import ExperimentError

    cfg = _compose([])
    assert OmegaConf.get_type(cfg.client) is ClientConf
    assert OmegaConf.get_type(cfg.target) is TargetConf
    with pytest.raises(Exception, match="client.max_outstanding"):
        _compose(["client.max_outstanding=many"])
    with pytest.raises(ExperimentError, match=r"^trace\.arrival: unknown value 'uniform'"):
        loadgen_config(_compose(["trace.arrival=uniform"]))
    conf = loadgen_config(_compose(["client.max_requests=3", "lengths.max_prompt_tokens=64"]))
    assert conf.client.max_requests == 3 and conf.lengths.max_prompt_tokens == 64
    assert conf.trace.name == "azure-conv-2023" and "hydra" not in conf.record
