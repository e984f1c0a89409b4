"""Judging the simulator against the real runs (pure code: arrays in, tables out; issue 22).

- :func:`paired_bootstrap`: the relative error ``(sim - real) / real`` of a percentile over
  requests, with a paired per-request bootstrap interval: each resample draws request ids with
  replacement and takes those requests on both sides (a request's every TBT gap goes with it),
  so the interval reflects the sample both percentiles rest on. Percentiles are the suite's one
  definition (inverted CDF, :func:`replay.metrics.weighted_percentiles`); the resamples use a
  fixed seed (same inputs, same bytes).
- :func:`error_rows`: the rows of ``errors.csv`` for one design and load (:data:`ERROR_COLUMNS`).
  P99 is reported but not scored below ``p99_min_requests`` requests; throughput below
  saturation equals the arrivals on both sides by construction, so it is reported, not scored.
- :func:`realized_rate`: the offered rate a load really had (its label), from its arrivals.
- :func:`capacity_rps`: completions per second while backlogged (an overload run).
- :func:`rstar_interpolated` (real: between the bracketing loads) and :func:`rstar_bisect`
  (simulated: bisection on a predicate); :func:`capacity_rows` writes ``capacity.csv``.
- :func:`ladder`: the rate ladder placed from the simulator's C and R*, in a shuffled order with
  a fresh seed per rate (common across designs).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np

ERROR_COLUMNS = ["design", "load", "offered_rps", "rate_fraction", "metric", "stat", "sim",
                 "real", "rel_error", "ci_low", "ci_high", "n_requests", "held_out",
                 "scored"]  # fmt: skip
CAPACITY_COLUMNS = ["design", "quantity", "sim", "real", "rel_error", "ci_low", "ci_high", "note"]
STATS = {"p50": 50, "p90": 90, "p99": 99}


def _quantiles(vals: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Inverted-CDF percentiles of sorted ``vals`` with weights ``w`` (replay.metrics'
    definition: the smallest value whose cumulative weight reaches q% of the total)."""
    cum = np.cumsum(w)
    total = cum[-1]
    if total <= 0:
        return np.full(len(qs), math.nan)
    idx = [int(np.searchsorted(cum, q / 100.0 * total - 1e-9 * total, side="left")) for q in qs]
    return vals[np.minimum(idx, vals.size - 1)]


class _Side:
    """Per-request samples flattened and sorted once: value, owner request."""

    def __init__(self, samples: Sequence[np.ndarray]):
        vals = [np.asarray(s, dtype=float) for s in samples]
        owner = np.concatenate([np.full(v.size, i) for i, v in enumerate(vals)] or [[]])
        flat = np.concatenate(vals) if vals else np.zeros(0)
        keep = ~np.isnan(flat)
        flat, owner = flat[keep], owner[keep].astype(np.int64)
        order = np.argsort(flat, kind="stable")
        self.vals = flat[order]
        self.owner = owner[order]

    def quantiles(self, counts: np.ndarray, qs) -> np.ndarray:
        if self.vals.size == 0:
            return np.full(len(qs), math.nan)
        return _quantiles(self.vals, counts[self.owner].astype(float), qs)


