"""Trace transforms: pure functions from a contract-1 table to a new one.

All take a trace table and return a new table (the input is never modified); the random
one (:func:`resample`) takes a ``seed`` and uses ``numpy.random.default_rng(seed)``, so the
same arguments give byte-identical output. They compose; :func:`prepare` chains them in the
order window -> scale_rate -> resample -> scale_tokens -> limit_context and reports what it did.

Rates are mean rates as :func:`traces.stats.mean_rate` defines them: requests / (last
arrival - first arrival).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.schema import BLOCK_HASHES, BLOCK_TOKENS, COLUMNS, check_table
from traces.stats import mean_rate

ARRIVALS = ("poisson", "gamma")
#: how a study point sets a trace's rate (TraceConfig.rate_method)
RATE_METHODS = ("resample", "scale")
CONTEXT_POLICIES = ("reject", "clip")


def _positive(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value <= 0:
        raise TraceError(f"{name} must be a positive number, got {value!r}")


def window(
    df: pd.DataFrame,
    start_s: float | None = None,
    end_s: float | None = None,
    *,
    keys: tuple[str, str] = ("start_s", "end_s"),
) -> pd.DataFrame:
    """Requests arriving in [start_s, end_s), with arrivals re-zeroed on ``start_s``.

    Args:
        df: trace table.
        start_s: window start in seconds of the trace's clock (None: from the beginning,
            arrivals are not shifted). Arrivals become ``arrival_s - start_s``, so a gap
            before the first request in the window is kept.
        end_s: window end in seconds, exclusive (None: to the end).
        keys: the names errors give ``start_s`` and ``end_s`` (``trace.start_s``, ...).

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
        named = [k for k, v in zip(keys, (start_s, end_s), strict=True) if v is not None]
        raise TraceError(
            f"{', '.join(named)}: no requests in [{lo:.10g}, {hi:.10g}) s (the trace spans "
            f"{a[0]:.10g} to {a[-1]:.10g} s)"
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


def scale_tokens(df: pd.DataFrame, prompt: float = 1.0, output: float = 1.0) -> pd.DataFrame:
    """Multiply every prompt length by ``prompt`` and every output length by ``output``.

    Lengths are rounded half to even (numpy) and kept >= 1; arrivals and ids are unchanged, so a
    trace keeps its timing and gets a new token distribution (the robustness study's x0.5 / x2).
    Block hashes (prefix reuse) describe the original prompts: a table with a ``block_hashes``
    column and ``prompt != 1`` is refused.

    Args:
        df: trace table.
        prompt: factor on ``prompt_tokens`` (> 0).
        output: factor on ``output_tokens`` (> 0).
    """
    _positive("prompt", prompt)
    _positive("output", output)
    t = check_table(df)
    if prompt != 1.0 and BLOCK_HASHES in t.columns:
        raise TraceError(
            "scale_tokens: the trace has prefix block hashes, which a scaled prompt would not "
            "match; scale the output only"
        )
    out = t.copy()
    for col, f in (("prompt_tokens", prompt), ("output_tokens", output)):
        if f != 1.0:
            out[col] = scaled_lengths(out[col].to_numpy(np.float64), f)
    return out


def scaled_lengths(values, factor: float, cap: int | None = None) -> np.ndarray:
    """The one token-scaling rule: ``max(1, round(values * factor))`` (numpy's half to even),
    then at most ``cap`` (None: no cap); int64."""
    v = np.rint(np.asarray(values, dtype=np.float64) * float(factor)).astype(np.int64)
    v = np.maximum(v, 1)
    return v if cap is None else np.minimum(v, int(cap))


def scale_capped(
    df: pd.DataFrame,
    prompt: float,
    output: float,
    max_prompt: int | None = None,
    max_output: int | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every length scaled by :func:`scaled_lengths` (factor 1 included: a 0 becomes 1), prompts
    capped at ``max_prompt`` and outputs at ``max_output``: (a new table, {column: the rows it
    changed}). Unlike :func:`scale_tokens` the table is not checked and block hashes stay (the
    load generator and the validation make their own prompts, never the trace's)."""
    out = df.copy()
    changed = {}
    for col, f, cap in (
        ("prompt_tokens", prompt, max_prompt),
        ("output_tokens", output, max_output),
    ):
        old = out[col].to_numpy()
        new = scaled_lengths(old, f, cap)
        changed[col] = new != old
        out[col] = new
    return out, changed


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
    if not _integer(seed) or seed < 0:
        raise TraceError(f"resample: seed must be an integer >= 0, got {seed!r}")
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
    df: pd.DataFrame,
    max_tokens: int,
    policy: Literal["reject", "clip"] = "reject",
    *,
    keys: tuple[str, str] = ("trace.max_context", "trace.context_policy"),
    window: str = "the ",
) -> tuple[pd.DataFrame, int]:
    """Fit requests into a model's context window of ``max_tokens`` (prompt + output).

    Args:
        df: trace table.
        max_tokens: context window in tokens (>= 2: one prompt and one output token).
        policy: ``"reject"`` drops requests with prompt + output > max_tokens;
            ``"clip"`` keeps them, keeping the prompt and clipping the output to
            ``max_tokens - prompt``, or, if the prompt alone leaves no room for one output
            token, clipping the prompt to ``max_tokens - 1`` and the output to 1.
        keys: the config keys errors name for ``max_tokens`` and ``policy`` (the caller's:
            ``target.max_model_len`` for a real server, ...).
        window: whose window it is, for the error (``"the "``, ``"the model's "``).

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
            raise TraceError(
                f"{keys[0]}: every request exceeds {window}{max_tokens}-token context window "
                f"(prompt + output) and {keys[1]}=reject drops them all; raise {keys[0]} or "
                f"set {keys[1]}=clip"
            )
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
    prompt_scale: float = 1.0,
    output_scale: float = 1.0,
    max_context: int | None = None,
    context_policy: Literal["reject", "clip"] = "reject",
    seed: int = 0,
    context_window: str = "the ",
) -> tuple[pd.DataFrame, dict]:
    """Load a trace and apply window -> scale_rate -> resample -> scale_tokens ->
    limit_context, in that order.

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
        prompt_scale, output_scale: factors on every prompt / output length
            (:func:`scale_tokens`; 1.0: unchanged). The context window applies after them.
        max_context: model context window in tokens (prompt + output); None: no limit.
        context_policy: over-long requests are dropped (``"reject"``) or clipped
            (``"clip"``: output first, then the prompt to ``max_context - 1``).
        seed: seed of the re-sampling random generator.
        context_window: whose ``max_context`` it is, for the error when every request is
            rejected (``"the model's "``).

    Errors name the options as the ``trace`` config group's keys (``trace.start_s``, ...).

    Returns:
        (trace table, info) where info holds ``source``, ``source_requests``, ``requests``,
        ``transforms`` (list of {"name", parameters...} in the order applied),
        ``context_rejected``, ``context_clipped``, ``context`` (when ``max_context`` is set:
        ``policy``, ``max_context``, ``clipped``/``clipped_tokens`` (requests clipped, tokens
        removed), ``rejected``/``rejected_tokens`` (requests dropped, their tokens)), ``seed``
        (and ``block_tokens`` when the table carries ``block_hashes``, which every step keeps
        with its request).
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
        t = window(t, start_s, end_s, keys=("trace.start_s", "trace.end_s"))
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
    if prompt_scale != 1.0 or output_scale != 1.0:
        t = scale_tokens(t, prompt_scale, output_scale)
        steps.append(
            {"name": "scale_tokens", "prompt": float(prompt_scale), "output": float(output_scale)}
        )
    if max_context is not None:
        before = t["prompt_tokens"].to_numpy(np.int64) + t["output_tokens"].to_numpy(np.int64)
        t, n = limit_context(t, max_context, context_policy, window=context_window)
        after = t["prompt_tokens"].to_numpy(np.int64) + t["output_tokens"].to_numpy(np.int64)
        removed = int(before.sum() - after.sum())
        reject = context_policy == "reject"
        info["context_rejected" if reject else "context_clipped"] = n
        info["context"] = {
            "policy": context_policy,
            "max_context": int(max_context),
            "clipped": 0 if reject else n,
            "clipped_tokens": 0 if reject else removed,
            "rejected": n if reject else 0,
            "rejected_tokens": removed if reject else 0,
        }
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


def _h(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


@dataclass
class TraceConfig:
    """A trace and its transforms: the schema of the ``trace`` config group.

    Every option is checked once, here (one-line :class:`TraceError` starting with
    ``trace.<key>``); :meth:`prepare` applies them (:func:`prepare`).
    """

    name: str | None = _h(
        None,
        "bundled trace name (azure-code-2023, azure-conv-2023, mooncake-conversation, "
        "mooncake-synthetic)",
    )
    path: str | None = _h(None, "trace file path (CSV/parquet, contract 1 or Azure format); wins")
    fmt: str | None = _h(None, "file format of `path` when its columns do not tell")
    display: str = _h("", "name shown in tables and figures")
    start_s: float | None = _h(None, "window start, s from trace start (None: from the start)")
    end_s: float | None = _h(None, "window end, s from trace start (None: to the end)")
    scale_to_rate: float | None = _h(None, "compress/stretch arrival times to this rate, req/s")
    resample_rate: float | None = _h(None, "re-sample arrivals at this rate, req/s (paper method)")
    resample_duration_s: float | None = _h(None, "re-sampled trace length, s")
    resample_requests: int | None = _h(None, "re-sampled trace length in requests (or duration)")
    rate_method: str = _h(
        "resample",
        "how a study point sets the rate: 'resample' (the paper's: Poisson arrivals, requests "
        "drawn with replacement) or 'scale' (the trace's own order and gaps, time compressed "
        "to the rate: keeps conversations and their prefix reuse)",
    )
    arrival: str = _h("poisson", "re-sampled arrival process: 'poisson' or 'gamma'")
    cv: float = _h(1.0, "coefficient of variation of gamma inter-arrivals (1 = Poisson)")
    prompt_scale: float = _h(1.0, "factor on every prompt length (after re-sampling; 1: as is)")
    output_scale: float = _h(1.0, "factor on every output length (after re-sampling; 1: as is)")
    max_context: int | None = _h(None, "prompt+output token limit (None: the model's context)")
    context_policy: str = _h("clip", "requests over max_context: 'clip' or 'reject' (dropped)")
    seed: int = _h(0, "seed of every random transform (>= 0)")

    def __post_init__(self) -> None:
        def need(cond, key, msg):
            if not cond:
                raise TraceError(f"trace.{key}: {msg}")

        if self.path is None:
            from traces.bundled import list_traces

            names = list_traces()
            need(self.name is not None, "name", "set a bundled trace name or trace.path")
            need(self.name in names, "name",
                 f"unknown value '{self.name}' (known: {', '.join(names)})")  # fmt: skip
        else:
            p = os.fspath(self.path)
            need(not os.path.isdir(p), "path", f"'{p}' is a directory, not a trace file")
            need(os.path.isfile(p), "path", f"no such file '{p}'")
        for k in ("scale_to_rate", "resample_rate", "resample_duration_s", "prompt_scale",
                  "output_scale"):  # fmt: skip
            v = getattr(self, k)
            ok = v is None or (_real(v) and math.isfinite(v) and v > 0)
            need(ok, k, f"must be > 0 and finite, got {v!r}")
        for k in ("start_s", "end_s"):
            v = getattr(self, k)
            ok = v is None or (_real(v) and math.isfinite(v) and v >= 0)
            need(ok, k, f"must be >= 0 and finite, got {v!r}")
        if self.start_s is not None and self.end_s is not None:
            need(self.end_s > self.start_s, "end_s", "must be after start_s")
        for k, lo in (("resample_requests", 1), ("max_context", 2)):
            v = getattr(self, k)
            need(
                v is None or (_integer(v) and v >= lo), k, f"must be an integer >= {lo}, got {v!r}"
            )
        need(self.rate_method in RATE_METHODS, "rate_method",
             f"unknown value '{self.rate_method}' (known: {', '.join(RATE_METHODS)})")  # fmt: skip
        need(self.arrival in ARRIVALS, "arrival",
             f"unknown value '{self.arrival}' (known: {', '.join(ARRIVALS)})")  # fmt: skip
        need(_real(self.cv) and math.isfinite(self.cv) and self.cv > 0, "cv",
             f"must be a finite number > 0, got {self.cv!r}")  # fmt: skip
        need(self.arrival == "gamma" or self.cv == 1.0, "cv",
             "applies to arrival=gamma (a Poisson process has cv=1)")  # fmt: skip
        need(self.context_policy in CONTEXT_POLICIES, "context_policy",
             f"unknown value '{self.context_policy}' (known: {', '.join(CONTEXT_POLICIES)})")  # fmt: skip
        need(_integer(self.seed) and self.seed >= 0, "seed", f"must be an integer >= 0, got {self.seed!r}")  # fmt: skip
        if self.resample_rate is None:
            for k in ("resample_duration_s", "resample_requests"):
                need(getattr(self, k) is None, k, "needs trace.resample_rate")

    @property
    def source(self) -> str:
        return os.fspath(self.path) if self.path is not None else str(self.name)

    def prepare(
        self, source: pd.DataFrame | None = None, max_context: int | None = None
    ) -> tuple[pd.DataFrame, dict]:
        """:func:`prepare` with these options. ``source``: the loaded table (None: load it);
        ``max_context``: the window used when ``self.max_context`` is None (the model's)."""
        return prepare(
            self.source if source is None else source,
            fmt=self.fmt,
            start_s=self.start_s,
            end_s=self.end_s,
            scale_to_rate=self.scale_to_rate,
            resample_rate=self.resample_rate,
            resample_duration_s=self.resample_duration_s,
            resample_requests=self.resample_requests,
            arrival=self.arrival,  # type: ignore[arg-type]
            cv=self.cv,
            prompt_scale=self.prompt_scale,
            output_scale=self.output_scale,
            max_context=self.max_context if self.max_context is not None else max_context,
            context_policy=self.context_policy,  # type: ignore[arg-type]
            seed=self.seed,
            context_window="the " if self.max_context is not None else "the model's ",
        )


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _integer(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)
