"""The validation's serving probes (experiments/validation/probes.py, serving_fit.py) without
vLLM: the fits recover known alpha, delta, KV load and legs from synthetic records priced by a
known phase model; the engines' KV blocks are parsed from their metrics and logs; the
simulator's overrides carry the measured terms, the real block count and the per-request
hand-over (issue 22 sec. 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.validation.engine_metrics import kv_capacity, parse_cache_info, parse_kv_log
from experiments.validation.probes import RECORD_COLUMNS, probe_seed
from experiments.validation.serving_fit import (
    PhaseTimes,
    describe_rows,
    fit_alpha,
    fit_delta,
    fit_kv_load,
    fit_legs,
    line_fit,
    serving_terms,
)
from replay.phase import LinearPhaseModel

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "results/reference/validation/profile/profiles.csv"
PM = LinearPhaseModel(prefill_base_s=0.01, prefill_per_token_s=3e-4, prefill_per_token_sq_s=1e-8,
                      decode_base_s=0.012, decode_per_request_s=4e-4,
                      decode_per_context_token_s=2e-7)  # fmt: skip
A0, A1 = 0.045, 2.3e-4  # alpha: s, s/token
D0, D1 = 0.004, 6e-4  # delta: s, s/request
K0, K1 = 0.006, 1.5e-5  # KV load: s, s/injected token
P0, P1, Q0, Q1 = 0.02, 1e-5, 0.03, 4e-5  # prefill leg, decode leg: s, s/token


def _df(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _records(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Every probe's records of a served engine with known terms (module doc)."""
    rng = np.random.default_rng(seed)
    t = PhaseTimes(PM)
    rows = []
    for L in (16, 128, 384, 768, 1536):
        for k in range(3):
            ttft = A0 + A1 * L + t.prefill(L) + D0 + D1 * 1
            rows.append({"probe": "alpha", "streams": 1, "repeat": k, "prompt_tokens": L,
                         "seconds": ttft + noise * rng.standard_normal()})  # fmt: skip
    for n in (1, 2, 4, 8, 16, 32):
        for j in range(5, 40):
            C = n * (32 + j)
            gap = t.decode(n, C) + D0 + D1 * n
            rows.append({"probe": "delta", "streams": n, "stream": 0, "prompt_tokens": 32,
                         "token_index": j, "seconds": gap + noise * rng.standard_normal(),
                         "context_tokens": C})  # fmt: skip
    for L, inj in ((250, 128), (700, 640), (1500, 1408)):
        n, C = 4, 4 * 60
        stall = t.tail(inj, L - inj, n, C) + D0 + D1 * (n + 1) + K0 + K1 * inj
        rows.append({"probe": "stall", "streams": n, "prompt_tokens": L, "seconds": stall,
                     "context_tokens": C, "injected_tokens": inj,
                     "recomputed_tokens": L - inj})  # fmt: skip
    return _df(rows)


def _cal_rows() -> pd.DataFrame:
    """The KV calibration's records (calibrate.py's kinds) of the same engine."""
    t = PhaseTimes(PM)
    rows = []
    for L, inj in ((129, 0), (250, 128), (384, 0), (700, 640), (1025, 0), (1500, 1408)):
        leg = P0 + P1 * L + t.prefill(L) + D0 + D1
        load = K0 + K1 * inj if inj else 0.0
        ho = Q0 + Q1 * L + t.tail(inj, L - inj) + D0 + D1 + load
        rows += [{"prompt_tokens": L, "kind": "proxy_prefill_leg", "seconds": leg},
                 {"prompt_tokens": L, "kind": "handover", "seconds": ho,
                  "injected_tokens": inj, "recomputed_tokens": L - inj}]  # fmt: skip
    return pd.DataFrame(rows)


def test_delta_and_alpha_fits_recover_known_terms():
    t = PhaseTimes(PM)
    rec = _records()
    d = fit_delta(rec, t)
    assert d["a"] == pytest.approx(D0, abs=1e-9) and d["b"] == pytest.approx(D1, abs=1e-10)
    assert d["points"] == 6 and d["max_abs_residual_s"] < 1e-9
    a = fit_alpha(rec, t, d)
    assert a["a"] == pytest.approx(A0, abs=1e-9) and a["b"] == pytest.approx(A1, abs=1e-11)
    # baseline2: two engines behind the router, each with half the streams
    d2 = fit_delta(rec.assign(streams=rec["streams"] * 2, context_tokens=rec["context_tokens"] * 2),
                   t, per_engine=2)  # fmt: skip
    assert d2["a"] == pytest.approx(D0, abs=1e-9) and d2["b"] == pytest.approx(D1, abs=1e-10)


