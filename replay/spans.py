"""Spans: a machine's runs of decode iterations with a fixed batch, in closed form.

Between two events that change a decode batch (an admission, a completion, a preemption), the
iterations of a machine are deterministic: with ``decode_time = a + b*B + q*B^2 + c*C`` and C
growing by B per iteration, iteration k of a span lasts ``d0 + k*inc`` (``inc = c*B``), so a
span of n iterations starting at t0 ends at ``t0 + n*d0 + inc*n*(n-1)/2``. A machine advances by
whole spans (:mod:`replay.machine`), records each one compactly (start, n, d0, inc, batch size,
requests excluded from its first gap, prompt tokens of a prefill/mixed iteration), and
:func:`span_tables` turns the records into the iteration table and each request's largest gap;
:func:`replay.metrics.span_gaps` expands them into the exact token-weighted TBT distribution.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def boundary_at_or_after(span, t: float) -> int:
    """Smallest n >= 0 with t0 + n*d0 + inc*n*(n-1)/2 >= t for ``span``'s current decode span
    (attributes ``t0``, ``d0``, ``inc``): solved from the quadratic, then checked. Machines use it
    as a method (no extra call frame in the event loop)."""
    t0 = span.t0
    x = t - t0
    if x <= 0.0:
        return 0
    d0 = span.d0
    inc = span.inc
    if inc > 0.0:
        h = d0 - 0.5 * inc
        n = math.ceil((-h + math.sqrt(h * h + 2.0 * inc * x)) / inc)
    else:
        n = math.ceil(x / d0)
    if n < 0:
        n = 0
    while t0 + n * d0 + inc * n * (n - 1) * 0.5 < t:
        n += 1
    while n > 0 and t0 + (n - 1) * d0 + inc * (n - 1) * (n - 2) * 0.5 >= t:
        n -= 1
    return n


def range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo:hi+1]) per query (sparse table); lo <= hi required."""
    if lo.size == 0:
        return np.zeros(0)
    table = [values]
    k = 1
    while (1 << k) <= values.size:
        prev = table[-1]
        half = 1 << (k - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))
        k += 1
    length = hi - lo + 1
    lvl = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty(lo.size)
    for j in np.unique(lvl):
        sel = lvl == j
        t = table[j]
        out[sel] = np.maximum(t[lo[sel]], t[hi[sel] - (1 << j) + 1])
    return out


def span_tables(machines, n_requests: int, role_names) -> tuple[pd.DataFrame, np.ndarray]:
    """(iteration table, largest span gap per request; -inf where none) of the machines'
    span records."""
    frames = []
    tbt_max = np.full(n_requests, -np.inf)
    for m in machines:
        has = m.nspans > 0
        t0 = np.frombuffer(m.sp_t0, dtype=float) if has else np.zeros(0)
        nn = np.frombuffer(m.sp_n, dtype=np.int64) if has else np.zeros(0, np.int64)
        d0 = np.frombuffer(m.sp_d0, dtype=float) if has else np.zeros(0)
        inc = np.frombuffer(m.sp_inc, dtype=float) if has else np.zeros(0)
        bb = np.frombuffer(m.sp_b, dtype=np.int64) if has else np.zeros(0, np.int64)
        k0 = np.frombuffer(m.sp_k0, dtype=np.int64) if has else np.zeros(0, np.int64)
        pt = np.frombuffer(m.sp_ptok, dtype=np.int64) if has else np.zeros(0, np.int64)
        role = np.frombuffer(m.sp_role, dtype=np.int8) if has else np.zeros(0, np.int8)
        frames.append(
            pd.DataFrame(
                {
                    "machine": np.full(nn.size, m.idx, dtype=np.int64),
                    "role": pd.Categorical.from_codes(role, role_names),
                    "start_s": t0,
                    "iterations": nn,
                    "first_s": d0,
                    "increment_s": inc,
                    "batch_size": bb,
                    "first_excluded": k0,
                    "prefill_tokens": pt,
                }
            )
        )
        if len(m.sg_req):  # largest gap of each request segment (range max over its spans)
            smax = np.maximum(d0, d0 + np.maximum(nn - 1, 0) * inc)
            req = np.frombuffer(m.sg_req, dtype=np.int64)
            s0 = np.frombuffer(m.sg_s0, dtype=np.int64)
            s1 = np.frombuffer(m.sg_s1, dtype=np.int64)
            ok = s1 >= s0
            np.maximum.at(tbt_max, req[ok], range_max(smax, s0[ok], s1[ok]))
    iterations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return iterations, tbt_max
