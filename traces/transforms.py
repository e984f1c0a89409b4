"""Trace transforms: pure functions from a contract-1 table to a new one.

All take a trace table and return a new table (the input is never modified); the random
one (:func:`resample`) takes a ``seed`` and uses ``numpy.random.default_rng(seed)``, so the
same arguments give byte-identical output. They compose; :func:`prepare` chains them in the
order window -> scale_rate -> resample -> limit_context and reports what it did.

Rates are mean rates as :func:`traces.stats.mean_rate` defines them: requests / (last
arrival - first arrival).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Literal

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.schema import BLOCK_HASHES, BLOCK_TOKENS, COLUMNS, check_table
from traces.stats import mean_rate

ARRIVALS = ("poisson", "gamma")
CONTEXT_POLICIES = ("reject", "clip")


def _positive(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value <= 0:
        raise TraceError(f"{name} must be a positive number, got {value!r}")


def window(
    df: pd.DataFrame, start_s: float | None = None, end_s: float | None = None
) -> pd.DataFrame:
    """Requests arriving in [start_s, end_s), with arrivals re-zeroed on ``start_s``.

    Args:
        df: trace table.
        start_s: window start in seconds of the trace's clock (None: from the beginning,
            arrivals are not shifted). Arrivals become ``arrival_s - start_s``, so a gap
            before the first request in the window is kept.
        end_s: window end in seconds, exclusive (None: to the end).

    Returns:
        A new table; request ids are kept.

    Raises:
        TraceError: ``end_s <= start_s``, a negative bound, or no request in the window.
    """
    t = check_table(df)
    lo = 0.0 if start_s is None else float(start_s)
    hi = math.inf if end_s is None else float(end_s)
    if lo < 0 or not math.isfinite(lo) or not hi > lo:
        raise TraceError(f"window: need 0 <= start_s < end_s, got start_s={start_s}, end_s={end_s}")
    a = t["arrival_s"].to_numpy()
    keep = (a >= lo) & (a < hi)
    if not keep.any():
        raise TraceError(
            f"window: no requests in [{lo:g}, {hi:g}) s (the trace spans {a[0]:g} to {a[-1]:g} s)"
        )
    out = t.loc[keep].reset_index(drop=True)
    out["arrival_s"] = out["arrival_s"] - lo
    return out


def scale_rate(df: pd.DataFrame, target_rate: float) -> pd.DataFrame:
    """Stretch or compress time so the mean rate becomes ``target_rate`` (req/s).

    Every arrival is multiplied by one factor (current rate / target rate), so bursts and
    gaps keep their shape relative to each other; token counts and ids are unchanged.

    Args:
        df: trace table with at least 2 requests and a non-zero span.
        target_rate: requests per second.
    """
    _positive("target_rate", target_rate)
    t = check_table(df)
    current = mean_rate(t["arrival_s"])
    if not math.isfinite(current):
        raise TraceError("scale_rate: needs at least 2 requests spread over a non-zero time span")
    out = t.copy()
    out["arrival_s"] = out["arrival_s"] * (current / float(target_rate))
    return out


def _gaps(rng: np.random.Generator, n: int, rate: float, arrival: str, cv: float) -> np.ndarray:
    if arrival == "poisson":
        return rng.exponential(1.0 / rate, size=n)
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / (rate * shape), size=n)


def resample(
    df: pd.DataFrame,
    rate: float,
    *,
    duration_s: float | None = None,
    num_requests: int | None = None,
    arrival: Literal["poisson", "gamma"] = "poisson",
    cv: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A new trace at ``rate`` req/s with (prompt, output) pairs drawn from ``df`` (paper's method).

    Arrivals: a Poisson process (exponential inter-arrival gaps, mean 1/rate) or, with
    ``arrival="gamma"``, gamma-distributed gaps with mean 1/rate and coefficient of variation
    ``cv`` (cv > 1: burstier than Poisson; cv = 1 is Poisson). The first request arrives one
    gap after time 0. Each request takes the (prompt_tokens, output_tokens) pair of a source
    request drawn uniformly with replacement. Ids are 0..n-1.

    Args:
        df: source trace (its arrival times are not used).
        rate: target mean arrival rate, requests per second.
        duration_s: generate arrivals in [0, duration_s) seconds. Give this or
            ``num_requests``, not both.
        num_requests: generate exactly this many requests.
        arrival: ``"poisson"`` or ``"gamma"``.
        cv: inter-arrival coefficient of variation for ``"gamma"`` (must be 1 for poisson).
        seed: seed of ``numpy.random.default_rng``; same arguments -> identical table.
    """
    _positive("rate", rate)
    if arrival not in ARRIVALS:
        raise TraceError(f"resample: arrival must be one of {list(ARRIVALS)}, got {arrival!r}")
    _positive("cv", cv)
    if arrival == "poisson" and cv != 1.0:
        raise TraceError("resample: cv applies to arrival='gamma' (a Poisson process has cv=1)")
    if (duration_s is None) == (num_requests is None):
        raise TraceError("resample: give exactly one of duration_s and num_requests")
    _positive("duration_s", duration_s, allow_none=True)
    if num_requests is not None and (
        isinstance(num_requests, bool)
        or not isinstance(num_requests, int | np.integer)
        or num_requests < 1
    ):
        raise TraceError(f"num_requests must be a positive integer, got {num_requests!r}")
    t = check_table(df)
    rng = np.random.default_rng(seed)
    rate = float(rate)
    if num_requests is not None:
        arrivals = np.cumsum(_gaps(rng, int(num_requests), rate, arrival, cv))
    else:
        horizon = float(duration_s)
        chunk = int(rate * horizon + 10 * math.sqrt(rate * horizon) * max(cv, 1.0)) + 16
        parts: list[np.ndarray] = []
        last = 0.0
        while last < horizon:
            part = last + np.cumsum(_gaps(rng, chunk, rate, arrival, cv))
            parts.append(part)
            last = float(part[-1])
        arrivals = np.concatenate(parts)
        arrivals = arrivals[arrivals < horizon]
        if arrivals.size == 0:
            raise TraceError(
                f"resample: no request arrived in {horizon:g} s at {rate:g} req/s (seed {seed})"
            )
    n = arrivals.size
    pick = rng.integers(0, len(t), size=n)
    out = pd.DataFrame(
        {
            "request_id": np.arange(n, dtype="int64"),
            "arrival_s": arrivals.astype("float64"),
            "prompt_tokens": t["prompt_tokens"].to_numpy()[pick],
            "output_tokens": t["output_tokens"].to_numpy()[pick],
        }
    )
    if BLOCK_HASHES in t.columns:  # whole requests are drawn: their block hashes go with them
        out[BLOCK_HASHES] = t[BLOCK_HASHES].to_numpy()[pick]
        out.attrs.update(t.attrs)
    return out