def test_fits_with_noise_stay_close_and_report_their_error():
    rec = _records(noise=0.5e-3, seed=3)
    res = serving_terms("baseline", rec, PhaseTimes(PM))
    t = res["terms"]
    assert t["iteration_s"] == pytest.approx(D0, abs=5e-4)
    assert t["iteration_s_per_request"] == pytest.approx(D1, abs=5e-5)
    assert t["arrival_s"] == pytest.approx(A0, abs=2e-3)
    assert res["fits"]["alpha"]["rms_s"] == pytest.approx(0.5e-3, rel=0.6)


def test_stall_and_legs_recover_the_disaggregated_terms():
    t = PhaseTimes(PM)
    rec = _records()
    d = fit_delta(rec, t)
    kv = fit_kv_load(rec, t, d)
    assert kv["a"] == pytest.approx(K0, abs=1e-9) and kv["b"] == pytest.approx(K1, abs=1e-12)
    legs = fit_legs(_cal_rows(), t, d, (K0, K1))
    assert legs["prefill_leg"]["a"] == pytest.approx(P0, abs=1e-9)
    assert legs["prefill_leg"]["b"] == pytest.approx(P1, abs=1e-12)
    assert legs["decode_leg"]["a"] == pytest.approx(Q0, abs=1e-9)
    assert legs["decode_leg"]["b"] == pytest.approx(Q1, abs=1e-12)
    res = serving_terms("splitwise", rec, t, {}, _cal_rows())
    terms = res["terms"]
    assert terms["kv_load_s"] == pytest.approx(K0, abs=1e-9)
    assert terms["decode_leg_s"] == pytest.approx(Q0, abs=1e-9)
    # the split design's client path is its two legs: no alpha of its own
    assert terms["arrival_s"] == terms["arrival_s_per_token"] == terms["delivery_s"] == 0.0


def test_without_stall_records_the_calibration_slope_is_the_kv_load_and_negatives_clamp():
    rec = _records()
    rec = rec[rec["probe"] != "stall"]
    cal = {"handover_split_fit": {"b_injected_s_per_token": 2e-5}}
    res = serving_terms("splitwise", rec, PhaseTimes(PM), cal, _cal_rows())
    assert res["terms"]["kv_load_s_per_token"] == 2e-5 and res["terms"]["kv_load_s"] == 0.0
    assert any("calibration" in n for n in res["notes"])
    # an engine faster than its phase model: a negative term is written as 0, and said so
    fast = rec.copy()
    fast.loc[fast["probe"] == "delta", "seconds"] -= 0.01
    res = serving_terms("baseline", _records(), PhaseTimes(PM))
    res2 = serving_terms("baseline", pd.concat([fast, _records().query("probe == 'alpha'")]),
                         PhaseTimes(PM))  # fmt: skip
    assert res2["terms"]["iteration_s"] == 0.0
    assert res2["fits"]["delta"]["bounded"] and res2["fits"]["delta"]["a_unbounded"] < 0
    assert any(n.startswith("delta: the least-squares line") for n in res2["notes"])
    rows = describe_rows(res)
    assert [r["term"] for r in rows][:2] == ["arrival_s", "arrival_s_per_token"]
    assert all(r["fit_points"] for r in rows if r["probe"] in ("alpha", "delta"))


def test_a_fit_needs_two_distinct_values():
    rec = _records()
    with pytest.raises(ValueError, match="probe delta"):
        fit_delta(rec[(rec["probe"] != "delta") | (rec["streams"] == 4)], PhaseTimes(PM))


def test_phase_times_from_the_committed_profile():
    t = PhaseTimes.from_source(str(PROFILE), "tiny-llama-512", "cpu")
    assert 0 < t.prefill(32) < t.prefill(512)
    assert 0 < t.decode(1, 100) < t.decode(32, 32 * 100)
    assert t.tail(512, 100) < t.prefill(612)  # the injected blocks are not computed again


