"""The engines' prefix-cache counters, from each vLLM server's Prometheus ``/metrics``.

Prefix caching is off in every instance (``--no-enable-prefix-caching``) and each real run sends
its own prompt ids, so a repeat can never reuse an earlier run's KV: the local counters
``vllm:prefix_cache_hits`` must stay at zero on every instance, and the connector's
``vllm:external_prefix_cache_hits`` at zero on every instance but the decode instance of the
disaggregated design (whose loads are the KV hand-over itself). A run that breaks this fails
loudly (:func:`check_no_reuse`). Counters are read before and after each run and their
differences go into the run's records.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request

from experiments.validation.errors import StepError

#: counter base names (Prometheus adds ``_total``); summed over their label sets
COUNTERS = (
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:external_prefix_cache_queries",
    "vllm:external_prefix_cache_hits",
)


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
