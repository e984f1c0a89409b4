"""Models (native vs transformers), shard arithmetic, the phase profiler and the GPU-check script,
all on CPU with tiny models."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from characterize.measure.models import TINY_MODELS, ShardSpec  # noqa: E402
from characterize.modeling.profiles import PROFILE_COLUMNS  # noqa: E402
from characterize.modeling.specs import SpecError, load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- shard facts


def test_llama_tp8_shard_shapes_and_bytes():
    m = load_model("llama2-70b")
    s = ShardSpec(m, tp=8)
    assert (s.num_heads, s.num_kv_heads, s.ffn_size, s.vocab_size) == (8, 1, 3584, 4000)
    assert s.hidden_size == 8192 and s.head_dim == 128 and s.layer_scale == 1.0
    # eight shards hold the model's layer weights exactly
    assert 8 * s.layer_params == m.params_per_layer
    assert s.kv_bytes_per_token(2) * 8 == m.kv_bytes_per_token
    assert s.decode_bytes(1, 100) == s.weight_bytes(2) + 101 * s.kv_bytes_per_token(2)
    assert s.describe() == "tp8 shard"


def test_layer_subset_scales_and_says_so():
    s = ShardSpec(load_model("bloom-176b"), tp=8, layers=7)
    assert s.num_layers == 7 and s.layer_scale == pytest.approx(10.0)
    assert s.describe() == "tp8 shard, layers 7/70 scaled"
    assert s.num_kv_heads == 14


def test_prefill_flops_by_hand():
    s = ShardSpec(TINY_MODELS["tiny-llama"], tp=1)
    h, d, L = 64, 16, 2
    layer = h * (4 + 2 * 2) * d + 4 * d * h + 3 * h * 128
    assert s.layer_params == layer
    expect = 2.0 * L * layer * 3 * 10 + 2.0 * 128 * h * 3 + 2.0 * L * 4 * d * 10 * 10 * 3
    assert s.prefill_flops(3, 10) == pytest.approx(expect)


def test_bad_shards_are_one_line_errors():
    with pytest.raises(SpecError, match="num_attention_heads=64 is not divisible by tp=3"):
        ShardSpec(load_model("llama2-70b"), tp=3)
    with pytest.raises(SpecError, match=r"layers must be in 1\.\.80"):
        ShardSpec(load_model("llama2-70b"), tp=8, layers=81)


# ----------------------------------------------------------------------------- correctness


def _models(name: str, tp: int = 1):
    from characterize.measure.models.hf import build_hf_model
    from characterize.measure.models.native import NativeModel

    shard = ShardSpec(TINY_MODELS[name], tp=tp)
    hf = build_hf_model(shard, seed=1)
    native = NativeModel(shard, seed=2)  # different seed: the copy must make them equal
    with torch.no_grad():
        native.load_from_hf(hf)
    return shard, hf, native


@pytest.mark.parametrize(("name", "tp"), [("tiny-llama", 1), ("tiny-bloom", 1), ("tiny-llama", 2)])
def test_native_matches_transformers_prefill_and_decode(name, tp):
    shard, hf, native = _models(name, tp)
    ids = native.random_ids(2, 12, seed=3)
    with torch.no_grad():
        ref = hf(input_ids=ids).logits  # full-sequence forward: logits at every position
        cache = native.new_cache(2, 16)
        out = native(ids[:, :8], 0, cache)
        torch.testing.assert_close(out, ref[:, 7], atol=1e-4, rtol=0)
        for p in range(8, 12):
            out = native(ids[:, p : p + 1], p, cache)
            torch.testing.assert_close(out, ref[:, p], atol=1e-4, rtol=0)
    assert ref.abs().max() > 0.1  # the comparison is not between near-zero tensors


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bloom"])
def test_transformers_static_cache_path_matches_reference(name):
    from characterize.measure.models import hf as hfm

    shard, hf, _ = _models(name)
    ids = torch.randint(0, shard.vocab_size, (2, 11), generator=torch.Generator().manual_seed(5))
    kw, cp = hfm.cache_kwarg(hf), hfm.takes_cache_position(hf)
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        cache = hfm.new_static_cache(hf, 2, 16, "cpu", torch.float32)
        out = hfm.forward_step(hf, ids[:, :8], 0, cache, kw, cp)
        torch.testing.assert_close(out, ref[:, 7], atol=1e-4, rtol=0)
        for p in range(8, 11):
            out = hfm.forward_step(hf, ids[:, p : p + 1], p, cache, kw, cp)
            torch.testing.assert_close(out, ref[:, p], atol=1e-4, rtol=0)
        # replaying the same step (as a CUDA graph does) writes the same position again
        again = hfm.forward_step(hf, ids[:, 10:11], 10, cache, kw, cp)
        torch.testing.assert_close(again, ref[:, 10], atol=1e-4, rtol=0)


def test_cache_keyword_detection():
    from characterize.measure.models.hf import cache_kwarg, takes_cache_position

    class New:
        model = None

        def forward(self, input_ids=None, cache=None):
            return None

    class Old:
        model = None

        def forward(self, input_ids=None, past_key_values=None, cache_position=None):
            return None

    assert cache_kwarg(New()) == "cache" and not takes_cache_position(New())
    assert cache_kwarg(Old()) == "past_key_values" and takes_cache_position(Old())


def test_tp_shard_models_have_shard_shapes():
    from characterize.measure.models.hf import build_hf_model
    from characterize.measure.models.native import NativeModel

    shard = ShardSpec(TINY_MODELS["tiny-bloom"], tp=2)
    hf = build_hf_model(shard, dtype=torch.bfloat16)
    attn = hf.transformer.h[0].self_attention
    assert attn.query_key_value.weight.shape == (3 * 2 * 16, 64)
    assert hf.transformer.h[0].mlp.dense_h_to_4h.weight.shape == (128, 64)
    assert {p.dtype for p in hf.parameters()} == {torch.bfloat16}
    nat = NativeModel(shard)
    assert nat.layers[0].wqkv.shape == (3 * 2 * 16, 64) and nat.lm_head.shape == (64, 64)
    cache = nat.new_cache(1, 9)
    assert cache.k.shape == (2, 1, 2, 9, 16)
    with torch.no_grad():
        assert nat(nat.random_ids(1, 8), 0, cache).shape == (1, 64)


# ----------------------------------------------------------------------------- profiler


def _config(tmp_path, **kw):
    from characterize.measure.profiler import ProfileConfig, SweepSpec, TimingOptions

    sweep = kw.pop(
        "sweep",
        SweepSpec.from_grids(
            "t", [{"batch": [1, 2], "prompt": [8, 16]}], [{"batch": [1, 2], "context": [8, 24]}]
        ),
    )
    base = dict(
        model="tiny-llama",
        sweep=sweep,
        tp=1,
        device="cpu",
        power="off",
        timing=TimingOptions(warmup=1, repeats=3, min_window_s=0.002, max_repeats=20),
        out_dir=str(tmp_path),
        progress=False,
    )
    base.update(kw)
    return ProfileConfig(**base)


def test_sweep_grids_union_and_errors():
    from characterize.measure.profiler import ProfilerError, SweepSpec

    s = SweepSpec.from_grids(
        "x",
        [{"batch": [1], "prompt": [128, 256]}, {"batch": [1, 2], "prompt": [128]}],
        [{"batch": 4, "context": [512]}],
    )
    assert s.prefill == ((1, 128), (1, 256), (2, 128))
    assert s.decode == ((4, 512),)
    assert s.max_positions == 513
    with pytest.raises(ProfilerError, match=r"sweep 'x' decode\[0\]: needs 'batch' and 'context'"):
        SweepSpec.from_grids("x", [], [{"batch": [1]}])
    with pytest.raises(ProfilerError, match="integers >= 1"):
        SweepSpec.from_grids("x", [{"batch": [0], "prompt": [8]}], [])


def test_gpu_key_from_device_names():
    from characterize.measure.profiler import gpu_key

    assert gpu_key("NVIDIA H100 80GB HBM3") == "h100-80gb"
    assert gpu_key(None) == "cpu"
    assert gpu_key("NVIDIA L4") == "l4"


def test_profile_phase_writes_contract_rows_and_resumes(tmp_path):
    from characterize.measure.profiler import profile_phase

    run = profile_phase(_config(tmp_path))
    df = pd.read_csv(run.csv_path)
    assert list(df.columns) == PROFILE_COLUMNS
    assert len(df) == 8 and set(df.phase) == {"prefill", "decode"}
    assert (df.latency_s > 0).all() and (df.repeats >= 3).all()
    assert df.power_w.isna().all() and df.energy_j.isna().all()  # power=off
    assert set(df.gpu) == {"cpu"} and set(df.tp) == {1}
    assert df.source.str.contains("splitbench-native fp32 eager").all()
    assert df.source.str.contains("torch ").all()
    meta = json.loads((run.run_dir / "profiles.meta.json").read_text())
    assert meta["gpu"] == "cpu" and meta["shard"]["layers_run"] == 2
    assert meta["versions"]["torch"] and meta["config"]["sweep"]["decode"] == [
        [1, 8],
        [1, 24],
        [2, 8],
        [2, 24],
    ]
    assert "power=off" in meta["power_note"]
    det = pd.read_csv(run.run_dir / "details.csv")
    assert len(det) == 8 and (det.raw_latency_s > 0).all()
    decode = det[det.phase == "decode"]
    assert (decode.achieved_bytes_per_s > 0).all()
    # resume: nothing is measured again, the file is unchanged
    before = run.csv_path.read_bytes()
    again = profile_phase(_config(tmp_path))
    assert again.skipped == 8 and len(again.profiles) == 8
    assert run.csv_path.read_bytes() == before


def test_infeasible_and_oom_points_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from characterize.measure.models.engine import Engine
    from characterize.measure.profiler import profile_phase

    orig_fits, orig_decode = Engine.check_fits, Engine.decode_op

    def fits(self, phase, batch, tokens, headroom=0.9):
        if phase == "prefill" and batch == 2 and tokens == 16:
            return "needs ~99.0 GiB (KV + activations), 1.0 GiB free"
        return orig_fits(self, phase, batch, tokens, headroom)

    def decode(self, batch, context):
        if batch == 2 and context == 24:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return orig_decode(self, batch, context)

    monkeypatch.setattr(Engine, "check_fits", fits)
    monkeypatch.setattr(Engine, "decode_op", decode)
    run = profile_phase(_config(tmp_path, run_name="oom"))
    assert len(run.profiles) == 6
    bad = pd.read_csv(tmp_path / "oom" / "infeasible.csv")
    assert list(bad.columns[:6]) == [
        "model",
        "gpu",
        "tp",
        "phase",
        "batch_size",
        "tokens_per_request",
    ]
    reasons = dict(
        zip(
            zip(bad.phase, bad.batch_size, bad.tokens_per_request, strict=True),
            bad.reason,
            strict=True,
        )
    )
    assert reasons[("prefill", 2, 16)].startswith("needs ~99.0 GiB")
    assert reasons[("decode", 2, 24)].startswith("out of memory: CUDA out of memory")
    # infeasible points count as done on resume
    monkeypatch.setattr(Engine, "check_fits", orig_fits)
    monkeypatch.setattr(Engine, "decode_op", orig_decode)
    assert profile_phase(_config(tmp_path, run_name="oom")).skipped == 8


def test_transformers_impl_and_layer_subset(tmp_path):
    from characterize.measure.profiler import SweepSpec, profile_phase

    sweep = SweepSpec.from_grids(
        "one", [{"batch": [1], "prompt": [8]}], [{"batch": [2], "context": [8]}]
    )
    run = profile_phase(
        _config(tmp_path, impl="transformers", layers=1, model="tiny-bloom", sweep=sweep)
    )
    df = run.profiles
    assert len(df) == 2
    assert df.source.str.contains("transformers fp32 eager").all()
    assert df.source.str.contains("layers 1/2 scaled").all()
    det = run.details
    assert (det.layer_scale == 2.0).all()
    assert det.raw_latency_s.to_numpy() * 2.0 == pytest.approx(df.latency_s.to_numpy())


class FakeBackend:
    """A power backend with a constant board power and a settable limit (records sets)."""

    name = "fake"
    available = True
    reason = ""

    def __init__(self, limit_w=700.0, energy=None, watts=200.0):
        self.limit = {0: limit_w}
        self.watts = watts
        self.calls: list[tuple] = []

    def power_limit_w(self, i):
        return self.limit[i]

    def power_limit_constraints_w(self, i):
        return (200.0, 700.0)

    def set_power_limit_w(self, i, watts):
        self.calls.append(("set", i, watts))
        self.limit[i] = watts

    def energy_mj(self, i):
        return None

    def power_w(self, i):
        return self.watts

    def sm_clock_mhz(self, i):
        return None

    def temperature_c(self, i):
        return None

    def device_info(self, i):
        return {}

    def close(self):
        pass


def test_power_cap_in_profile_needs_allow(tmp_path):
    from characterize.measure.power import PowerCapError
    from characterize.measure.profiler import profile_phase

    with pytest.raises(PowerCapError, match="allow_power_cap=true"):
        profile_phase(_config(tmp_path, power_cap_w=300.0), backend=FakeBackend())
    b = FakeBackend(limit_w=700.0, energy=None, watts=200.0)
    run = profile_phase(
        _config(tmp_path, power_cap_w=300.0, allow_power_cap=True, run_name="cap"), backend=b
    )
    assert b.limit[0] == 700.0 and ("set", 0, 300.0) in b.calls
    assert run.profiles.source.str.contains("power cap 300 W").all()
    # fake power of 200 W per GPU, tp=1: instance power and energy per iteration follow
    assert run.profiles.power_w.to_numpy() == pytest.approx([200.0] * 8, rel=1e-6)
    energy = run.profiles.power_w * run.profiles.latency_s
    assert run.profiles.energy_j.to_numpy() == pytest.approx(energy.to_numpy())


def test_phase_profiler_fixture(phase_profiler):
    run = phase_profiler(
        model="tiny-bloom", prefill=[(1, 8)], decode=[(2, 16), (1, 16)], power="off"
    )
    assert list(run.profiles.phase) == ["prefill", "decode", "decode"]
    assert (run.profiles.latency_s > 0).all()
    assert run.csv_path.is_file()


# ----------------------------------------------------------------------------- gpu check


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_runs_on_cpu_tiny(tmp_path, capsys):
    gc = _gpu_check()
    archive = tmp_path / "device-out" / "gpu-check.tgz"
    rc = gc.main(
        [
            "--cpu",
            "--tiny",
            "--out",
            str(tmp_path / "gc"),
            "--budget-s",
            "120",
            "--archive",
            str(archive),
        ]
    )
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "gc" / "summary.json").read_text())
    assert rc == 0, summary
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "gc/summary.json" in names and any(n.endswith("/profiles.csv") for n in names)
    assert json.loads((archive.parent / "summary.json").read_text())["status"] == "ok"
    assert summary["status"] == "ok"
    names = set(summary["sections"])
    assert {"env", "ceilings", "native-tiny-llama", "transformers-tiny-bloom"} <= names
    ceil = summary["sections"]["ceilings"]["result"]
    assert ceil["matmul"]["tflops"] > 0 and ceil["copy"]["tb_per_s"] > 0
    res = summary["sections"]["native-tiny-llama"]["result"]
    assert res["points"] == 6 and res["decode"][0]["tb_per_s"] > 0
    assert "decode b=1 ctx 16" in out and "=== gpu check summary ===" in out
    assert "prefill 1x64" in out and "of matmul ceiling" in out
    assert "native-compile" not in " ".join(summary["sections"])  # GPU-only extra section
    csv = Path(res["run_dir"]) / "profiles.csv"
    assert list(pd.read_csv(csv).columns) == PROFILE_COLUMNS


def test_gpu_check_section_time_limit(tmp_path):
    import time

    gc = _gpu_check()
    check = gc.Check(tmp_path, budget_s=30)

    def slow():
        for _ in range(200):
            time.sleep(0.01)
        return {"never": True}

    assert check.section("slow", 0.2, slow, min_s=0.1) is None
    assert check.section("fast", 5, lambda: {"x": 1}, min_s=0.1) == {"x": 1}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sections"]["slow"]["status"] == "timeout"
    assert summary["sections"]["slow"]["elapsed_s"] < 1.5
    assert summary["sections"]["fast"] == {
        "status": "ok",
        "limit_s": 5,
        "elapsed_s": summary["sections"]["fast"]["elapsed_s"],
        "result": {"x": 1},
    }
    check.deadline = time.monotonic()  # out of budget: later sections are skipped, not run
    assert check.section("late", 10, lambda: 1 / 0, min_s=1) is None
    assert (
        json.loads((tmp_path / "summary.json").read_text())["sections"]["late"]["status"]
        == "skipped"
    )
    assert not math.isnan(summary["elapsed_s"])