def test_engine_kv_blocks_from_metrics_and_log():
    text = ('# HELP vllm:cache_config_info x\n'
            'vllm:cache_config_info{block_size="128",cache_dtype="auto",engine="0",'
            'num_gpu_blocks="64",num_cpu_blocks="None"} 1.0\n')  # fmt: skip
    assert parse_cache_info(text) == {"block_size": 128, "num_gpu_blocks": 64}
    assert parse_cache_info("vllm:other 1\n") == {}
    log = "INFO ... CPU KV cache size: 8,192 tokens, Maximum concurrency for 2,048 tokens ...\n"
    assert parse_kv_log(log, 128) == 64 and parse_kv_log("nothing", 128) is None
    res = {"engines": {"prefill": {"block_size": 128, "num_gpu_blocks": 80},
                       "decode": {"block_size": 128, "num_gpu_blocks": 64}}}  # fmt: skip
    assert kv_capacity(res, "splitwise") == (128, 64)
    two = {"engines": {"colocated": {"block_size": 16, "num_gpu_blocks": 50},
                       "colocated2": {"block_size": 16, "num_gpu_blocks": 40}}}  # fmt: skip
    assert kv_capacity(two, "baseline2") == (16, 40) and kv_capacity(None, "baseline") == (None,
                                                                                          None)


def test_probe_prompt_ids_are_their_own():
    from experiments.validation.live import prompt_seed

    seeds = {probe_seed(0, d) for d in ("baseline", "baseline2", "splitwise")}
    assert len(seeds) == 3
    assert not seeds & {prompt_seed(0, d, "x", r) for d in ("baseline", "splitwise")
                        for r in range(3)}  # fmt: skip


def _probes() -> dict:
    return {"terms": {"arrival_s": 0.05, "arrival_s_per_token": 2e-4, "delivery_s": 0.0,
                      "iteration_s": 0.004, "iteration_s_per_request": 6e-4,
                      "prefill_leg_s": 0.02, "prefill_leg_s_per_token": 0.0,
                      "decode_leg_s": 0.03, "decode_leg_s_per_token": 4e-5,
                      "kv_load_s": 0.006, "kv_load_s_per_token": 1.5e-5},
            "engines": {"colocated": {"block_size": 128, "num_gpu_blocks": 64},
                        "decode": {"block_size": 128, "num_gpu_blocks": 60}}}  # fmt: skip


def test_sim_overrides_carry_the_measured_terms_and_the_real_kv_blocks():
    from test_validate import _default_cfg

    from experiments.validation.simargs import sim_overrides

    c = _default_cfg()
    s = sim_overrides(c, "splitwise", str(PROFILE), _probes())
    assert {"design.machine_policy=vllm", "scheduler.vllm.block_size=128",
            "scheduler.vllm.num_gpu_blocks=60", "scheduler.kv_transfer.handover_s=0",
            "scheduler.kv_transfer.enabled=false", "serving.decode_work_s=0.03",
            "serving.kv_load_s_per_token=1.5e-05", "serving.iteration_s=0.004",
            "serving.arrival_s=0.05"} <= set(s)  # fmt: skip
    assert not any(o.startswith("scheduler.kv_transfer.per_token_s") for o in s)
    # the decode leg as decode-instance work (simulate.decode_leg_as, default work), or latency
    assert not any(o.startswith("serving.decode_leg") for o in s)
    lat = sim_overrides(_default_cfg("simulate.decode_leg_as=latency"), "splitwise",
                        str(PROFILE), _probes())  # fmt: skip
    assert "serving.decode_leg_s=0.03" in lat and not any("decode_work" in o for o in lat)
    b = sim_overrides(c, "baseline", str(PROFILE), _probes())
    assert "scheduler.vllm.num_gpu_blocks=64" in b and "serving.iteration_s_per_request=0.0006" in b
    assert not any(o.startswith(("serving.decode_leg", "serving.kv_load")) for o in b)
    assert not any(o.startswith("serving.") for o in sim_overrides(c, "baseline", str(PROFILE)))
    # they compose into a replay config the simulator accepts
    from hydra import compose, initialize_config_dir

    from experiments.config.checks import replay_config
    from experiments.config.schemas import CONF_DIR, register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = replay_config(compose("replay", overrides=[*s, f"profiles.source={PROFILE}"]))
    assert cfg["serving"].kv_load_s == 0.006 and cfg["serving"].decode_work_s == 0.03
    assert cfg["scheduler"].vllm.num_gpu_blocks == 60