def limit_context(
    df: pd.DataFrame, max_tokens: int, policy: Literal["reject", "clip"] = "reject"
) -> tuple[pd.DataFrame, int]:
    """Fit requests into a model's context window of ``max_tokens`` (prompt + output).

    Args:
        df: trace table.
        max_tokens: context window in tokens (>= 2: one prompt and one output token).
        policy: ``"reject"`` drops requests with prompt + output > max_tokens;
            ``"clip"`` keeps them, keeping the prompt and clipping the output to
            ``max_tokens - prompt``, or, if the prompt alone leaves no room for one output
            token, clipping the prompt to ``max_tokens - 1`` and the output to 1.

    Returns:
        (new table, number of requests dropped or clipped). Ids are kept.
    """
    if policy not in CONTEXT_POLICIES:
        raise TraceError(
            f"limit_context: policy must be one of {list(CONTEXT_POLICIES)}, got {policy!r}"
        )
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int | np.integer)
        or max_tokens < 2
    ):
        raise TraceError(f"limit_context: max_tokens must be an integer >= 2, got {max_tokens!r}")
    t = check_table(df)
    over = (t["prompt_tokens"] + t["output_tokens"] > max_tokens).to_numpy()
    n = int(over.sum())
    if policy == "reject":
        out = t.loc[~over].reset_index(drop=True)
        if out.empty:
            raise TraceError(f"limit_context: every request exceeds {max_tokens} tokens")
        return out, n
    out = t.copy()
    prompt = np.minimum(out["prompt_tokens"].to_numpy(), max_tokens - 1)
    output = np.minimum(out["output_tokens"].to_numpy(), max_tokens - prompt)
    block = out.attrs.get(BLOCK_TOKENS)
    if BLOCK_HASHES in out.columns and block:  # a clipped prompt keeps only its whole blocks
        cut = prompt < out["prompt_tokens"].to_numpy()
        hashes = out[BLOCK_HASHES].to_numpy().copy()
        for i in np.flatnonzero(cut):
            hashes[i] = hashes[i][: int(prompt[i]) // int(block)]
        out[BLOCK_HASHES] = hashes
    out["prompt_tokens"] = prompt.astype("int64")
    out["output_tokens"] = output.astype("int64")
    return out, n


def prepare(
    source: str | os.PathLike | pd.DataFrame,
    *,
    fmt: str | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    scale_to_rate: float | None = None,
    resample_rate: float | None = None,
    resample_duration_s: float | None = None,
    resample_requests: int | None = None,
    arrival: Literal["poisson", "gamma"] = "poisson",
    cv: float = 1.0,
    max_context: int | None = None,
    context_policy: Literal["reject", "clip"] = "reject",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Load a trace and apply window -> scale_rate -> resample -> limit_context, in that order.

    Each step runs only if its parameters are set. The result is deterministic in its
    arguments (``seed`` drives the only random step, ``resample``).

    Args:
        source: bundled trace name (``azure-code-2023``, ``azure-conv-2023``), trace file
            path (format detected, see :func:`traces.load`), or a trace DataFrame.
        fmt: file format of a path source (``splitbench``, ``azure``, ``splitwise``,
            ``vidur``, ``mooncake``); None: detect it from the columns.
        start_s: window start, seconds on the source's clock (None: from the start).
            Arrivals are re-zeroed on it.
        end_s: window end, seconds on the source's clock, exclusive (None: to the end).
        scale_to_rate: stretch/compress time to this mean rate, req/s, keeping burst shape
            (None: keep the source's timing).
        resample_rate: re-sample at this mean rate, req/s: new arrivals (see ``arrival``)
            with (prompt, output) pairs drawn with replacement from the (windowed) source
            (None: no re-sampling).
        resample_duration_s: length of the re-sampled trace in seconds. If neither it nor
            ``resample_requests`` is set, the span of the (windowed, scaled) source is used.
        resample_requests: number of re-sampled requests (instead of a duration).
        arrival: re-sampling arrival process: ``"poisson"`` or ``"gamma"``.
        cv: gamma inter-arrival coefficient of variation (burstiness; 1.0 = Poisson).
        max_context: model context window in tokens (prompt + output); None: no limit.
        context_policy: over-long requests are dropped (``"reject"``) or clipped
            (``"clip"``: output first, then the prompt to ``max_context - 1``).
        seed: seed of the re-sampling random generator.

    Returns:
        (trace table, info) where info holds ``source``, ``source_requests``, ``requests``,
        ``transforms`` (list of {"name", parameters...} in the order applied),
        ``context_rejected``, ``context_clipped``, and ``seed`` (and ``block_tokens`` when
        the table carries ``block_hashes``, which every step keeps with its request).
    """
    from traces.loading import load

    if isinstance(source, pd.DataFrame):
        label, t = "<DataFrame>", check_table(source)
    else:
        label, t = os.fspath(source), load(source, fmt)
    info: dict = {
        "source": label,
        "source_requests": int(len(t)),
        "transforms": [],
        "context_rejected": 0,
        "context_clipped": 0,
        "seed": int(seed),
    }
    steps = info["transforms"]
    if start_s is not None or end_s is not None:
        t = window(t, start_s, end_s)
        steps.append({"name": "window", "start_s": start_s, "end_s": end_s, "requests": len(t)})
    if scale_to_rate is not None:
        t = scale_rate(t, scale_to_rate)
        steps.append({"name": "scale_rate", "target_rate": float(scale_to_rate)})
    if resample_rate is not None:
        duration = resample_duration_s
        if duration is None and resample_requests is None:
            duration = float(t["arrival_s"].iloc[-1] - t["arrival_s"].iloc[0])
            if duration <= 0:
                raise TraceError("prepare: source spans 0 s; set resample_duration_s")
        t = resample(
            t,
            resample_rate,
            duration_s=duration,
            num_requests=resample_requests,
            arrival=arrival,
            cv=cv,
            seed=seed,
        )
        steps.append(
            {
                "name": "resample",
                "rate": float(resample_rate),
                "duration_s": duration,
                "num_requests": resample_requests,
                "arrival": arrival,
                "cv": float(cv),
                "seed": int(seed),
                "requests": len(t),
            }
        )
    elif resample_duration_s is not None or resample_requests is not None:
        raise TraceError("prepare: resample_duration_s/resample_requests need resample_rate")
    if max_context is not None:
        t, n = limit_context(t, max_context, context_policy)
        info["context_rejected" if context_policy == "reject" else "context_clipped"] = n
        steps.append(
            {
                "name": "limit_context",
                "max_tokens": int(max_context),
                "policy": context_policy,
                "affected": n,
            }
        )
    info["requests"] = int(len(t))
    if BLOCK_HASHES in t.columns:
        info[BLOCK_TOKENS] = t.attrs.get(BLOCK_TOKENS)
        return t[[*COLUMNS, BLOCK_HASHES]], info
    return t[list(COLUMNS)], info
