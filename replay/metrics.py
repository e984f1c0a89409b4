"""The one definition of the request metrics (DESIGN.md "Metrics"), for replays and real runs.

Input: a contract-4 request table (one row per request; NaN times for requests that did not
complete, ``prompt_machine == -1`` for rejected ones) and, optionally, the exact token-level gap
distribution as (values, weights). Everything here is plain numpy/pandas, so a real GPU run's
per-request records go through the same code as a replay's.

Definitions:
- TTFT = first token time - arrival; E2E = last token time - arrival (seconds).
- TBT = every gap between consecutive tokens of a request (n - 1 gaps for n tokens); the
  percentiles are **token-weighted** (over all gaps of all completed requests). Without a gap
  distribution the per-request mean TBT weighted by its gap count stands in (said in the summary).
- Percentiles: inverted CDF (the smallest value whose cumulative weight reaches q), exact on the
  (weighted) sample; P50/P90/P99.
- Slowdown: a request's metric over the same request's metric alone on the reference machine
  (DGX-A100 TP8 by default: no batching, no queueing, from its PhaseModel): TTFT_ref =
  prefill_time([p]); E2E_ref = TTFT_ref + sum_{g=1}^{o-1} decode_time(1, p + g);
  TBT_ref = (E2E_ref - TTFT_ref) / (o - 1). TBT slowdown = the request's mean TBT over TBT_ref,
  weighted by its gap count (token-weighted over requests).
- SLO: the configured :class:`replay.slo.SLO` (default: paper Table VI), judged once, by
  :meth:`replay.slo.SLO.judge`.
- Throughput: completions per second inside the steady-state window [arrival quantile
  ``trim``, arrival quantile 1 - ``trim``] (default the middle 80% of arrivals): warm-up and
  drain trimmed. Goodput: the same count restricted to requests whose own slowdowns are within
  the configured SLO's limits at its highest percentile (paper: TTFT <= 6, TBT <= 5, E2E <= 5).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from replay.slo import METRICS, SLO

REQUEST_COLUMNS = [
    "request_id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "prompt_machine",
    "token_machine",
    "queue_s",
    "ttft_s",
    "e2e_s",
    "kv_transfer_s",
    "tbt_mean_s",
    "tbt_max_s",
    "preemptions",
]
PERCENTILES = (50, 90, 99)


def weighted_percentiles(values, weights=None, qs=PERCENTILES) -> dict[str, float]:
    """{'p50': .., 'p90': .., 'p99': .., 'mean': ..} of a weighted sample (inverted CDF).

    ``weights`` may hold negative entries that cancel positive ones of the same value (the
    replay's span expansion uses this); the net weight of every distinct value must be >= 0.
    NaN values are ignored. An empty sample gives NaN.
    """
    v = np.asarray(values, dtype=float)
    keep = ~np.isnan(v)
    v = v[keep]
    out = {f"p{q:g}": math.nan for q in qs}
    out["mean"] = math.nan
    if v.size == 0:
        return out
    # the net weight of each distinct value; whole-number weights (counts, batch sizes) sum
    # exactly in any order, so they take the cheaper sort (the same sums as the bincount)
    if weights is None:
        uniq, counts = np.unique(v, return_counts=True)
        wsum = counts.astype(float)
        whole = True
    else:
        w = np.asarray(weights, dtype=float)[keep]
        whole = bool(np.all(w == np.trunc(w))) and float(np.abs(w).sum()) < 2.0**53
        if whole:
            order = np.argsort(v)
            vs = v[order]
            first = np.flatnonzero(np.concatenate(([True], vs[1:] != vs[:-1])))
            uniq = vs[first]
            wsum = np.add.reduceat(w[order], first)
        else:
            uniq, inv = np.unique(v, return_inverse=True)
            wsum = np.bincount(inv, weights=w, minlength=uniq.size)
    wsum = np.maximum(wsum, 0.0)
    total = wsum.sum()
    if total <= 0:
        return out
    cum = np.cumsum(wsum)
    for q in qs:
        i = int(np.searchsorted(cum, q / 100.0 * total - 1e-9 * total, side="left"))
        out[f"p{q:g}"] = float(uniq[min(i, uniq.size - 1)])
    # exactly rounded (exact_sum, math.fsum's value): BLAS's dot product splits the sum over its
    # threads, so the same sample gave another last digit in a study worker (one BLAS thread)
    # than in the replay app (one per core); a total of whole numbers below 2**53 is exact as it is
    den = float(total) if whole else exact_sum(wsum)
    out["mean"] = exact_sum(uniq * wsum) / den
    return out


def exact_sum(x) -> float:
    """The correctly rounded sum of an array of doubles: ``math.fsum``'s value, to the last bit,
    without a Python float per element (5x faster on the 300k gap values of a Mooncake replay).

    Each finite x is M * 2**(e - 53) with an integer |M| < 2**53 (``frexp``). M splits into a
    high part (< 2**27) and a low part (< 2**26); per exponent, each part's sum is a whole number
    below 2**53 for up to 2**26 elements, which ``bincount``'s double accumulator holds exactly.
    The per-exponent sums are then added as Python integers, and one integer division rounds the
    exact total once (Python's int / int is correctly rounded, half to even, as fsum). Any
    non-finite input, or more than 2**26 elements, takes ``math.fsum`` itself.
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        return 0.0
    if x.size > 1 << 26 or not np.isfinite(x).all():
        return math.fsum(x.tolist())
    m, e = np.frexp(x)
    M = (m * 9007199254740992.0).astype(np.int64)  # m * 2**53: exact, |M| < 2**53
    lo = int(e.min())
    idx = (e - lo).astype(np.intp)
    hi_sum = np.bincount(idx, weights=(M >> 26).astype(float))
    lo_sum = np.bincount(idx, weights=(M & 0x3FFFFFF).astype(float))
    total = 0
    for k in np.flatnonzero((hi_sum != 0) | (lo_sum != 0)).tolist():
        total += ((int(hi_sum[k]) << 26) + int(lo_sum[k])) << k
    shift = lo - 53  # the total is total * 2**shift
    return total / (1 << -shift) if shift < 0 else float(total << shift)


def span_gaps(first_s, increment_s, iterations, batch_size, first_excluded):
    """Expand decode spans into (gap values, weights): iteration k of a span lasts
    ``first_s + k*increment_s`` and gives one gap to each of ``batch_size`` requests, except
    ``first_excluded`` requests in its first iteration (their first gap is recorded separately)."""
    n = np.asarray(iterations, dtype=np.int64)
    b = np.asarray(batch_size, dtype=np.int64)
    keep = (n > 0) & (b > 0)
    n, b = n[keep], b[keep]
    d0 = np.asarray(first_s, dtype=float)[keep]
    inc = np.asarray(increment_s, dtype=float)[keep]
    k0 = np.asarray(first_excluded, dtype=np.int64)[keep]
    if n.size == 0:
        return np.zeros(0), np.zeros(0)
    total = int(n.sum())
    span_of = np.repeat(np.arange(n.size), n)
    starts = np.cumsum(n) - n
    k = np.arange(total) - starts[span_of]
    vals = d0[span_of] + k * inc[span_of]
    w = b[span_of].astype(float)
    w[starts] -= k0
    return vals, w


def reference_alone(prompt_tokens, output_tokens, phase_model, decode_coef):
    """(ttft_ref, tbt_ref, e2e_ref) arrays (s) of each request alone on the reference machine.

    ``phase_model`` is the reference phase model (its ``prefill_time_sums``, or its
    ``prefill_times_alone`` where it has that vectorized form of the same arithmetic);
    ``decode_coef`` its decode coefficients (a, b, c, q): decode_time(B, C) = a + b*B + c*C +
    q*B^2 (see replay.phase.decode_coefficients).
    """
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    uniq, inv = np.unique(p, return_inverse=True)
    alone = getattr(phase_model, "prefill_times_alone", None)
    if alone is not None:
        pre = np.asarray(alone(uniq), dtype=float)
    else:
        f = phase_model.prefill_time_sums
        pre = np.array([f(1, int(x), int(x) * int(x)) for x in uniq], dtype=float)
    ttft = pre[inv] if p.size else np.zeros(0)
    a, b, c, q = decode_coef
    m = (o - 1).astype(float)
    decode = m * (a + b + q) + c * (m * p + m * (m + 1) / 2.0)
    e2e = ttft + decode
    with np.errstate(invalid="ignore", divide="ignore"):
        tbt = np.where(o > 1, decode / np.maximum(m, 1.0), np.nan)
    return ttft, tbt, e2e


def request_summary(
    requests: pd.DataFrame,
    reference: tuple | None = None,
    gaps: tuple | None = None,
    trim: float = 0.1,
    slo: SLO | None = None,
) -> dict:
    """Latency percentiles, slowdowns, SLO attainment, throughput and goodput of a request table.

    ``reference``: (ttft_ref, tbt_ref, e2e_ref) arrays aligned with ``requests`` (see
    :func:`reference_alone`); without it slowdowns and SLO are omitted. ``gaps``: (values,
    weights) of every token gap (exact token-weighted TBT); without it the per-request mean TBT
    weighted by its gap count is used. ``trim``: fraction of arrivals cut at each end for the
    steady-state window. ``slo``: the SLO judged (default: the paper's Table VI); it sets the
    slowdown percentiles reported (P50/P90/P99 and the SLO's own) and the goodput limits.
    """
    slo = SLO() if slo is None else slo
    df = requests
    n = len(df)
    rejected = df["prompt_machine"].to_numpy() < 0
    e2e = df["e2e_s"].to_numpy(dtype=float)
    ttft = df["ttft_s"].to_numpy(dtype=float)
    tbt_mean = df["tbt_mean_s"].to_numpy(dtype=float)
    done = ~np.isnan(e2e)
    out_tok = df["output_tokens"].to_numpy(dtype=np.int64)
    ngaps = np.where(done, np.maximum(out_tok - 1, 0), 0).astype(float)
    s: dict = {
        "requests": {
            "total": n,
            "completed": int(done.sum()),
            "rejected": int(rejected.sum()),
            "incomplete": int((~done & ~rejected).sum()),
        },
        "ttft_s": weighted_percentiles(ttft[done]),
        "e2e_s": weighted_percentiles(e2e[done]),
    }
    if gaps is not None:
        s["tbt_s"] = weighted_percentiles(gaps[0], gaps[1])
        s["tbt_weighting"] = "token (every gap of every completed request, exact)"
    else:
        s["tbt_s"] = weighted_percentiles(tbt_mean, ngaps)
        s["tbt_weighting"] = "token (per-request mean TBT weighted by its gap count)"
    kvx = df["kv_transfer_s"].to_numpy(dtype=float)[done]
    s["kv_transfer_s"] = weighted_percentiles(kvx)
    s["kv_transfer_s"]["total"] = float(np.nansum(kvx))
    s["preemptions"] = int(df["preemptions"].sum())
    s["requests_preempted"] = int((df["preemptions"] > 0).sum())

    ok = np.ones(n, dtype=bool)
    if reference is not None:
        ttft_ref, tbt_ref, e2e_ref = (np.asarray(x, dtype=float) for x in reference)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = {
                "ttft": ttft / ttft_ref,
                "tbt": tbt_mean / tbt_ref,
                "e2e": e2e / e2e_ref,
            }
        weights = {"ttft": None, "tbt": ngaps[done], "e2e": None}
        qs = sorted({*PERCENTILES, *(int(q) if q == int(q) else q for q in slo.percentiles)})
        s["slowdown"] = {}
        per_request = slo.request_limits()
        for name in METRICS:
            s["slowdown"][name] = weighted_percentiles(sd[name][done], weights[name], qs)
            ok &= ~(sd[name] > per_request[name])  # NaN (single-token TBT) passes
        att = slo.judge(s["slowdown"], int(done.sum()))
        s["slo"] = {
            "name": slo.name,
            "percentiles": list(slo.percentiles),
            "limits": slo.limits(),
            "checks": att["checks"],
            "all_ok": att["met"],
            "worst_ratio": att["worst_ratio"],
        }
        s["slowdown_reference"] = "same request alone on the reference machine (no batching)"

    arrival = df["arrival_s"].to_numpy(dtype=float)
    if n:
        lo = float(np.quantile(arrival, trim))
        hi = float(np.quantile(arrival, 1.0 - trim))
    else:
        lo = hi = 0.0
    t_done = arrival + e2e
    in_win = done & (t_done >= lo) & (t_done <= hi)
    span = hi - lo
    s["steady_window_s"] = [lo, hi]
    s["throughput_method"] = (
        f"completions inside [arrival quantile {trim:g}, arrival quantile {1 - trim:g}] "
        "divided by the window length"
    )
    s["throughput_rps"] = float(in_win.sum() / span) if span > 0 else math.nan
    s["goodput_rps"] = float((in_win & ok).sum() / span) if span > 0 else math.nan
    lim = slo.request_limits()
    s["goodput_definition"] = (
        f"steady-state completions whose own slowdowns meet the {slo.name} SLO's "
        f"P{slo.percentiles[-1]:g} limits (TTFT {lim['ttft']:g}, TBT {lim['tbt']:g}, "
        f"E2E {lim['e2e']:g})"
    )
    return s