def test_engine_counters_split_the_prefill_leg_into_kv_save_work_and_latency():
    # the calibration's engine rows: the prefill instance's own prefill time holds the KV save
    # (S0 + S1 L), its queue 1 ms; the leg = HTTP path (P0 + P1 L) + queue + engine time
    t = PhaseTimes(PM)
    rec = _records()
    d = fit_delta(rec, t)
    s0, s1, q = 0.003, 4e-5, 0.001
    rows = []
    for L in (129, 250, 384, 700):
        for k in range(2):
            eng = t.prefill(L) + D0 + D1 + s0 + s1 * L
            rows += [{"prompt_tokens": L, "repeat": k, "kind": "proxy_prefill_leg",
                      "seconds": P0 + P1 * L + q + eng},
                     {"prompt_tokens": L, "repeat": k, "kind": "prefill_engine", "seconds": eng},
                     {"prompt_tokens": L, "repeat": k, "kind": "prefill_engine_queue",
                      "seconds": q},
                     {"prompt_tokens": L, "repeat": k, "kind": "handover", "seconds": 0.05,
                      "injected_tokens": L - 2, "recomputed_tokens": 2}]  # fmt: skip
    cal = pd.DataFrame(rows)
    legs = fit_legs(cal, t, d, (K0, K1))
    assert legs["kv_save"]["a"] == pytest.approx(s0, abs=1e-9)
    assert legs["kv_save"]["b"] == pytest.approx(s1, abs=1e-12)
    assert legs["prefill_leg"]["a"] == pytest.approx(P0, abs=1e-9)
    assert legs["prefill_leg"]["b"] == pytest.approx(P1, abs=1e-12)
    terms = serving_terms("splitwise", rec, t, {}, cal)["terms"]
    assert terms["kv_save_s"] == pytest.approx(s0, abs=1e-9)
    # a missing engine reading (NaN): no split, the whole excess is latency, and said so
    cal.loc[cal["kind"] == "prefill_engine", "seconds"] = np.nan
    res = serving_terms("splitwise", rec, t, {}, cal)
    assert res["terms"]["kv_save_s"] == 0.0 and any("kv_save" in n for n in res["notes"])
    assert {r["term"] for r in describe_rows(res)} >= {"kv_save_s", "kv_save_s_per_token"}


def test_a_line_fit_keeps_its_coefficients_non_negative():
    # a falling line: the best line with a, b >= 0 is the points' mean, not the sloped line's
    # intercept (what clipping the slope to 0 afterwards would keep); the raw line is kept
    x = np.array([250.0, 384.0, 700.0, 1500.0])
    y = 0.0216 - 1.19e-5 * x
    f = line_fit(x, y, "t")
    assert f["bounded"] and f["b"] == 0.0 and f["a"] == pytest.approx(y.mean(), rel=1e-9)
    assert f["a_unbounded"] == pytest.approx(0.0216) and f["b_unbounded"] == pytest.approx(-1.19e-5)
    # a line within the bounds is the ordinary least-squares line, unflagged
    g = line_fit(x, 0.01 + 2e-5 * x, "t")
    assert not g["bounded"] and g["a"] == pytest.approx(0.01) and g["b"] == pytest.approx(2e-5)


def test_the_decode_leg_is_fitted_on_the_hand_overs_that_injected():
    # ExampleConnector misses at L mod block_size == 1 (129, 1025: nothing injected, the whole
    # prompt computed again); those hand-overs take another path and must not set the decode
    # leg: hundreds of ms added to them leave the fit as it was, and they are reported beside it
    t = PhaseTimes(PM)
    rec = _records()
    d = fit_delta(rec, t)
    cal = _cal_rows()
    slow = (cal["kind"] == "handover") & (cal["injected_tokens"] == 0)
    cal.loc[slow, "seconds"] += 0.3
    legs = fit_legs(cal, t, d, (K0, K1))
    assert legs["decode_leg"]["a"] == pytest.approx(Q0, abs=1e-9)
    assert legs["decode_leg"]["b"] == pytest.approx(Q1, abs=1e-12)
    assert legs["decode_leg"]["points"] == 3
    ni = legs["decode_leg_not_injected"]
    assert ni["points"] == 3 and ni["prompt_tokens"] == [129, 384, 1025]
    assert ni["median_excess_s"] == pytest.approx(0.3 + Q0 + Q1 * 384, abs=1e-9)
    # fewer than two injected lengths: a clear error naming the setting to change
    few = cal[~((cal["kind"] == "handover") & cal["prompt_tokens"].isin([700, 1500]))]
    with pytest.raises(ValueError, match="calibrate.lengths"):
        fit_legs(few, t, d, (K0, K1))