def paired_bootstrap(
    sim: Sequence[np.ndarray],
    real: Sequence[np.ndarray],
    qs: Sequence[float] = (50, 90, 99),
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Point values and paired bootstrap intervals of ``(sim_q - real_q) / real_q``.

    ``sim[i]`` and ``real[i]``: the samples of request i on each side (one TTFT, or all its
    token gaps; an empty array for a request without one). Returns {'sim', 'real', 'rel_error',
    'ci_low', 'ci_high'} (arrays over ``qs``; NaN where undefined) and 'n_requests'."""
    if len(sim) != len(real):
        raise ValueError(f"paired samples differ in length: {len(sim)} sim, {len(real)} real")
    n = len(sim)
    s, r = _Side(sim), _Side(real)
    ones = np.ones(n, dtype=np.int64)
    ps, pr = s.quantiles(ones, qs), r.quantiles(ones, qs)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (ps - pr) / pr
    lo = np.full(len(qs), math.nan)
    hi = np.full(len(qs), math.nan)
    if n >= 2 and s.vals.size and r.vals.size:
        rng = np.random.default_rng(seed)
        boot = np.empty((resamples, len(qs)))
        for b in range(resamples):
            counts = np.bincount(rng.integers(0, n, n), minlength=n)
            bs, br = s.quantiles(counts, qs), r.quantiles(counts, qs)
            with np.errstate(divide="ignore", invalid="ignore"):
                boot[b] = (bs - br) / br
        a = (1 - confidence) / 2
        lo = np.nanquantile(boot, a, axis=0)
        hi = np.nanquantile(boot, 1 - a, axis=0)
    return {"sim": ps, "real": pr, "rel_error": rel, "ci_low": lo, "ci_high": hi,
            "n_requests": n}  # fmt: skip


def realized_rate(arrival_s: Sequence[float]) -> float:
    """The offered rate of a load as it was sent: (n - 1) / (last - first arrival), req/s."""
    a = np.sort(np.asarray(arrival_s, dtype=float))
    a = a[~np.isnan(a)]
    if a.size < 2 or a[-1] <= a[0]:
        return math.nan
    return float((a.size - 1) / (a[-1] - a[0]))


def capacity_rps(arrival_s, e2e_s, trim: float = 0.1, confidence: float = 0.95) -> dict:
    """Completions per second while backlogged (an overload run): completions inside the
    completion-time window cut ``trim`` at each end, over its span. The interval is the
    Poisson count's normal approximation (stated; completions of a backlogged server are more
    regular than Poisson, so it is wide rather than narrow)."""
    done = np.asarray(arrival_s, dtype=float) + np.asarray(e2e_s, dtype=float)
    done = np.sort(done[~np.isnan(done)])
    if done.size < 3:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "completions": 0}
    lo, hi = np.quantile(done, [trim, 1 - trim])
    k = int(((done >= lo) & (done <= hi)).sum()) - 1
    span = float(hi - lo)
    if span <= 0 or k < 1:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "completions": k}
    z = _z(confidence)
    v = k / span
    return {"value": v, "ci_low": max(0.0, (k - z * math.sqrt(k)) / span),
            "ci_high": (k + z * math.sqrt(k)) / span, "completions": k}  # fmt: skip


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def slo_ratio(ttft_p90: float, tbt_p90: float, ttft_limit: float, tbt_limit: float) -> float:
    """max(TTFT P90 / limit, TBT P90 / limit): the SLO holds at <= 1."""
    return max(ttft_p90 / ttft_limit, tbt_p90 / tbt_limit)


def rstar_interpolated(rates: Sequence[float], ratios: Sequence[float]) -> dict:
    """The real R*: the highest rate at which the SLO ratio (:func:`slo_ratio`) is <= 1, by
    linear interpolation of the ratio between the two loads that bracket its crossing (the
    last load meeting the SLO and the next one, by offered rate). ``bound``: 'interpolated',
    'below' (no load meets it: R* < the lowest rate) or 'above' (every load meets it)."""
    order = np.argsort(np.asarray(rates, dtype=float))
    x = np.asarray(rates, dtype=float)[order]
    y = np.asarray(ratios, dtype=float)[order]
    ok = y <= 1.0
    if not ok.any():
        return {"value": math.nan, "bound": "below", "bracket": [None, float(x[0])]}
    if ok.all():
        return {"value": math.nan, "bound": "above", "bracket": [float(x[-1]), None]}
    i = int(np.flatnonzero(ok)[-1])
    if i == x.size - 1:
        return {"value": math.nan, "bound": "above", "bracket": [float(x[-1]), None]}
    x0, x1, y0, y1 = x[i], x[i + 1], y[i], y[i + 1]
    v = x0 + (1.0 - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x0
    return {"value": float(v), "bound": "interpolated", "bracket": [float(x0), float(x1)]}


def rstar_interval(rungs: Sequence[tuple[float, Sequence[np.ndarray], Sequence[np.ndarray]]],
                   ttft_limit: float, tbt_limit: float, resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> dict:
    """A bootstrap interval of the real R* (:func:`rstar_interpolated`): ``rungs`` are (offered
    rate, TTFT per request, token gaps per request) of the rungs it interpolates between; each
    resample draws every rung's requests with replacement (rungs independently), recomputes the
    TTFT and TBT P90 and the SLO ratio of each (:func:`slo_ratio`), and interpolates R* again.
    {'ci_low', 'ci_high', 'resamples', 'undefined'}: the interval over the resamples whose R* is
    bracketed by two rungs; ``undefined``, the share whose R* fell outside every bracket (then
    the interval understates the uncertainty; NaN when more than half did)."""
    if len(rungs) < 2:
        return {"ci_low": math.nan, "ci_high": math.nan, "resamples": 0, "undefined": math.nan}
    rng = np.random.default_rng(seed)
    sides = [(rate, _Side(ttft), _Side(tbt), len(ttft)) for rate, ttft, tbt in rungs]
    rates = [r for r, *_ in sides]
    vals = np.empty(resamples)
    for b in range(resamples):
        ratios = []
        for _, t, g, n in sides:
            counts = np.bincount(rng.integers(0, n, n), minlength=n) if n else np.zeros(0, int)
            ratios.append(slo_ratio(float(t.quantiles(counts, [90])[0]),
                                    float(g.quantiles(counts, [90])[0]), ttft_limit,
                                    tbt_limit))  # fmt: skip
        vals[b] = rstar_interpolated(rates, ratios)["value"]
    ok = vals[np.isfinite(vals)]
    undefined = 1.0 - ok.size / resamples
    if ok.size < resamples / 2:
        return {"ci_low": math.nan, "ci_high": math.nan, "resamples": resamples,
                "undefined": undefined}  # fmt: skip
    a = (1 - confidence) / 2
    return {"ci_low": float(np.quantile(ok, a)), "ci_high": float(np.quantile(ok, 1 - a)),
            "resamples": resamples, "undefined": undefined}  # fmt: skip


def rstar_bisect(
    meets: Callable[[float], bool], lo: float, hi: float, rel_tol: float = 0.01, max_iter: int = 40
) -> float:
    """The simulated R*: the highest rate in [lo, hi] at which ``meets(rate)`` holds, by
    bisection (``meets`` monotone: true below R*, false above); NaN if it fails at ``lo``,
    ``hi`` if it holds there."""
    if not meets(lo):
        return math.nan
    if meets(hi):
        return float(hi)
    for _ in range(max_iter):
        if hi - lo <= rel_tol * lo:
            break
        mid = 0.5 * (lo + hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return float(lo)


def error_rows(
    design: str,
    load: str,
    offered_rps: float,
    rstar_sim: float,
    samples: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    *,
    held_out: bool,
    p99_min_requests: int = 1000,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    throughput: tuple[float, float] | None = None,
    saturated: bool = False,
) -> list[dict]:
    """The ``errors.csv`` rows (:data:`ERROR_COLUMNS`) of one design and load.

    ``samples``: metric ('ttft', 'tbt', 'e2e') -> (sim per request, real per request), paired
    by request. ``throughput``: (sim, real) completions/s, a row scored only when
    ``saturated`` (below saturation both equal the arrivals)."""
    frac = offered_rps / rstar_sim if rstar_sim and math.isfinite(rstar_sim) else math.nan
    rows = []
    for m, (sim, real) in samples.items():
        qs = list(STATS.values())
        res = paired_bootstrap(sim, real, qs, resamples, confidence, stream_seed(seed, design, load, m))
        n = res["n_requests"]
        for j, stat in enumerate(STATS):
            rows.append({
                "design": design, "load": load, "offered_rps": offered_rps,
                "rate_fraction": frac, "metric": m, "stat": stat,
                "sim": float(res["sim"][j]), "real": float(res["real"][j]),
                "rel_error": float(res["rel_error"][j]), "ci_low": float(res["ci_low"][j]),
                "ci_high": float(res["ci_high"][j]), "n_requests": n, "held_out": held_out,
                "scored": stat != "p99" or n >= p99_min_requests,
            })  # fmt: skip
    if throughput is not None:
        s, r = throughput
        rows.append({
            "design": design, "load": load, "offered_rps": offered_rps, "rate_fraction": frac,
            "metric": "throughput", "stat": "value", "sim": s, "real": r,
            "rel_error": (s - r) / r if r else math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "n_requests": len(next(iter(samples.values()))[0])
            if samples else 0, "held_out": held_out, "scored": bool(saturated),
        })  # fmt: skip
    return rows


def capacity_rows(design: str, capacity: dict, rstar: dict) -> list[dict]:
    """The ``capacity.csv`` rows (:data:`CAPACITY_COLUMNS`): ``capacity`` and ``rstar`` are
    {'sim': x, 'real': {'value', 'ci_low', 'ci_high'}}; ``rstar`` may carry 'sim_bound' (the
    simulated side's :func:`rstar_interpolated` result). Where a side's R* lies outside the
    rungs (no value), ``note`` says on which side (:func:`bound_note`)."""
    rows = []
    for q, d in (("capacity_rps", capacity), ("rstar_rps", rstar)):
        s, r = float(d["sim"]), d["real"]
        rv = float(r.get("value", math.nan))
        note = "; ".join(n for n in (bound_note("sim", d.get("sim_bound") or {}),
                                     bound_note("real", r)) if n)  # fmt: skip
        rows.append({"design": design, "quantity": q, "sim": s, "real": rv,
                     "rel_error": (s - rv) / rv if rv and math.isfinite(rv) else math.nan,
                     "ci_low": float(r.get("ci_low", math.nan)),
                     "ci_high": float(r.get("ci_high", math.nan)), "note": note})  # fmt: skip
    return rows


def bound_note(side: str, r: dict) -> str:
    """'' or where an R* without a value lies (:func:`rstar_interpolated`'s 'bound' and
    'bracket'): above the highest rung judged, or below the lowest."""
    b, br = r.get("bound"), r.get("bracket") or [None, None]
    if b == "above" and br[0] is not None:
        return f"{side} R* above {br[0]:.4g} req/s (the SLO held at every rung)"
    if b == "below" and br[1] is not None:
        return f"{side} R* below {br[1]:.4g} req/s (no rung met the SLO)"
    return ""


def stream_seed(seed: int, *parts) -> int:
    h = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(h[:4], "big")


def ladder(
    capacity: float,
    rstar: float,
    fractions: dict[str, Sequence[float]],
    overload_x_capacity: dict[str, float],
    *,
    min_requests: int = 200,
    trim: float = 0.1,
    seed: int = 0,
    sentinel: dict[str, float] | None = None,
) -> list[dict]:
    """The loads of a rate ladder: per trace, ``fraction x R*`` for each fraction and
    ``overload x C``; each with a duration long enough for ``min_requests`` inside the
    trimmed window at its rate, its own arrival seed (a function of trace and rung, the same for
    every design) and a place in a shuffled order (seeded). Returns dicts: name, trace, rate,
    basis ('rstar'|'capacity'), factor, duration_s, seed, order. ``sentinel``: per trace, a
    rung (fraction of R*) run again after all the others, with the same arrivals as its first
    run (same seed): the difference between the two measures drift over the block."""
    if not (rstar > 0 and capacity > 0):
        raise ValueError(f"ladder: needs C > 0 and R* > 0, got C={capacity}, R*={rstar}")
    out = []
    for trace, frs in fractions.items():
        short = trace.replace("azure-", "").replace("-2023", "")
        rungs = [("rstar", f, f * rstar) for f in frs]
        if trace in overload_x_capacity:
            x = overload_x_capacity[trace]
            rungs.append(("capacity", x, x * capacity))
        for basis, f, rate in rungs:
            tag = "R" if basis == "rstar" else "C"
            dur = math.ceil(min_requests / rate / (1 - 2 * trim))
            out.append({"name": f"{short}-{f:g}{tag}", "trace": trace, "rate": float(rate),
                        "basis": basis, "factor": float(f), "duration_s": float(dur),
                        "seed": stream_seed(seed, trace, basis, f)})  # fmt: skip
    perm = np.random.default_rng(seed).permutation(len(out))
    for pos, i in enumerate(perm):
        out[int(i)]["order"] = pos
    out.sort(key=lambda d: d["order"])
    for trace, f in (sentinel or {}).items():
        short = trace.replace("azure-", "").replace("-2023", "")
        rate = f * rstar
        out.append({"name": f"{short}-{f:g}R-sentinel", "trace": trace, "rate": float(rate),
                    "basis": "rstar", "factor": float(f),
                    "duration_s": float(math.ceil(min_requests / rate / (1 - 2 * trim))),
                    "seed": stream_seed(seed, trace, "rstar", f), "order": len(out)})  # fmt: skip
    return out
