"""Summary statistics of a trace table (contract 1).

Definitions (used by :func:`describe` and by the rate transforms, so the two agree):

- span_s: last arrival - first arrival (s).
- mean rate: requests / span_s (req/s); NaN for fewer than 2 requests or a zero span.
- inter-arrival CV: population std / mean of the n-1 gaps between consecutive arrivals.
- busiest second / minute: the most requests whose arrivals fall in any half-open window
  [t, t + 1 s) / [t, t + 60 s) (a sliding window starting at an arrival, not fixed bins).
- token percentiles: linear interpolation (numpy's default); prompt:output ratio is
  sum(prompt_tokens) / sum(output_tokens).
- block reuse (tables with ``block_hashes``): requests are taken in arrival order; each
  block of a request is looked up in the cache as it stands before that request (so an id
  repeated inside one prompt is not a hit), then all the request's blocks are put in the
  cache. *Seen before* = share of all blocks found; *prefix* = share of blocks in the
  leading run of found blocks of each prompt (what a prefix KV cache can reuse). The
  unbounded cache keeps every block; the LRU cache of N blocks evicts the least recently
  used block, and a request's blocks are touched from its last block to its first, so a
  prompt's deeper blocks are evicted before its prefix (vLLM's eviction order).
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from common.units import S_PER_MINUTE
from traces.errors import TraceError
from traces.schema import BLOCK_HASHES, BLOCK_TOKENS, check_table

PERCENTILES: tuple[int, ...] = (50, 90, 99)


def mean_rate(arrival_s) -> float:
    """Mean arrival rate in requests/s: n / (last - first arrival); NaN when undefined."""
    a = np.asarray(arrival_s, dtype="float64")
    if a.size < 2:
        return math.nan
    span = float(a[-1] - a[0])
    return a.size / span if span > 0 else math.nan


def interarrival_cv(arrival_s) -> float:
    """Coefficient of variation (population std / mean) of inter-arrival gaps; NaN if undefined."""
    gaps = np.diff(np.asarray(arrival_s, dtype="float64"))
    if gaps.size < 2 or gaps.mean() <= 0:
        return math.nan
    return float(gaps.std() / gaps.mean())


def busiest_window(arrival_s, width_s: float) -> int:
    """Most arrivals in any half-open window [t, t + width_s) (sorted arrivals)."""
    a = np.asarray(arrival_s, dtype="float64")
    if a.size == 0:
        return 0
    ends = np.searchsorted(a, a + width_s, side="left")
    return int((ends - np.arange(a.size)).max())


def _cache_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise TraceError(f"cache blocks must be a positive integer, got {value!r}")
    return int(value)


def block_reuse(block_hashes: Iterable[Sequence[int]], cache_blocks: int | None = None) -> dict:
    """Share of blocks seen before, with an unbounded cache (None) or an LRU cache of N blocks.

    Args:
        block_hashes: per request, in arrival order, the ids of its prompt's blocks.
        cache_blocks: LRU capacity in blocks; None: unbounded (every block is kept).

    Returns:
        ``blocks`` (total), ``hits`` (blocks found in the cache), ``prefix_hits`` (blocks in
        each prompt's leading run of found blocks), ``seen_share`` = hits / blocks and
        ``prefix_share`` = prefix_hits / blocks (NaN with no blocks). See the module
        docstring for the lookup and eviction order.
    """
    cap = None if cache_blocks is None else _cache_size(cache_blocks)
    total = hits = prefix = 0
    if cap is None:
        seen: set[int] = set()
        for blocks in block_hashes:
            lead = True
            for h in blocks:
                if h in seen:
                    hits += 1
                    prefix += lead
                else:
                    lead = False
            total += len(blocks)
            seen.update(blocks)
    else:
        lru: OrderedDict[int, None] = OrderedDict()
        for blocks in block_hashes:
            lead = True
            for h in blocks:
                if h in lru:
                    hits += 1
                    prefix += lead
                else:
                    lead = False
            total += len(blocks)
            for h in reversed(blocks):
                if h in lru:
                    lru.move_to_end(h)
                else:
                    lru[h] = None
                    if len(lru) > cap:
                        lru.popitem(last=False)
    return {
        "blocks": total,
        "hits": hits,
        "prefix_hits": prefix,
        "seen_share": hits / total if total else math.nan,
        "prefix_share": prefix / total if total else math.nan,
    }


def describe(df: pd.DataFrame, cache_blocks: Sequence[int] = ()) -> dict:
    """Statistics of a trace: counts, rates, burstiness, token distributions, block reuse.

    Returns a flat dict of plain Python numbers (JSON-ready except NaN for undefined rates):
    ``requests``, ``span_s`` (s), ``mean_rate_rps`` (req/s), ``interarrival_cv``,
    ``busiest_second_requests``, ``busiest_minute_requests``, and for ``prompt_tokens`` and
    ``output_tokens``: ``<col>_mean``, ``<col>_p50``, ``<col>_p90``, ``<col>_p99``,
    ``<col>_max``; and ``prompt_output_ratio`` (sum prompt / sum output tokens).

    With a ``block_hashes`` column also: ``block_tokens`` (block size, None if unknown),
    ``blocks``, ``distinct_blocks``, ``reuse_seen_unbounded`` and ``reuse_prefix_unbounded``
    (:func:`block_reuse` shares), and for each N of ``cache_blocks``
    ``reuse_seen_lru_<N>`` and ``reuse_prefix_lru_<N>``.

    Raises:
        TraceError: ``cache_blocks`` given for a table without ``block_hashes``, or an N
            that is not a positive integer.
    """
    t = check_table(df)
    sizes = [_cache_size(n) for n in cache_blocks]
    if sizes and BLOCK_HASHES not in t.columns:
        raise TraceError(
            "cache blocks: this trace has no block hashes (a Mooncake trace with hash_ids has)"
        )
    a = t["arrival_s"].to_numpy()
    out: dict = {
        "requests": int(len(t)),
        "span_s": float(a[-1] - a[0]),
        "mean_rate_rps": mean_rate(a),
        "interarrival_cv": interarrival_cv(a),
        "busiest_second_requests": busiest_window(a, 1.0),
        "busiest_minute_requests": busiest_window(a, S_PER_MINUTE),
    }
    for col in ("prompt_tokens", "output_tokens"):
        x = t[col].to_numpy()
        out[f"{col}_mean"] = float(x.mean())
        for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True):
            out[f"{col}_p{q}"] = float(v)
        out[f"{col}_max"] = int(x.max())
    out["prompt_output_ratio"] = float(t["prompt_tokens"].sum() / t["output_tokens"].sum())
    if BLOCK_HASHES in t.columns:
        hashes = t[BLOCK_HASHES].tolist()
        out["block_tokens"] = t.attrs.get(BLOCK_TOKENS)
        out["blocks"] = int(sum(len(h) for h in hashes))
        out["distinct_blocks"] = len({h for blocks in hashes for h in blocks})
        for n in (None, *dict.fromkeys(sizes)):
            reuse = block_reuse(hashes, n)
            tag = "unbounded" if n is None else f"lru_{n}"
            out[f"reuse_seen_{tag}"] = reuse["seen_share"]
            out[f"reuse_prefix_{tag}"] = reuse["prefix_share"]
    return out
