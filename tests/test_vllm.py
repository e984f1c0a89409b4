"""Against a real vLLM CPU server and engine (marked ``vllm``; skipped where vLLM is missing).

One tiny random-weight Llama folder (4 layers, 512 wide, float32) is built per session; the
server starts once for the module (about 45 s) and is stopped at the end (its process group).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from characterize.measure.vllm_server import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("models") / "tiny-llama-512")


@pytest.fixture(scope="module")
def server(model_dir):
    from characterize.measure.vllm_server import VLLMServer

    srv = VLLMServer(model_dir, port=_free_port(), max_model_len=2048, kvcache_gib=1)
    srv.start(wait_s=300)
    try:
        yield srv
    finally:
        srv.stop()
        pid = srv.proc.pid if srv.proc else None
        assert pid is None  # stop() cleared it


def test_server_streams_exact_token_counts(server, tmp_path):
    from experiments.loadgen import client, records

    plan = [client.Record(i, 0.2 * i, 24 + 8 * i, 6 + i) for i in range(6)]
    opts = client.ClientOptions(base_url=server.base_url, request_timeout_s=60, max_requests=6)
    st = asyncio.run(client.replay(plan, opts, warmup=[client.Record(-1, 0, 16, 4)]))
    req = records.request_table(st.records)
    assert list(req["status"]) == ["ok"] * 6, req["reason"].tolist()
    assert req["output_tokens"].tolist() == [6 + i for i in range(6)]
    assert req["usage_completion_tokens"].tolist() == [6 + i for i in range(6)]
    assert req["usage_prompt_tokens"].tolist() == [24 + 8 * i for i in range(6)]
    assert (req["ttft_s"] > 0).all() and (req["e2e_s"] > req["ttft_s"]).all()
    assert (req["tbt_mean_s"] > 0).all()
    s = records.summarize(req, records.token_table(st.records))
    assert s["requests"]["completed"] == 6


def test_wrong_model_is_one_line_before_the_run(server):
    from experiments.loadgen import client

    opts = client.ClientOptions(base_url=server.base_url, model="not-this-one")
    with pytest.raises(client.LoadgenError, match="target.model: 'not-this-one' is not served"):
        asyncio.run(client.replay([client.Record(0, 0, 8, 2)], opts))


def test_loadgen_app_on_a_scaled_azure_window(server, tmp_path):
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    out = tmp_path / "run"
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "splitbench-loadgen"),
        f"target.base_url={server.base_url}",
        "target.max_model_len=2048",
        "trace=azure-conv-2023",
        "trace.end_s=8",
        "trace.scale_to_rate=1.0",
        "lengths.prompt_scale=0.1",
        "lengths.output_scale=0.1",
        "lengths.max_output_tokens=16",
        "client.max_requests=10",
        f"hydra.run.dir={out}",
    ]
    p = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) >= 1 and (req["status"] == "ok").all()
    assert (req["output_tokens"] == req["requested_output_tokens"]).all()
    tok = pd.read_parquet(out / "tokens.parquet")
    assert [len(t) for t in tok["token_times_s"]] == req["output_tokens"].tolist()


def test_characterize_engine_vllm_writes_a_profile(model_dir, tmp_path):

    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "splitbench-characterize"),
        "engine=vllm",
        "model=tiny-llama-512",
        "device=cpu",
        "power=off",
        f"vllm.model_dir={model_dir}",
        "vllm.max_model_len=512",
        "vllm.kvcache_gib=1",
        "sweep=tiny",
        "sweep.timing.max_repeats=8",
        f"out_dir={tmp_path / 'profiles'}",
        "run_name=v",
        f"hydra.run.dir={tmp_path / 'h'}",
    ]
    p = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    prof = pd.read_csv(tmp_path / "profiles" / "v" / "profiles.csv")
    assert set(prof["phase"]) == {"prefill", "decode"}
    assert (prof["latency_s"] > 0).all()
    assert prof["source"].str.contains("vLLM 0.32").all()
    assert prof["source"].str.contains("max_num_batched_tokens=").all()
    # the fit accepts it (the vLLM spec folder names the tiny model and the cpu device)
    assert "fit prefill: held-out MAPE" in p.stdout and "fit decode: held-out MAPE" in p.stdout
