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
import struct

import numpy as np
import pandas as pd

#: a span record, packed into a machine's ``spans`` bytearray (one ``+=`` per span: measured
#: ~4x cheaper than eight ``array.append``): start, first iteration, increment (s); iterations,
#: batch size, requests excluded from the first gap, prefill tokens, role
SPAN = struct.Struct("@3d5q")
SPAN_DTYPE = np.dtype(
    [("start_s", "f8"), ("first_s", "f8"), ("increment_s", "f8"), ("iterations", "i8"),
     ("batch_size", "i8"), ("first_excluded", "i8"), ("prefill_tokens", "i8"), ("role", "i8")]
)  # fmt: skip
#: a request segment record (the request, its first and last span on the machine)
SEGMENT = struct.Struct("@3q")
assert SPAN.size == SPAN_DTYPE.itemsize == 64 and SEGMENT.size == 24


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
    span records (``spans``: :data:`SPAN` records; ``segs``: :data:`SEGMENT` records)."""
    tbt_max = np.full(n_requests, -np.inf)
    recs, idx = [], []
    for m in machines:
        sp = np.frombuffer(m.spans, dtype=SPAN_DTYPE)
        recs.append(sp)
        idx.append(np.full(len(sp), m.idx, dtype=np.int64))
        if len(m.segs):  # largest gap of each request segment (range max over its spans)
            d0, inc, nn = sp["first_s"], sp["increment_s"], sp["iterations"]
            smax = np.maximum(d0, d0 + np.maximum(nn - 1, 0) * inc)
            sg = np.frombuffer(m.segs, dtype=np.int64).reshape(-1, 3)
            req, s0, s1 = sg[:, 0], sg[:, 1], sg[:, 2]
            ok = s1 >= s0
            np.maximum.at(tbt_max, req[ok], range_max(smax, s0[ok], s1[ok]))
    if not recs:
        return pd.DataFrame(), tbt_max
    sp = np.concatenate(recs)
    cols = {"machine": np.concatenate(idx)}
    cols["role"] = pd.Categorical.from_codes(sp["role"].astype(np.int8), role_names)
    for name in ("start_s", "iterations", "first_s", "increment_s", "batch_size",
                 "first_excluded", "prefill_tokens"):  # fmt: skip
        cols[name] = sp[name]
    return pd.DataFrame(cols), tbt_max
