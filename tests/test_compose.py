"""Composed profiles (characterize.modeling.compose): the tables against the package's own
answers, the closed loop on hand-computed cases, the overhead fit on synthetic data, bad names,
the committed tables, and a clean skip where aiconfigurator-core is not installed."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from characterize.cli import main as profiles_main
from characterize.modeling.compose import ComposeError, EngineOverhead
from characterize.modeling.compose.closed_loop import simulate_closed_loop
from characterize.modeling.compose.fit import fit_overhead, predict
from characterize.modeling.compose.overhead import COMPOSED_DIR, committed_overhead, read_overheads
from characterize.modeling.profiles import ProfileError, read_profiles


@pytest.fixture
def aic():
    """The package, or a clean skip where the ``aic`` extra is not installed."""
    return pytest.importorskip("aiconfigurator_core")


def _committed_tables() -> list[Path]:
    return sorted(COMPOSED_DIR.glob("*-*/*/*-tp*.csv"))


# ----------------------------------------------------------------------------- a fake model


class _Linear:
    """A phase model with hand-checkable forms: prefill ``c0 + c1 T + c2 S`` (n ignored),
    decode ``d0 + d1 B + d2 C + d3 B^2``."""

    def __init__(self, c0=0.010, c1=1e-5, c2=0.0, d=(0.005, 1e-4, 1e-7, 0.0)):
        self.c0, self.c1, self.c2, self.d = c0, c1, c2, d

    def prefill_time_sums(self, n, tokens, tokens_sq):
        return self.c0 + self.c1 * tokens + self.c2 * tokens_sq

    def decode_coefficients(self):
        return self.d


def test_closed_loop_single_request_by_hand():
    m = _Linear()
    cl = simulate_closed_loop(m, 100, 3, 1, 10_000, requests=1)
    d0, d1, d2, d3 = m.d
    prefill = 0.010 + 1e-5 * 100  # one piece of 100 tokens, no decodes
    step1 = d0 + d1 + d2 * 101 + d3  # context 100 prompt + 1 generated
    step2 = d0 + d1 + d2 * 102 + d3
    ttft, tpot = cl.times(EngineOverhead())
    assert ttft[0] == pytest.approx(prefill)
    assert tpot[0] == pytest.approx((step1 + step2) / 2)
    o = EngineOverhead(step_s=0.001, per_request_s=0.0002, per_prefill_s=0.003, kernel_scale=2.0)
    ttft, tpot = cl.times(o)
    assert ttft[0] == pytest.approx(2 * prefill + 0.001 + (0.0002 + 0.003) * 1)
    assert tpot[0] == pytest.approx((2 * (step1 + step2) + 2 * (0.001 + 0.0002)) / 2)


def test_closed_loop_next_request_and_chunking_by_hand():
    m = _Linear()
    # concurrency 1, two requests: the second arrives when the first finishes; the engine is
    # idle then, so it is scheduled at once: same TTFT as the first
    cl = simulate_closed_loop(m, 100, 2, 1, 10_000, requests=2)
    ttft, _ = cl.times(EngineOverhead())
    assert ttft == pytest.approx([0.011, 0.011])
    # a 300-token prompt with a 128-token budget: chunks 128, 128, 44 (three iterations)
    cl = simulate_closed_loop(m, 300, 2, 1, 10_000, requests=1, max_num_batched_tokens=128)
    ttft, _ = cl.times(EngineOverhead())
    assert ttft[0] == pytest.approx(3 * 0.010 + 1e-5 * 300)
    assert cl.ttft_counts[0] == pytest.approx([3, 3, 3])  # iterations, requests, pieces


def test_closed_loop_new_request_misses_the_running_iteration():
    m = _Linear(d=(0.005, 0.0, 0.0, 0.0))
    # budget 10 tokens, prompts of 10, outputs of 2, concurrency 2, three requests in all:
    # it0: A's prompt (0.0101) -> A's first token; it1: A decodes + 9 tokens of B (0.0101): A
    # finishes, C arrives at 0.0202; it2: B's last token (0.01001; C misses it: it started
    # before C arrived); it3: B decodes + 9 of C (0.0101); it4: C's last token (0.01001)
    cl = simulate_closed_loop(m, 10, 2, 2, 10_000, requests=3, max_num_batched_tokens=10)
    ttft, _ = cl.times(EngineOverhead())
    assert ttft == pytest.approx([0.0101, 0.0101 * 2 + 0.01001, 0.01001 * 2 + 0.0101])
    assert cl.ttft_counts[2] == pytest.approx([3, 3, 3])


def test_overhead_fit_recovers_known_coefficients():
    m = _Linear(c0=0.02, c1=3e-5, c2=1e-9, d=(0.006, 5e-5, 2e-8, 1e-7))
    loops = [
        simulate_closed_loop(m, p, o, n, 2_000_000, length_jitter=0.05, seed=1)
        for p, o in ((1024, 64), (4096, 32), (512, 128))
        for n in (2, 8, 32)
    ]
    truth = EngineOverhead(step_s=0.0015, per_request_s=2e-5, per_prefill_s=0.004,
                           kernel_scale=0.8)  # fmt: skip
    ttft, tpot = predict(loops, truth)
    got = fit_overhead(loops, ttft, tpot)
    assert got.kernel_scale == pytest.approx(0.8, rel=1e-3)
    assert got.step_s == pytest.approx(0.0015, rel=1e-2)
    assert got.per_request_s == pytest.approx(2e-5, rel=5e-2)
    assert got.per_prefill_s == pytest.approx(0.004, rel=1e-2)


def test_engine_overhead_checks_itself():
    with pytest.raises(ProfileError, match="step_s"):
        EngineOverhead(step_s=-1.0)
    with pytest.raises(ProfileError, match="kernel_scale"):
        EngineOverhead(kernel_scale=0.0)
    o = EngineOverhead(step_s=0.001, per_request_s=0.0001, per_prefill_s=0.002)
    assert o.decode_s(10) == pytest.approx(0.002)
    assert o.prefill_s(2) == pytest.approx(0.001 + 2 * 0.0021)


# ----------------------------------------------------------------------------- bad names


@pytest.mark.parametrize(
    ("args", "listing"),
    [
        (["--gpu", "h300"], "known: a100-80gb (a100_sxm)"),
        (["--gpu", "h100-80gb", "--engine", "tgi"], "known: vllm, sglang, trtllm"),
        (["--gpu", "h100-80gb", "--dtype", "fp4"], "known: bf16, fp8"),
        (["--gpu", "h100-80gb", "--model", "nope"], "known: bloom-176b"),
    ],
)
def test_bad_names_are_one_line_listing_what_exists(args, listing, capsys, tmp_path):
    argv = ["compose", "--model", "llama2-70b", "--out", str(tmp_path / "x.csv"), *args]
    if "--model" in args:
        argv = ["compose", "--out", str(tmp_path / "x.csv"), *args]
    assert profiles_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and listing in err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("args", "listing"),
    [
        (["--engine-version", "0.1.0"], "(there: 0.24.0)"),
        (["--gpu", "a100-80gb", "--model", "llama3.1-70b-fp8"], "(there: bf16)"),
    ],
)
def test_bad_version_and_dtype_list_the_package_data(aic, args, listing, capsys, tmp_path):
    argv = ["compose", "--model", "llama2-70b", "--gpu", "h100-80gb",
            "--out", str(tmp_path / "x.csv"), *args]  # fmt: skip
    if "--model" in args:
        argv = ["compose", "--gpu", "h100-80gb", "--out", str(tmp_path / "x.csv"), *args]
    assert profiles_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and listing in err


def test_without_the_package_compose_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from characterize.modeling.compose import library

    library.catalogue.cache_clear()
    monkeypatch.setitem(sys.modules, "aiconfigurator_core", None)  # import fails
    try:
        argv = ["compose", "--model", "llama2-70b", "--gpu", "h100-80gb",
                "--out", str(tmp_path / "x.csv")]  # fmt: skip
        assert profiles_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "pip install -e '.[aic]'" in err
    finally:
        library.catalogue.cache_clear()


# ----------------------------------------------------------------------------- with the package


def test_table_rows_are_the_library_answers(aic):
    from aiconfigurator_core.sdk.engine import EngineHandle

    from characterize.modeling.compose.library import hf_config
    from characterize.modeling.compose.table import compose_profiles
    from characterize.modeling.specs import load_model

    over = EngineOverhead(step_s=0.002, per_request_s=1e-5, per_prefill_s=0.01, kernel_scale=0.9)
    table, meta = compose_profiles("llama2-70b", "h100-80gb", 8, "vllm", None, None, over)
    assert meta["engine_version"] == "0.24.0" and meta["system"] == "h100_sxm"
    # the package's own engine, built here independently from a config.json of the same shape
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(hf_config(load_model("llama2-70b"))))
        h = EngineHandle.compile(tmp, "h100_sxm", "vllm", backend_version="0.24.0", tp_size=8,
                                 gemm_quant_mode="bfloat16", kvcache_quant_mode="bfloat16",
                                 fmha_quant_mode="bfloat16")  # fmt: skip

    def row(phase, b, t):
        r = table[(table["phase"] == phase) & (table["batch_size"] == b)
                  & (table["tokens_per_request"] == t)]  # fmt: skip
        assert len(r) == 1
        return float(r["latency_s"].iloc[0])

    for b, p in ((1, 2048), (8, 512), (2, 8192)):
        want = 0.9 * h.predict_prefill_latency(b, p) / 1e3 + 0.002 + (1e-5 + 0.01) * b
        assert row("prefill", b, p) == pytest.approx(want, abs=2e-9)
    for b, c in ((1, 1024), (64, 1024), (256, 4096)):
        want = 0.9 * h.predict_decode_latency(b, c) / 1e3 + 0.002 + 1e-5 * b
        assert row("decode", b, c) == pytest.approx(want, abs=2e-9)
    # the figure: Llama-2-70B TP8 decode at batch 1, 1k context on H100, ~10.06 ms
    assert h.predict_decode_latency(1, 1024) == pytest.approx(10.06, abs=0.05)
    src = table["source"].iloc[0]
    assert src.startswith("composed from measured operator latencies") and "0.24.0" in src
    assert "power modelled" in src
    assert meta["infeasible"] == [{"batch_size": 256, "tokens_per_request": 8192}]


def test_fitted_table_prices_mixed_iterations_like_the_library(aic):
    """The vllm policy prices a chunk of x tokens beside B decodes as prefill_time_sums(1,
    x + B, S + B) + d2 C from this table's fit; the package's mixed_step_latency agrees."""
    from characterize.modeling.compose.library import engine_handle
    from characterize.modeling.compose.table import compose_profiles
    from characterize.modeling.phase_model import fit_phase_model
    from characterize.modeling.specs import load_model

    table, meta = compose_profiles("llama2-70b", "h100-80gb", 8, "vllm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = fit_phase_model(table, "llama2-70b", "h100-80gb", 8)
    h = engine_handle(load_model("llama2-70b"), "h100_sxm", "vllm", "0.24.0", "bf16", 8)
    d2 = pm.decode_coefficients()[2]
    for ctx, gen, isl, osl in ((8129, 63, 8192, 1024), (1024, 63, 1024, 1024),
                               (512, 128, 4096, 256)):  # fmt: skip
        lib = h.mixed_step_latency(ctx, gen, isl, osl) / 1e3
        s = isl * isl / math.ceil(isl / ctx)  # the chunk's share of the prompt's attention
        ours = pm.prefill_time_sums(1, ctx + gen, s + gen) + d2 * gen * (isl + osl // 2)
        assert ours == pytest.approx(lib, rel=0.08)


def test_compose_cli_writes_a_table_that_fits(aic, tmp_path, capsys):
    out = tmp_path / "t.csv"
    argv = ["compose", "--model", "llama3.1-70b", "--gpu", "h200-141gb", "--engine", "trtllm",
            "--dtype", "fp8", "--out", str(out)]  # fmt: skip
    assert profiles_main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    table = read_profiles(out)
    assert set(table["model"]) == {"llama3.1-70b-fp8"}
    meta = json.loads(out.with_name("t.meta.json").read_text())
    assert meta["engine_version"] == "1.3.0rc20" and meta["overhead"]["origin"].startswith(
        "silicon_sample.csv trtllm h200-141gb"
    )
    assert profiles_main(["fit", "--source", str(out)]) == 0


def test_committed_table_regenerates_byte_for_byte(aic, tmp_path):
    from characterize.modeling.compose.build import table_path
    from characterize.modeling.compose.table import compose_profiles
    from characterize.modeling.profiles import write_profiles

    engine, version, gpu, model, dtype = "vllm", "0.24.0", "h200-141gb", "llama3.1-70b", "fp8"
    table, meta = compose_profiles(model, gpu, 8, engine, version, dtype,
                                   committed_overhead(engine, gpu))  # fmt: skip
    fresh = write_profiles(table, tmp_path / "t.csv", metadata=meta)
    mine = table_path(COMPOSED_DIR, engine, version, gpu, model, dtype, 8)
    assert fresh.read_bytes() == mine.read_bytes()
    assert (tmp_path / "t.meta.json").read_bytes() == mine.with_name(
        mine.stem + ".meta.json"
    ).read_bytes()


# ----------------------------------------------------------------------------- committed data


def test_committed_tables_validate_and_say_where_they_come_from():
    tables = _committed_tables()
    assert len(tables) >= 11  # vLLM on 4 GPUs, SGLang and TensorRT-LLM on H100 and H200
    have = {(p.parent.parent.name.split("-")[0], p.parent.name) for p in tables}
    for engine in ("vllm", "sglang", "trtllm"):
        for gpu in ("h100-80gb", "h200-141gb"):
            assert (engine, gpu) in have
    assert ("vllm", "a100-80gb") in have and ("vllm", "b200-180gb") in have
    overheads = read_overheads()
    for path in tables:
        table = read_profiles(path)
        meta = json.loads(path.with_name(path.stem + ".meta.json").read_text())
        engine = path.parent.parent.name.split("-")[0]
        assert meta["engine"] == engine and meta["gpu"] == path.parent.name
        assert (table["source"].str.startswith("composed from measured operator latencies")).all()
        assert table["source"].str.contains("power modelled, not measured").all()
        row = overheads[(overheads["engine"] == engine) & (overheads["gpu"] == meta["gpu"])]
        assert len(row) == 1
        assert meta["overhead"]["kernel_scale"] == pytest.approx(float(row["kernel_scale"].iloc[0]))
        assert (COMPOSED_DIR / "LICENSE").is_file()
    notice = (COMPOSED_DIR / "NOTICE").read_text()
    assert "NVIDIA CORPORATION" in notice and "arXiv 2601.06288" in notice


def test_committed_table_fits():
    from characterize.modeling.phase_model import fit_phase_model

    path = COMPOSED_DIR / "vllm-0.24.0" / "h100-80gb" / "llama2-70b-bf16-tp8.csv"
    table = read_profiles(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = fit_phase_model(table, "llama2-70b", "h100-80gb", 8)
    report = pd.DataFrame(pm.fit_report())
    assert (report["mape"] < 0.05).all()
    # decode at batch 1, 1k context: ~10 ms of kernels, far below the paper's ~30 ms profile
    assert 0.008 < pm.decode_time(1, 1024) < 0.014


def test_closed_loop_is_the_replay_vllm_policy_with_arrivals_fed_back():
    """Replaying the closed loop's own arrivals (each 1 us after the iteration end that
    triggered it) through replay.simulate's vllm policy gives every request the same TTFT and
    TPOT: the closed loop is that policy, fed back."""
    from characterize.modeling.phase_model import fit_phase_model
    from replay.designs import Design
    from replay.scheduler import SchedulerConfig
    from replay.simulate import simulate

    gpu = "h200-141gb"
    table = read_profiles(COMPOSED_DIR / "vllm-0.24.0" / gpu / "llama3.1-70b-fp8-tp8.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = fit_phase_model(table, "llama3.1-70b-fp8", gpu, 8)
        cl = simulate_closed_loop(pm, 3000, 64, 8, 3_000_000, requests=40, length_jitter=0.05)
        ttft, tpot = cl.times(EngineOverhead())
        arrival = cl.arrival_s + np.where(cl.arrival_s > 0, 1e-6, 0.0)
        order = np.argsort(arrival, kind="stable")
        trace = pd.DataFrame({"request_id": np.arange(len(order)), "arrival_s": arrival[order],
                              "prompt_tokens": cl.prompt_tokens[order],
                              "output_tokens": cl.output_tokens[order]})  # fmt: skip
        design = Design(name="one", kind="baseline", model="llama3.1-70b-fp8",
                        prompt_spec="dgx-h200", prompt_machines=1, tp=8, machine_policy="vllm")  # fmt: skip
        res = simulate(trace, design, SchedulerConfig(machine_policy="vllm"),
                       phase_models={gpu: pm}, reference_gpu=gpu)  # fmt: skip
    rq = res.requests
    assert rq["ttft_s"].to_numpy() == pytest.approx(ttft[order], abs=2e-6)  # the 1 us shift
    replay_tpot = ((rq["e2e_s"] - rq["ttft_s"]) / (rq["output_tokens"] - 1)).to_numpy()
    assert replay_tpot == pytest.approx(tpot[order], rel=1e-6)


def test_held_out_table_is_committed_and_printed(capsys):
    assert profiles_main(["compose", "--held-out"]) == 0
    out = capsys.readouterr().out
    for word in ("leave-one-shape-out", "leave-one-concurrency-out", "vllm", "trtllm"):
        assert word in out
    table = pd.read_csv(COMPOSED_DIR / "held_out.csv")
    assert set(table["engine"]) == {"vllm", "trtllm"}
    assert np.isfinite(table["tpot_mape_%"]).all()


def test_compose_error_is_a_profile_error():
    assert issubclass(ComposeError, ProfileError)


def test_report_shows_the_held_out_table_and_each_gpus_own_overhead():
    # the report's subsection is read from the committed held_out.csv and overhead.csv: one row
    # per engine and GPU with measured points (in-sample column first), and the overhead fitted
    # on each GPU's own points (borrowed rows left out)
    from experiments.report.sections.engines_fit import (
        HELD_OUT_CSV,
        OVERHEAD_CSV,
        held_out_section,
    )

    text = "\n".join(held_out_section())
    held = pd.read_csv(HELD_OUT_CSV)
    over = pd.read_csv(OVERHEAD_CSV)
    fitted = over[over["points"] > 0]
    assert "| engine | GPU | points | in-sample (the committed tables) | shape held out" in text
    for r in fitted.itertuples(index=False):
        ins = held[(held.engine == r.engine) & (held.gpu == r.gpu) & (held.scheme == "in-sample")]
        assert len(ins) == 1 and int(ins["points"].iloc[0]) == r.points
        assert f"| {r.engine} | {r.gpu} | {r.kernel_scale:.2f} | {r.step_ms:.2f} |" in text
    for r in over[over["points"] == 0].itertuples(index=False):  # borrowed: in neither table
        assert f"| {r.engine} | {r.gpu} |" not in text
