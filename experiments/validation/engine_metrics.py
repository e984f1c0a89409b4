"""What the engines report on their Prometheus ``/metrics``: the prefix-cache counters (which
must stay at zero) and the KV capacity (``num_gpu_blocks``, ``block_size``).

Prefix caching is off in every instance (``--no-enable-prefix-caching``) and each real run sends
its own prompt ids, so a repeat can never reuse an earlier run's KV: the local counters
``vllm:prefix_cache_hits`` must stay at zero on every instance, and the connector's
``vllm:external_prefix_cache_hits`` at zero on every instance but the decode instance of the
disaggregated design (whose loads are the KV hand-over itself). A run that breaks this fails
loudly (:func:`check_no_reuse`). Counters are read before and after each run and their
differences go into the run's records.

Each engine's KV capacity (:func:`engine_kv`) comes from its ``vllm:cache_config_info`` (fallback:
the start-up log's "KV cache size: N tokens"); the simulator takes the co-located or decode
engine's (:func:`kv_capacity`).
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from pathlib import Path

from experiments.validation.errors import StepError

#: the reuse counters (base names: Prometheus adds ``_total``); summed over their label sets
REUSE = (
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:external_prefix_cache_queries",
    "vllm:external_prefix_cache_hits",
)
#: the engine's own accounting of its requests and steps (histogram sums and counts, counters):
#: their differences over a run give each instance's mean queue time (arrival at the engine core
#: to first scheduled) and prefill time (first scheduled to first token) per request, its steps
#: and their mean tokens (:func:`engine_means`)
ENGINE = (
    "vllm:request_queue_time_seconds_sum",
    "vllm:request_queue_time_seconds_count",
    "vllm:request_prefill_time_seconds_sum",
    "vllm:request_prefill_time_seconds_count",
    "vllm:request_decode_time_seconds_sum",
    "vllm:iteration_tokens_total_sum",
    "vllm:iteration_tokens_total_count",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:num_preemptions",
)
COUNTERS = REUSE + ENGINE


def parse_counters(text: str, names=COUNTERS) -> dict[str, float]:
    """{name: value summed over labels} of the Prometheus text ``text`` (absent: NaN)."""
    out = {n: math.nan for n in names}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric, _, rest = line.partition(" ")
        base = metric.split("{", 1)[0]
        if base.endswith("_total"):
            base = base[: -len("_total")]
        if base not in out:
            continue
        try:
            v = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        out[base] = v if math.isnan(out[base]) else out[base] + v
    return out


def read_counters(base_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The counters of one server (all NaN when it has no ``/metrics``)."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout_s) as r:  # noqa: S310
            text = r.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return {n: math.nan for n in COUNTERS}
    return parse_counters(text)


def diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {n: after.get(n, math.nan) - before.get(n, math.nan) for n in COUNTERS}


def split(deltas: dict[str, dict[str, float]]) -> tuple[dict, dict]:
    """Per-instance counter differences -> (the reuse counters, the engine's accounting)."""
    reuse = {i: {n: d.get(n, math.nan) for n in REUSE} for i, d in deltas.items()}
    engine = {i: {n: d.get(n, math.nan) for n in ENGINE} for i, d in deltas.items()}
    return reuse, engine


def engine_means(d: dict[str, float]) -> dict[str, float]:
    """One instance's run in the engine's own terms, from its counter differences ``d``
    (:func:`diff`): ``requests`` (finished), mean ``queue_ms`` and ``prefill_ms`` per request
    (vLLM's request_queue_time and request_prefill_time: engine-core arrival to first scheduled,
    first scheduled to first token), ``steps`` (engine iterations with tokens), their mean
    ``tokens_per_step``, ``prompt_tokens``, ``generation_tokens`` and ``preemptions``; NaN where
    the engine reported none."""

    def g(k: str) -> float:
        return float(d.get(k, math.nan))

    def ratio(a: float, b: float, scale: float = 1.0) -> float:
        return scale * a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan

    n = g("vllm:request_queue_time_seconds_count")
    steps = g("vllm:iteration_tokens_total_count")
    return {
        "requests": n,
        "queue_ms": ratio(g("vllm:request_queue_time_seconds_sum"), n, 1e3),
        "prefill_ms": ratio(g("vllm:request_prefill_time_seconds_sum"),
                            g("vllm:request_prefill_time_seconds_count"), 1e3),  # fmt: skip
        "steps": steps,
        "tokens_per_step": ratio(g("vllm:iteration_tokens_total_sum"), steps),
        "prompt_tokens": g("vllm:prompt_tokens"),
        "generation_tokens": g("vllm:generation_tokens"),
        "preemptions": g("vllm:num_preemptions"),
    }


def check_no_reuse(step: str, deltas: dict[str, dict[str, float]], loader: str | None) -> None:
    """StepError when an instance served KV from a cache: local prefix-cache hits on any
    instance, connector hits on any instance but ``loader`` (the decode instance)."""
    for inst, d in deltas.items():
        hits = d.get("vllm:prefix_cache_hits", math.nan)
        if math.isfinite(hits) and hits > 0:
            raise StepError(step, f"{inst} reported {hits:g} prefix-cache hit tokens: a run "
                            "reused cached KV (prefix caching must be off)")  # fmt: skip
        ext = d.get("vllm:external_prefix_cache_hits", math.nan)
        if inst != loader and math.isfinite(ext) and ext > 0:
            raise StepError(step, f"{inst} loaded {ext:g} tokens of stored KV through the "
                            "connector: it must compute every prompt itself")  # fmt: skip


# ---------------------------------------------------------------- the engines' KV capacity
_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{([^}]*)\}", re.M)


def parse_cache_info(metrics: str) -> dict:
    """{'block_size', 'num_gpu_blocks'} from Prometheus text (vllm:cache_config_info); {}."""
    m = _CACHE_INFO.search(metrics or "")
    if not m:
        return {}
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    out = {}
    for k in ("block_size", "num_gpu_blocks"):
        v = labels.get(k, "")
        if v.isdigit() and int(v) > 0:
            out[k] = int(v)
    return out


def parse_kv_log(text: str, block_size: int) -> int | None:
    """Blocks from the start-up log's "<device> KV cache size: N tokens" (vLLM 0.32)."""
    m = re.findall(r"KV cache size: ([\d,]+) tokens", text or "")
    return int(m[-1].replace(",", "")) // int(block_size) if m else None


def engine_kv(base_url: str, log: Path | None, block_size: int) -> dict:
    """One engine's {'block_size', 'num_gpu_blocks', 'source'}."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as r:  # noqa: S310
            info = parse_cache_info(r.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        info = {}
    if "num_gpu_blocks" in info:
        return {**info, "source": "metrics vllm:cache_config_info"}
    bs = info.get("block_size", block_size)
    text = log.read_text(encoding="utf-8", errors="replace") if log and log.is_file() else ""
    n = parse_kv_log(text, bs)
    return {"block_size": bs, "num_gpu_blocks": n, "source": "log 'KV cache size'" if n else None}



def kv_capacity(res: dict | None, design: str) -> tuple[int | None, int | None]:
    """(block_size, num_gpu_blocks) of the instance the simulator's capacity stands for (the
    co-located or decode engine; the smallest count where several)."""
    eng = (res or {}).get("engines") or {}
    names = ["decode"] if design == "splitwise" else [n for n in eng if n.startswith("colocated")]
    got = [eng[n] for n in names if n in eng and eng[n].get("num_gpu_blocks")]
    if not got:
        return None, None
    best = min(got, key=lambda e: e["num_gpu_blocks"])
    return int(best["block_size"]), int(best["num_gpu_blocks"])
