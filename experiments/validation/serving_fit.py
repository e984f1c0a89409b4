"""The serving component's terms from the probes' records (:mod:`.probes`, whose doc defines each
term and its probe): the engine's own time from the fitted phase model (:class:`PhaseTimes`),
line fits with their errors, the terms of one design (:func:`serving_terms`) and the report's
table of them (:func:`describe_rows`). Pure: no deployment, no I/O.

Every line is fitted with both coefficients >= 0 (:func:`line_fit`), the unconstrained line
kept beside it. The decode leg is fitted over the hand-overs whose KV the decode instance
injected only: vLLM's ``ExampleConnector`` saves a prompt of L tokens under its first
``(L - 1) // block_size * block_size`` tokens and looks it up under its first
``(L - 2) // block_size * block_size``, so at ``L mod block_size == 1`` the lookup misses and the
decode instance computes the whole prompt again (the calibration's 129- and 1025-token prompts
at block size 128). Those hand-overs took 60-920 ms more than the priced full recompute on the
nine calibrations of 7-8 Dec 2026 and, fitted with the others, set the decode leg's per-token
slope (25-73 us/token; 0-31 us/token without them): they measure another path, which 1 prompt in
``block_size`` takes; they are reported beside the fit (``decode_leg_not_injected``), not
simulated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: each serving term: (unit, the probe that measures it)
TERMS = {
    "arrival_s": ("s", "alpha"),
    "arrival_s_per_token": ("s/prompt token", "alpha"),
    "delivery_s": ("s", "alpha (0: not separable from arrival)"),
    "iteration_s": ("s", "delta"),
    "iteration_s_per_request": ("s/request", "delta"),
    "prefill_leg_s": ("s", "legs (calibration)"),
    "prefill_leg_s_per_token": ("s/prompt token", "legs (calibration)"),
    "decode_leg_s": ("s", "legs (calibration)"),
    "decode_leg_s_per_token": ("s/prompt token", "legs (calibration)"),
    "kv_load_s": ("s/hand-over", "stall"),
    "kv_load_s_per_token": ("s/injected token", "stall"),
    "kv_save_s": ("s/prompt", "legs (calibration)"),
    "kv_save_s_per_token": ("s/prompt token", "legs (calibration)"),
}


# ---------------------------------------------------------------- the engine's own time
class PhaseTimes:
    """The engine's iteration times from a phase model (``prefill_time_sums``,
    ``decode_time``): what the probes subtract. ``tail`` prices a chunk of ``x`` prompt tokens of
    a request holding ``o`` already, with ``B`` decodes of ``C`` context tokens, as
    :mod:`replay.vllm_policy` prices a fused iteration."""

    def __init__(self, pm):
        from replay.phase import decode_coefficients

        self.pm = pm
        self.c = float(decode_coefficients(pm)[2])

    @classmethod
    def from_source(cls, source: str, model: str, gpu: str) -> PhaseTimes:
        from characterize.modeling.phase.model_set import load_phase_models

        return cls(load_phase_models(str(source), reference=None).get(model, gpu, 1))

    def prefill(self, L: int) -> float:
        return float(self.pm.prefill_time_sums(1, int(L), int(L) ** 2))

    def decode(self, B: float, C: float) -> float:
        return float(self.pm.decode_time(max(1, round(B)), int(C)))

    def decodes(self, B: np.ndarray, C: np.ndarray) -> np.ndarray:
        """:meth:`decode` of many (batch, context) pairs at once: ``decode_time``'s formula on
        arrays (``decode_coefficients``), without its per-call range warnings."""
        d0, d1, d2, d3 = self.pm.decode_coefficients()
        B = np.asarray(B, dtype=float)
        return d0 + d1 * B + d2 * np.asarray(C, dtype=float) + d3 * B * B

    def tail(self, o: int, x: int, B: int = 0, C: int = 0) -> float:
        S = (o + x) ** 2 - o**2
        if B <= 0:
            return float(self.pm.prefill_time_sums(1, int(x), int(S)))
        return float(self.pm.prefill_time_sums(1, int(x) + B, int(S) + B)) + self.c * C


# ---------------------------------------------------------------- fits (pure)
def line_fit(x, y, what: str) -> dict:
    """The line y = a + b x with a, b >= 0 that fits best in least squares (the simulator's
    terms are >= 0; :func:`scipy.optimize.lsq_linear` with those bounds), with its errors:
    {'a', 'b', 'points', 'rms_s', 'max_abs_residual_s', 'r2', 'a_unbounded', 'b_unbounded'
    (the ordinary least-squares line, for disclosure), 'bounded' (True where a bound is
    active)}; ValueError naming ``what`` without two distinct x.

    Why bounded, not the ordinary line clipped afterwards: a negative slope clipped to 0 keeps
    the intercept of the sloped line (an 18-point decode leg measured 21.6 ms - 11.9 us/token;
    clipped, 21.6 ms at every length, above every point past 800 tokens), while the bounded fit
    is the best line the simulator can take (there, the points' mean)."""
    from scipy.optimize import lsq_linear

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError(f"{what}: a line needs records at two distinct values at least")
    A = np.vstack([np.ones_like(x), x]).T
    (a0, b0), *_ = np.linalg.lstsq(A, y, rcond=None)
    if a0 >= 0 and b0 >= 0:
        a, b = float(a0), float(b0)
    else:  # x scaled to O(1) so that the solver's tolerance means the same for s and s/token
        sx = float(np.max(np.abs(x))) or 1.0
        r = lsq_linear(np.vstack([np.ones_like(x), x / sx]).T, y, bounds=(0.0, np.inf),
                       method="bvls")  # fmt: skip
        a, b = float(r.x[0]), float(r.x[1]) / sx
    res = y - (a + b * x)
    ss = float(((y - y.mean()) ** 2).sum())
    return {"a": a, "b": b, "points": int(x.size),
            "rms_s": float(np.sqrt(np.mean(res**2))),
            "max_abs_residual_s": float(np.max(np.abs(res))),
            "r2": 1.0 - float((res**2).sum()) / ss if ss > 0 else math.nan,
            "a_unbounded": float(a0), "b_unbounded": float(b0),
            "bounded": bool(a0 < 0 or b0 < 0)}  # fmt: skip


def _delta_at(delta: dict | None, B: float) -> float:
    """delta(B) as the simulator adds it: each coefficient clamped at 0, as written."""
    if not delta:
        return 0.0
    return max(0.0, delta["a"]) + max(0.0, delta["b"]) * B


def fit_delta(records: pd.DataFrame, times: PhaseTimes, per_engine: int = 1) -> dict:
    """delta(B) = delta0 + delta1 * B from the delta probe's gaps (:mod:`.probes` doc)."""
    d = records[records["probe"] == "delta"]
    pts = []
    for n, g in d.groupby("streams"):
        B = float(n) / per_engine
        gap = float(g["seconds"].median())
        C = float(g["context_tokens"].median()) / per_engine
        step = times.decode(B, C)
        pts.append({"streams": int(n), "batch": B, "gap_s": gap, "context_tokens": C,
                    "engine_step_s": step, "delta_s": gap - step})  # fmt: skip
    fit = line_fit([p["batch"] for p in pts], [p["delta_s"] for p in pts], "probe delta")
    return {**fit, "per_n": pts,
            "definition": "median client inter-token gap with N streams decoding - the phase "
            "model's decode step at (B, C); a + b * B"}  # fmt: skip


def fit_alpha(records: pd.DataFrame, times: PhaseTimes, delta: dict | None) -> dict:
    """alpha(L) = alpha0 + alpha1 * L from the alpha probe's TTFTs (:mod:`.probes` doc)."""
    a = records[records["probe"] == "alpha"]
    L = a["prompt_tokens"].to_numpy(dtype=float)
    eng = np.array([times.prefill(int(x)) for x in L]) + _delta_at(delta, 1)
    y = a["seconds"].to_numpy(dtype=float) - eng
    fit = line_fit(L, y, "probe alpha")
    return {**fit, "definition": "client TTFT (max_tokens=1, alone) - prefill(L) - delta(1); "
            "a + b * L"}  # fmt: skip


def fit_kv_load(records: pd.DataFrame, times: PhaseTimes, delta: dict | None) -> dict | None:
    """KV load = k0 + k1 * injected from the stall probe (:mod:`.probes` doc); None without
    records that injected at two distinct token counts."""
    s = records[(records["probe"] == "stall") & records["injected_tokens"].notna()]
    if s.empty or s["injected_tokens"].nunique() < 2:
        return None
    ex = []
    for r in s.itertuples(index=False):
        n = int(r.streams)
        price = times.tail(int(r.injected_tokens), int(r.recomputed_tokens), n,
                           int(r.context_tokens)) + _delta_at(delta, n + 1)  # fmt: skip
        ex.append(float(r.seconds) - price)
    fit = line_fit(s["injected_tokens"], ex, "probe stall")
    return {**fit, "definition": "running streams' longest gap at a hand-over - the fused tail "
            "iteration (chunk of the recomputed tokens + N decodes) - delta(N + 1); a + b * "
            "injected tokens"}  # fmt: skip


def fit_legs(cal_rows: pd.DataFrame, times: PhaseTimes, delta: dict | None,
             kv_load: tuple[float, float]) -> dict:  # fmt: skip
    """prefill leg and decode leg, each a + b * L, from the calibration's records
    (:mod:`.probes` doc)."""
    leg = cal_rows[cal_rows["kind"] == "proxy_prefill_leg"]
    L = leg["prompt_tokens"].to_numpy(dtype=float)
    work = np.array([times.prefill(int(x)) for x in L]) + _delta_at(delta, 1)
    eng = _engine_rows(cal_rows, leg)
    save = None
    if eng is None:  # no engine counters: the whole excess is the HTTP path's latency
        pre = line_fit(L, leg["seconds"].to_numpy(dtype=float) - work, "legs prefill")
        pre["definition"] = "proxy's X-Prefill-Seconds - prefill(L) - delta(1)"
    else:  # the engine's own time: the save is work there, the rest the HTTP path's latency
        e, q = eng
        save = line_fit(L, e - work, "KV save")
        save["definition"] = ("prefill instance's engine prefill time (first scheduled to first "
                              "token, its counters) - prefill(L) - delta(1)")  # fmt: skip
        pre = line_fit(L, leg["seconds"].to_numpy(dtype=float) - e - q, "legs prefill")
        pre["definition"] = ("proxy's X-Prefill-Seconds - the prefill instance's engine queue "
                             "and prefill time (its counters)")  # fmt: skip
    ho = cal_rows[(cal_rows["kind"] == "handover")].copy()
    ho["recomputed_tokens"] = ho["recomputed_tokens"].fillna(ho["prompt_tokens"])
    y = (ho["seconds"].to_numpy(dtype=float) - _handover_work(ho, times, kv_load)
         - _delta_at(delta, 1))  # fmt: skip
    # without any measured injection count (an older calibration) every hand-over is fitted
    measured = ho["injected_tokens"].notna().any()
    took = (ho["injected_tokens"].fillna(0) > 0).to_numpy() if measured else np.ones(len(ho), bool)
    L2 = ho["prompt_tokens"].to_numpy(dtype=float)
    if np.unique(L2[took]).size < 2:
        raise ValueError(
            "legs decode: the decode instance injected KV at fewer than two of the calibration's "
            f"prompt lengths ({sorted({int(v) for v in L2[took]})}); choose calibrate.lengths "
            "with L mod block_size != 1 (module doc of serving_fit)")
    dec = line_fit(L2[took], y[took], "legs decode")
    out = {"prefill_leg": pre, **({"kv_save": save} if save is not None else {}),
           "decode_leg": {**dec, "definition": "proxy TTFT - prefill leg - tail chunk(injected, "
                          "recomputed) - delta(1) - KV load(injected), over the hand-overs whose "
                          "KV the decode instance injected"}}  # fmt: skip
    if (~took).any():
        ex = y[~took]
        out["decode_leg_not_injected"] = {
            "points": int(ex.size), "prompt_tokens": sorted({int(v) for v in L2[~took]}),
            "median_excess_s": float(np.median(ex)), "max_excess_s": float(np.max(ex)),
            "definition": "hand-overs whose KV the decode instance did not inject (it computed "
            "the whole prompt again): the same excess, left out of the decode leg's fit"}
    return out


def _handover_work(ho: pd.DataFrame, times: PhaseTimes, kv_load: tuple[float, float]):
    """The decode instance's priced work per hand-over row: the tail chunk of the recomputed
    tokens over the injected ones, and the KV load of the injected tokens."""
    inj = ho["injected_tokens"].fillna(0).to_numpy(dtype=float)
    rec = ho["recomputed_tokens"].to_numpy(dtype=float)
    work = np.array([times.tail(int(o), int(x)) for o, x in zip(inj, rec, strict=True)])
    return work + np.where(inj > 0, kv_load[0] + kv_load[1] * inj, 0.0)


def _engine_rows(cal_rows: pd.DataFrame, leg: pd.DataFrame):
    """(engine prefill s, engine queue s) per prefill-leg row, from the calibration's
    ``prefill_engine`` rows (same length and repeat); None where any is missing or not finite."""
    key = ["prompt_tokens", "repeat"]
    parts = []
    for kind in ("prefill_engine", "prefill_engine_queue"):
        r = cal_rows[cal_rows["kind"] == kind]
        if r.empty:
            return None
        m = leg[key].merge(r[[*key, "seconds"]], on=key, how="left")["seconds"]
        v = m.to_numpy(dtype=float)
        if not np.isfinite(v).all():
            return None
        parts.append(v)
    return parts[0], parts[1]


def serving_terms(design: str, records: pd.DataFrame, times: PhaseTimes, cal: dict | None = None,
                  cal_rows: pd.DataFrame | None = None, per_engine: int = 1) -> dict:  # fmt: skip
    """{'terms': the ServingConfig values, 'fits': every fit, 'notes'} of one design."""
    notes: list[str] = []
    fits: dict = {}
    terms = dict.fromkeys(TERMS, 0.0)
    fits["delta"] = delta = fit_delta(records, times, per_engine)
    terms["iteration_s"], terms["iteration_s_per_request"] = delta["a"], delta["b"]
    if design == "splitwise":
        kv = fit_kv_load(records, times, delta)
        if kv is None:
            sp = (cal or {}).get("handover_split_fit") or {}
            b = sp.get("b_injected_s_per_token")
            kv = {"a": 0.0, "b": float(b) if b is not None else 0.0, "source": "calibration"}
            notes.append("kv_load: no stall records at two injected counts; the calibration's "
                         "per-injected-token slope, no fixed term")  # fmt: skip
        fits["kv_load"] = kv
        terms["kv_load_s"], terms["kv_load_s_per_token"] = kv["a"], kv["b"]
        if cal_rows is not None and len(cal_rows):
            legs = fit_legs(cal_rows, times, delta, (max(0.0, kv["a"]), max(0.0, kv["b"])))
            fits.update(legs)
            terms["prefill_leg_s"] = legs["prefill_leg"]["a"]
            terms["prefill_leg_s_per_token"] = legs["prefill_leg"]["b"]
            terms["decode_leg_s"] = legs["decode_leg"]["a"]
            terms["decode_leg_s_per_token"] = legs["decode_leg"]["b"]
            if "kv_save" in legs:
                terms["kv_save_s"] = legs["kv_save"]["a"]
                terms["kv_save_s_per_token"] = legs["kv_save"]["b"]
            else:
                notes.append("kv_save: no engine counters in the calibration: the prefill leg's "
                             "whole excess over prefill(L) + delta(1) is latency")  # fmt: skip
        else:
            notes.append("legs: no calibration records (calibrate.enabled=false): legs zero")
    else:
        fits["alpha"] = alpha = fit_alpha(records, times, delta)
        terms["arrival_s"], terms["arrival_s_per_token"] = alpha["a"], alpha["b"]
    for name, f in fits.items():
        if isinstance(f, dict) and f.get("bounded"):
            notes.append(f"{name}: the least-squares line a = {f['a_unbounded']:.4g} s, b = "
                         f"{f['b_unbounded']:.4g} s/unit has a coefficient < 0; the best line "
                         f"with both >= 0 is taken: a = {f['a']:.4g}, b = {f['b']:.4g}")
    for k, v in list(terms.items()):
        if v < 0:
            notes.append(f"{k}: fitted {v:.3g} s < 0, written as 0")
            terms[k] = 0.0
    return {"terms": terms, "fits": fits, "notes": notes}


def describe_rows(res: dict) -> list[dict]:
    """The report's table: each term, its value, unit, probe and fit error."""
    fits = res.get("fits") or {}
    fit_of = {"alpha": "alpha", "delta": "delta", "legs (calibration)": None, "stall": "kv_load"}
    rows = []
    for k, (unit, probe) in TERMS.items():
        v = (res.get("terms") or {}).get(k, 0.0)
        key = fit_of.get(probe)
        if probe.startswith("legs"):
            key = ("prefill_leg" if k.startswith("prefill") else
                   "kv_save" if k.startswith("kv_save") else "decode_leg")  # fmt: skip
        f = fits.get(key) if key else None
        rows.append({"term": k, "value": v, "unit": unit, "probe": probe,
                     "fit_points": f.get("points") if f else None,
                     "fit_rms_s": f.get("rms_s") if f else None,
                     "fit_max_abs_residual_s": f.get("max_abs_residual_s") if f else None})  # fmt: skip
    return rows
