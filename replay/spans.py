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
    span records (``sp_f``: start, first iteration, increment; ``sp_i``: iterations, batch size,
    requests excluded from the first gap, prefill tokens, role; ``sg``: request, first and last
    span of each request segment; one row of each per span or segment, machine after machine)."""
    tbt_max = np.full(n_requests, -np.inf)
    fs, ints, idx = [], [], []
    for m in machines:
        f = np.frombuffer(m.sp_f, dtype=float).reshape(-1, 3) if m.nspans else np.zeros((0, 3))
        i = np.frombuffer(m.sp_i, dtype=np.int64).reshape(-1, 5) if m.nspans else np.zeros((0, 5), np.int64)  # fmt: skip
        fs.append(f)
        ints.append(i)
        idx.append(np.full(len(f), m.idx, dtype=np.int64))
        if len(m.sg):  # largest gap of each request segment (range max over its spans)
            d0, inc, nn = f[:, 1], f[:, 2], i[:, 0]
            smax = np.maximum(d0, d0 + np.maximum(nn - 1, 0) * inc)
            sg = np.frombuffer(m.sg, dtype=np.int64).reshape(-1, 3)
            req, s0, s1 = sg[:, 0], sg[:, 1], sg[:, 2]
            ok = s1 >= s0
            np.maximum.at(tbt_max, req[ok], range_max(smax, s0[ok], s1[ok]))
    if not fs:
        return pd.DataFrame(), tbt_max
    f = np.concatenate(fs)
    i = np.concatenate(ints)
    iterations = pd.DataFrame(
        {
            "machine": np.concatenate(idx),
            "role": pd.Categorical.from_codes(i[:, 4].astype(np.int8), role_names),
            "start_s": f[:, 0],
            "iterations": i[:, 0],
            "first_s": f[:, 1],
            "increment_s": f[:, 2],
            "batch_size": i[:, 1],
            "first_excluded": i[:, 2],
            "prefill_tokens": i[:, 3],
        }
    )
    return iterations, tbt_max
