"""GPU tests (marked ``gpu``; skipped without CUDA by tests/conftest.py): graphs, NVML, profiler.

They use no pytest-plugin fixture, so they also run from a plain checkout on a GPU machine:
``python3 -m pytest -q tests/test_gpu.py``.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def _profile(tmp_path, **kw):
    from characterize.measure.profiler import ProfileConfig, SweepSpec, TimingOptions, profile_phase

    prefill = kw.pop("prefill", ((1, 32),))
    decode = kw.pop("decode", ((2, 32),))
    cfg = ProfileConfig(
        sweep=SweepSpec("gpu-test", prefill=tuple(prefill), decode=tuple(decode)),
        device="cuda",
        timing=TimingOptions(warmup=1, repeats=3, min_window_s=0.05, max_point_s=5.0),
        out_dir=str(tmp_path),
        progress=False,
        **kw,
    )
    return profile_phase(cfg)


def test_native_decode_graph_replay_matches_eager():
    import torch

    from characterize.measure.models import TINY_MODELS, ShardSpec
    from characterize.measure.models.engine import _capture
    from characterize.measure.models.native import NativeModel

    shard = ShardSpec(TINY_MODELS["tiny-llama"], tp=1)
    model = NativeModel(shard, "cuda", torch.float32, seed=0)
    cache = model.new_cache(2, 33)
    cache.fill_random(32)
    ids = model.random_ids(2, 1)
    with torch.inference_mode():
        eager = model(ids, 32, cache).clone()
        out = {}

        def step():
            out["logits"] = model(ids, 32, cache)

        graph = _capture(step)
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(out["logits"], eager, atol=1e-4, rtol=0)


@pytest.mark.parametrize("impl", ["native", "transformers"])
def test_tiny_profile_on_gpu(tmp_path, impl):
    run = _profile(tmp_path, model="tiny-bloom", tp=1, impl=impl)
    df = run.profiles
    assert len(df) == 2 and (df.latency_s > 0).all()
    assert df.source.str.contains("cuda").all()
    if impl == "native":
        assert df.source.str.contains("cuda-graphs").all()


@pytest.mark.parametrize(("model", "layers"), [("llama2-70b", 2), ("bloom-176b", 1)])
def test_real_tp8_shard_shapes_run(tmp_path, model, layers):
    run = _profile(
        tmp_path, model=model, tp=8, layers=layers, prefill=((1, 512),), decode=((1, 512),)
    )
    df = run.profiles
    assert len(df) == 2 and (df.latency_s > 0).all()
    assert df.source.str.contains(f"tp8 shard, layers {layers}/").all()
    det = run.details
    assert (det[det.phase == "decode"].achieved_bytes_per_s > 1e11).all()  # > 100 GB/s


def test_nvml_reads_power_and_energy():
    import torch

    from characterize.measure.power import PowerMonitor, make_backend

    backend = make_backend("auto")
    if not backend.available:
        pytest.skip(f"NVML unavailable: {backend.reason}")
    assert backend.power_w(0) > 0
    assert backend.power_limit_w(0) > 0
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    monitor = PowerMonitor(backend, [0], sync=torch.cuda.synchronize)
    monitor.begin_window("matmul")
    for _ in range(200):
        a @ a
    m = monitor.end_window("matmul")
    monitor.close()
    assert m.energy_source in ("counter", "sampled")
    assert m.energy_j > 0 and not math.isnan(m.mean_power_w)
