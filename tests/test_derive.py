"""Derived profiles (issue 15): a GPU's phase profile from its spec and a profiled GPU's fitted
efficiency; held-out error A100 <-> H100 on the paper's reference points."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from characterize.cli import main
from characterize.modeling import derive as d
from characterize.modeling.phase_model import fit_phase_model
from characterize.modeling.profiles import (
    PROFILE_COLUMNS,
    metadata_path,
    read_profiles,
    reference_profiles,
    validate_profiles,
)
from characterize.modeling.specs import load_gpu, load_machine, load_model

REF = reference_profiles()


def _rows(df, model="llama2-70b", gpu="a100-80gb", tp=8):
    return df[(df.model == model) & (df.gpu == gpu) & (df.tp == tp)].reset_index(drop=True)


def test_b200_and_h200_specs_complete():
    b = load_gpu("b200-180gb")
    assert (b.hbm_bandwidth_tbps, b.bf16_dense_tflops, b.fp8_dense_tflops) == (8.0, 2250.0, 4500.0)
    assert b.power_limit_w == 1000.0 and b.nvlink_gbps == 1800.0 and b.boost_clock_mhz > 0
    m = load_machine("dgx-b200")
    assert m.gpu == b and m.num_gpus == 8 and m.infiniband_gbps_per_gpu == 400.0
    h = load_gpu("h200-141gb")
    assert (
        h.fp8_dense_tflops == pytest.approx(2 * h.bf16_dense_tflops, rel=1e-3)
        and h.boost_clock_mhz == 1980.0
    )
    assert load_machine("dgx-h200").gpu == h
    for name in ("a100-80gb", "h100-80gb", "h200-141gb", "b200-180gb"):
        assert load_gpu(name).boost_clock_mhz > 0


def test_derived_table_validates_and_says_derived():
    out = d.derived_profile_table("llama2-70b", "h200-141gb", 8)
    assert out.columns.tolist() == PROFILE_COLUMNS
    validate_profiles(out, "test")
    assert set(out.gpu) == {"h200-141gb"} and set(out.tp) == {8}
    assert out.source.str.startswith("derived from splitwise-paper-dgx").all()
    assert out.source.str.contains("h100-80gb -> h200-141gb").all()  # closest measured GPU
    assert out.source.str.contains("same efficiency").all()
    src = _rows(REF, gpu="h100-80gb")
    keys = ["phase", "batch_size", "tokens_per_request"]
    assert out[keys].values.tolist() == src[keys].values.tolist()  # same grid, same order
    assert out.latency_std_s.isna().all() and (out.repeats == src.repeats).all()
    # faster HBM and the same compute: decode faster, prefill no slower
    dec, pre = out.phase == "decode", out.phase == "prefill"
    assert (out.latency_s[dec].to_numpy() < src.latency_s[dec].to_numpy()).all()
    assert (out.latency_s[pre].to_numpy() <= src.latency_s[pre].to_numpy() * (1 + 1e-12)).all()
    # the normal fit turns it into a PhaseModel
    pm = fit_phase_model(out, "llama2-70b", "h200-141gb", 8, source="derived")
    assert pm.decode_time(8, 8 * 576) < fit_phase_model(
        REF, "llama2-70b", "h100-80gb", 8
    ).decode_time(8, 8 * 576)


def test_same_gpu_derivation_reproduces_the_source():
    for model, gpu, tp in [("llama2-70b", "a100-80gb", 8), ("llama2-70b", "h100-80gb", 2),
                           ("bloom-176b", "a100-80gb", 8)]:  # fmt: skip
        src = _rows(REF, model, gpu, tp)
        out = d.derive_profiles(REF, model, gpu, gpu, tp)
        np.testing.assert_allclose(out.latency_s, src.latency_s, rtol=1e-9)
        np.testing.assert_allclose(out.power_w, src.power_w, rtol=1e-12)  # NaN == NaN too


def test_power_is_target_budget_times_source_shape():
    out = d.derive_profiles(REF, "llama2-70b", "a100-80gb", "h100-80gb", 8)
    src = _rows(REF)
    ok = src.power_w.notna()
    np.testing.assert_allclose(out.power_w[ok], src.power_w[ok] * 700.0 / 400.0)
    np.testing.assert_allclose(out.energy_j[ok], out.power_w[ok] * out.latency_s[ok])
    assert out.power_w[~ok].isna().all()


SYNTH = dict(e_c=0.6, e_w=0.8, e_kv=0.5, o=0.010, r=0.0002)


def _synthetic(gpu: str, o: float, r: float):
    """A profile exactly of the derivation's form on ``gpu`` at tp 2, 4, 8 (efficiencies from
    SYNTH; decode FLOPs at the peak, as the derivation assumes), overheads ``o`` and ``r``."""
    spec = load_model("llama2-70b")
    g = load_gpu(gpu)
    bw = g.hbm_bandwidth_bytes_per_s
    rows = []
    for tp in (2, 4, 8):
        grid = _rows(REF, tp=tp)[["phase", "batch_size", "tokens_per_request"]]
        for phase, grp in grid.groupby("phase", sort=False):
            f, w, kv, msg = d.point_work(spec, phase, grp.batch_size, grp.tokens_per_request, tp)
            ar = d._allreduce_s(gpu, tp, spec, msg)
            e_c = SYNTH["e_c"] if phase == "prefill" else 1.0
            t = (ar + o + r * grp.batch_size.to_numpy() + f / (e_c * g.bf16_flops)
                 + w / (SYNTH["e_w"] * bw) + kv / (SYNTH["e_kv"] * bw))  # fmt: skip
            keys = grp[["batch_size", "tokens_per_request"]].values
            for (bs, tk), lat in zip(keys, t, strict=True):
                rows.append(dict(model="llama2-70b", gpu=gpu, tp=tp, phase=phase, batch_size=bs,
                                 tokens_per_request=tk, latency_s=lat, power_w=1000.0,
                                 energy_j=1000.0 * lat, repeats=3, latency_std_s=0.0,
                                 source="synthetic"))  # fmt: skip
    return validate_profiles(pd.DataFrame(rows), "synthetic")


def test_recovers_a_profile_of_its_own_form():
    """Known efficiencies and overheads on the A100 -> the H100 at the same efficiencies with
    the overheads x clock ratio, within fitting round-off."""
    src = _synthetic("a100-80gb", SYNTH["o"], SYNTH["r"])
    k_o = load_gpu("a100-80gb").boost_clock_mhz / load_gpu("h100-80gb").boost_clock_mhz
    want = _synthetic("h100-80gb", SYNTH["o"] * k_o, SYNTH["r"] * k_o)
    fits = d.source_efficiency(src, "llama2-70b", "a100-80gb", 8, "synthetic")
    for f in fits:
        assert f.compute_efficiency == pytest.approx(SYNTH["e_c"] if f.phase == "prefill" else 1)
        assert f.weight_bandwidth_efficiency == pytest.approx(SYNTH["e_w"], rel=1e-6)
        assert f.kv_bandwidth_efficiency == pytest.approx(SYNTH["e_kv"], rel=1e-6)
        assert f.overhead_s == pytest.approx(SYNTH["o"], rel=1e-6)
        assert f.request_overhead_s == pytest.approx(SYNTH["r"], rel=1e-6)
        assert f.fit_mape < 1e-9 and f.outliers == 0 and f.tps == (2, 4, 8)
    for tp in (2, 4, 8):
        out = d.derive_profiles(src, "llama2-70b", "a100-80gb", "h100-80gb", tp)
        exp = want[want.tp == tp].reset_index(drop=True)
        np.testing.assert_allclose(out.latency_s, exp.latency_s, rtol=1e-6)
        assert (d.derivation_errors(out, exp).mape < 1e-6).all()
    # with the overheads kept unchanged, the same source gives a slower H100
    slow = d.derive_profiles(
        src, "llama2-70b", "a100-80gb", "h100-80gb", 8, overhead_scaling="none"
    )
    fast = d.derive_profiles(src, "llama2-70b", "a100-80gb", "h100-80gb", 8)
    assert (slow.latency_s.to_numpy() > fast.latency_s.to_numpy()).all()


def test_derivation_errors_hand_computed():
    base = dict(model="m", tp=8, gpu="g")
    measured = pd.DataFrame(
        [dict(base, phase="prefill", batch_size=1, tokens_per_request=128, latency_s=1.0),
         dict(base, phase="prefill", batch_size=2, tokens_per_request=128, latency_s=2.0),
         dict(base, phase="decode", batch_size=1, tokens_per_request=128, latency_s=0.5),
         dict(base, phase="decode", batch_size=4, tokens_per_request=9, latency_s=9.0)]
    )  # fmt: skip
    derived = measured.iloc[:3].copy()
    derived["latency_s"] = [1.1, 1.5, 0.5]  # +10 %, -25 %, 0 %; the 4th point is not derived
    err = d.derivation_errors(derived, measured)
    assert err.phase.tolist() == ["prefill", "decode"]
    pre, dec = err.iloc[0], err.iloc[1]
    assert pre.points == 2 and pre.mape == pytest.approx(0.175) and pre.max_error == 0.25
    assert pre.bias == pytest.approx(-0.075)
    assert dec.points == 1 and dec.mape == 0.0 and dec.max_error == 0.0
    with pytest.raises(d.DeriveError):
        d.derivation_errors(derived.assign(tp=4), measured)


def test_nonneg_lstsq_matches_a_brute_force_case():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([1.0, -1.0, 0.5])
    x = d.nonneg_lstsq(a, y)
    assert x[1] == 0.0 and x[0] == pytest.approx(0.75)  # unconstrained x1 would be < 0


def test_reference_check_errors():
    """The held-out numbers ``derive --check`` prints; decode of Llama-2-70B within the 15 %
    target both ways, prefill reported (it misses: the H100 reaches a smaller fraction of its
    bf16 peak than the A100 in the paper's engine)."""
    t = d.reference_check()
    assert len(t) == 16 and set(zip(t.from_gpu, t.to_gpu, strict=True)) == set(d.CHECK_PAIRS)
    assert t.mape.notna().all() and (t.max_error >= t.mape).all()
    dec = t[(t.phase == "decode") & (t.model == "llama2-70b")]
    assert (dec.mape <= d.TARGET_MAPE).all()
    for col in ("e_compute", "e_weights", "e_kv"):
        assert ((t[col] > 0) & (t[col] <= 1)).all()
    pre = t[t.phase == "prefill"]
    a2h = pre[pre.from_gpu == "a100-80gb"]
    assert (a2h.bias < 0).all()  # same-efficiency scaling overestimates the H100's prefill speed
    # the brief's 'overhead unchanged' is worse for decode (the reason for overhead x clock)
    none = d.reference_check("none")
    assert none[none.phase == "decode"].mape.mean() > dec.mape.mean()


def test_b200_all_reduce_scales_with_nvlink():
    fast, _ = d._allreduce_fn("b200-180gb", 8)
    ref, _ = d._allreduce_fn("h100-80gb", 8)
    big = 256e6
    assert fast(big) == pytest.approx(ref(big / 2))  # bandwidth bound: 2x NVLink, half the time
    assert fast(1e3) == ref(1e3)  # latency floor unchanged
    out = d.derived_profile_table("llama2-70b", "b200-180gb", 8)
    assert out.source.str.contains("h100 DGX table at 1800/900 GB/s NVLink").all()


def test_cli_derive_writes_table_and_metadata(tmp_path, capsys):
    path = tmp_path / "h200.csv"
    argv = ["derive", "--from", "a100-80gb", "--to", "h200-141gb", "--model", "llama2-70b",
            "--out", str(path)]  # fmt: skip
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    table = read_profiles(path)
    assert table.source.str.startswith("derived from").all() and set(table.gpu) == {"h200-141gb"}
    meta = metadata_path(path).read_text()
    assert "derived (not a measurement)" in meta and "a100-80gb" in meta
    first = path.read_bytes()
    assert main(argv) == 0 and path.read_bytes() == first  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h200.csv", "h200.meta.json"]
    # the normal fit reads it like any profile CSV
    capsys.readouterr()
    assert main(["fit", "--source", str(path), "--json"]) == 0
    assert "h200-141gb" in capsys.readouterr().out


def test_cli_derive_check_table(capsys):
    assert main(["derive", "--check"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines[1:]) <= 100
    assert sum(" prefill " in line for line in lines) == 8
    assert sum(" decode " in line for line in lines) == 8
    assert "a100 h100 llama2-70b" in out and "h100 a100 bloom-176b" in out


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["derive", "--to", "x100", "--model", "llama2-70b", "--out", "o.csv"], "unknown gpu 'x100'"),
        (["derive", "--from", "z9", "--to", "h200-141gb", "--model", "llama2-70b", "--out", "o.csv"],
         "unknown gpu 'z9'"),
        (["derive", "--from", "a100-80gb", "--to", "h200-141gb", "--model", "llama2-70b",
          "--tp", "3", "--out", "o.csv"], "no rows for llama2-70b/a100-80gb/tp3"),
        (["derive", "--to", "h200-141gb", "--model", "gpt-5", "--out", "o.csv"], "unknown model"),
        (["derive", "--to", "h200-141gb", "--model", "llama2-70b"], "--out"),
    ],
)  # fmt: skip
def test_cli_derive_bad_arguments(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and err[0].startswith("error: ")
    assert not (tmp_path / "o.csv").exists()


def test_model_absent_from_source_csv(tmp_path, capsys):
    path = tmp_path / "bloom.csv"
    _rows(REF, "bloom-176b").to_csv(path, index=False)
    argv = ["derive", "--source", str(path), "--to", "h200-141gb", "--model", "llama2-70b",
            "--out", str(tmp_path / "o.csv")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "llama2-70b" in err and not math.isnan(len(err))
