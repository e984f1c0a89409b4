"""replay.metrics (one definition of the metrics) and integration with the reference models."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from _replay_designs import named_design as make_design
from hypothesis import given, settings
from hypothesis import strategies as st

from common.jsonsafe import dumps
from replay import LinearPhaseModel, SchedulerConfig, format_summary, simulate
from replay.metrics import (
    REQUEST_COLUMNS,
    exact_sum,
    reference_alone,
    request_summary,
    span_gaps,
    weighted_percentiles,
)
from replay.phase import decode_coefficients


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=60))
def test_exact_sum_is_fsum_to_the_last_bit(xs):
    # all magnitudes and signs, subnormals, cancellation (fsum: one rounding of the exact sum)
    try:
        want = math.fsum(xs)
    except OverflowError:
        return  # the exact sum is beyond a double: fsum raises, and so may exact_sum
    assert exact_sum(np.array(xs, dtype=float)).hex() == want.hex()


def test_exact_sum_on_large_and_special_arrays():
    rng = np.random.default_rng(5)
    for x in (
        rng.random(200_000) * 0.05,  # replay-like gap values
        np.concatenate([rng.random(5000) * 1e300, -rng.random(5000) * 1e300, rng.random(50) * 5e-324]),
        np.round(rng.standard_normal(100_000) * 1e6) * 0.001,
        np.zeros(3),
        np.zeros(0),
    ):
        assert exact_sum(x).hex() == math.fsum(x.tolist()).hex()
    assert math.isnan(exact_sum([1.0, math.nan]))  # non-finite: fsum's own answer
    assert exact_sum([math.inf, 1.0]) == math.inf


def test_weighted_percentiles_inverted_cdf_and_cancelling_weights():
    p = weighted_percentiles([3.0, 1.0, 2.0, 4.0])
    assert (p["p50"], p["p90"], p["p99"], p["mean"]) == (2.0, 4.0, 4.0, 2.5)
    w = weighted_percentiles([1.0, 2.0], [99, 1])
    assert (w["p50"], w["p90"], w["p99"]) == (1.0, 1.0, 1.0)
    assert weighted_percentiles([1.0, 2.0], [98, 2])["p99"] == 2.0
    # a -1 weight cancels one copy of the same value
    c = weighted_percentiles([5.0, 5.0, 7.0], [3, -1, 2])
    assert c["mean"] == pytest.approx(6.0)
    assert np.isnan(weighted_percentiles([])["p50"])


def _percentiles_by_bincount(values, weights):
    """The general path (np.unique + bincount, math.fsum over the weights), for comparison."""
    import math

    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    keep = ~np.isnan(v)
    uniq, inv = np.unique(v[keep], return_inverse=True)
    wsum = np.maximum(np.bincount(inv, weights=w[keep], minlength=uniq.size), 0.0)
    total = wsum.sum()
    cum = np.cumsum(wsum)
    out = {}
    for q in (50, 90, 99):
        i = int(np.searchsorted(cum, q / 100.0 * total - 1e-9 * total, side="left"))
        out[f"p{q}"] = float(uniq[min(i, uniq.size - 1)])
    out["mean"] = math.fsum((uniq * wsum).tolist()) / math.fsum(wsum.tolist())
    return out


@pytest.mark.parametrize("kind", ["none", "whole", "cancelling", "fractional"])
def test_weighted_percentiles_fast_paths_give_the_general_answer_exactly(kind):
    """Whole-number weights (and none) take a cheaper sort; the figures are the same to the
    last digit as the general unique + bincount path (repeated values, NaNs, -1 weights)."""
    rng = np.random.default_rng(7)
    v = np.round(rng.random(20_000) * 50, 2)  # many repeats
    v[rng.integers(0, v.size, 300)] = np.nan
    w = {
        "none": None,
        "whole": rng.integers(0, 900, v.size).astype(float),
        "cancelling": np.where(rng.random(v.size) < 0.1, -1.0, 3.0),
        "fractional": rng.random(v.size),
    }[kind]
    assert weighted_percentiles(v, w) == _percentiles_by_bincount(v, w)


def test_span_gaps_expand_arithmetic_series():
    v, w = span_gaps([1.0, 10.0], [0.5, 0.0], [3, 2], [2, 1], [1, 0])
    assert v.tolist() == [1.0, 1.5, 2.0, 10.0, 10.0]
    assert w.tolist() == [1.0, 2.0, 2.0, 1.0, 1.0]


def test_reference_alone_matches_loop():
    pm = LinearPhaseModel(decode_per_context_token_s=2e-7, prefill_per_token_sq_s=1e-9)
    p = np.array([10, 500, 3000])
    o = np.array([1, 2, 40])
    coef = decode_coefficients(pm)
    assert coef[4] == 0.0
    ttft, tbt, e2e = reference_alone(p, o, pm, coef[:4])
    for i in range(3):
        t = pm.prefill_time([int(p[i])])
        dec = sum(pm.decode_time(1, int(p[i]) + g) for g in range(1, int(o[i])))
        assert ttft[i] == pytest.approx(t)
        assert e2e[i] == pytest.approx(t + dec)
        if o[i] > 1:
            assert tbt[i] == pytest.approx(dec / (o[i] - 1))
    assert np.isnan(tbt[0])


def test_linearization_of_a_nonlinear_decode_model_reports_its_error():
    class Curved(LinearPhaseModel):
        def decode_time(self, b, c):
            return 0.02 + 1e-4 * b + 1e-8 * c + 1e-12 * c * c

        def decode_coefficients(self):
            return None

    a, b, c, q, err = decode_coefficients(Curved())
    assert err > 0.0


def table(ttft, e2e, out, tbt=None):
    n = len(ttft)
    ttft = np.asarray(ttft, float)
    e2e = np.asarray(e2e, float)
    out = np.asarray(out)
    if tbt is None:
        tbt = np.where(out > 1, (e2e - ttft) / np.maximum(out - 1, 1), np.nan)
    return pd.DataFrame(
        {
            "request_id": np.arange(n),
            "arrival_s": np.linspace(0, 100, n),
            "prompt_tokens": np.full(n, 100),
            "output_tokens": out,
            "prompt_machine": np.zeros(n, int),
            "token_machine": np.zeros(n, int),
            "queue_s": np.zeros(n),
            "ttft_s": ttft,
            "e2e_s": e2e,
            "kv_transfer_s": np.zeros(n),
            "tbt_mean_s": tbt,
            "tbt_max_s": tbt,
            "preemptions": np.zeros(n, int),
        }
    )[REQUEST_COLUMNS]


def test_slo_all_nine_must_hold_and_throughput_window():
    n = 101
    ref = (np.full(n, 1.0), np.full(n, 0.1), np.full(n, 2.0))
    good = table(np.full(n, 1.5), np.full(n, 2.4), np.full(n, 11))  # tbt 0.09: slowdown 0.9
    s = request_summary(good, ref)
    assert s["slo"]["all_ok"] is True
    assert s["slo"]["checks"]["ttft_p50"] == {"limit": 2.0, "ok": True, "slowdown": 1.5}
    # one metric over its P50 limit breaks the SLO
    bad_e2e = np.full(n, 2.4)
    bad_e2e[:60] = 2.6  # slowdown 1.3 > 1.25 at P50
    s2 = request_summary(table(np.full(n, 1.5), bad_e2e, np.full(n, 11)), ref)
    assert s2["slo"]["checks"]["e2e_p50"]["ok"] is False and s2["slo"]["all_ok"] is False
    assert s2["slo"]["checks"]["ttft_p99"]["ok"] is True
    # steady window: middle 80% of arrivals (10 s .. 90 s), completions inside it
    assert s["steady_window_s"] == [10.0, 90.0]
    t_done = np.linspace(0, 100, n) + 2.4
    expect = ((t_done >= 10) & (t_done <= 90)).sum() / 80.0
    assert s["throughput_rps"] == pytest.approx(expect)
    assert s["goodput_rps"] == pytest.approx(expect)
    text = format_summary(s)
    assert "SLO (paper) met" in text and "ttft" in text
    # real-run records without a gap distribution go through the same code
    assert "per-request mean" in s["tbt_weighting"]


def test_incomplete_and_rejected_are_counted():
    t = table([1.0, np.nan, np.nan], [2.0, np.nan, np.nan], [5, 5, 5])
    t.loc[2, "prompt_machine"] = -1
    s = request_summary(t)
    assert s["requests"] == {"completed": 1, "incomplete": 1, "rejected": 1, "total": 3}
    json.loads(dumps(s))  # NaN percentiles of an empty sample become null


@pytest.fixture(scope="module")
def reference_models():
    from characterize.modeling.phase_model import load_phase_models

    return load_phase_models("reference")


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("splitwise-hh", dict(prompt_machines=2, token_machines=1)),
        ("baseline-h100", dict(machines=2)),
        ("splitwise-ha", dict(prompt_machines=1, token_machines=2)),
        ("splitwise-hhcap", dict(prompt_machines=1, token_machines=1)),
    ],
)
def test_reference_phase_models_integration(reference_models, name, kw, tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    tr = pd.DataFrame(
        {
            "request_id": np.arange(n),
            "arrival_s": np.sort(rng.uniform(0, 60, n)),
            "prompt_tokens": rng.integers(20, 3000, n),
            "output_tokens": rng.integers(1, 400, n),
        }
    )
    d = make_design(name, "llama2-70b", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = simulate(tr, d, SchedulerConfig(), phase_models=reference_models)
    s = res.summary
    assert s.requests["completed"] == n
    assert s.decode_linearization_max_rel_error == 0.0  # closed-form spans are exact
    for key in ("ttft", "tbt", "e2e"):
        assert set(s.slowdown[key]) >= {"p50", "p90", "p99"}
    assert len(s.slo["checks"]) == 9
    assert s.energy_j > 0 and s.cost_per_hour == d.cost_per_hour
    assert 0 < s.throughput_rps < 10
    # alone on the machine with no queueing, an H100 prompt machine is not slower than the
    # A100 reference: the TTFT slowdown of a lone request is at most 1 (and above 0)
    alone = tr.iloc[[0]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lone = simulate(alone, d, SchedulerConfig(), phase_models=reference_models).summary
    assert 0 < lone.slowdown["ttft"]["p50"] <= 1.0
    out = res.write(tmp_path)
    back = pd.read_parquet(out / "requests.parquet")
    assert list(back.columns) == REQUEST_COLUMNS and len(back) == n
    assert json.loads((out / "summary.json").read_text())["design"]["name"] == name



def test_weighted_mean_does_not_depend_on_blas_threads():
    """The same sample gives the same mean, to the last digit, whatever the BLAS thread count
    (a study worker runs with one; the replay app with one per core). np.dot did not."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from replay.metrics import weighted_percentiles as wp; "
        "r = np.random.default_rng(3); v = r.random(50_000) * 1e3; w = r.random(50_000); "
        "print(repr(wp(v, w)['mean']))"
    )
    out = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        out.add(p.stdout.strip())
    assert len(out) == 1, out
