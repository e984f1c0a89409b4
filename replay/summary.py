"""The replay summary: one typed dataclass, built by one function, read by every output.

:func:`build_summary` computes every number of a replay from its records (request table,
iteration spans, gaps) with the metric definitions of :mod:`replay.metrics`, the SLO of
:mod:`replay.slo` and the energy model below. ``summary.json`` (:meth:`ReplaySummary.to_dict`),
the printed table (:func:`format_summary`) and the study's point result
(``experiments.point.summarize``) all read this object.

Energy: every recorded span is busy time at the phase's power (a prefill or mixed iteration at
``prefill_power(prompt tokens)``, a decode span at ``decode_power(batch size)``), the rest of the
run (0 to the last event) at ``idle_power_w``, per instance.

Context policy: ``context`` says how many requests the trace's context-window policy changed
(``clipped``, ``clipped_tokens``: tokens removed) or dropped (``rejected``, ``rejected_tokens``)
before the replay; it comes with the trace table (``traces.transforms.prepare``'s info).

Prefix caching (``scheduler.prefix_caching``): ``prefix_cache`` holds the caches' counters summed
over instances: ``block_hit_rate`` (leading cached blocks found / blocks looked up),
``request_hit_rate`` (prefills that found >= 1 block / prefills looked up), ``saved_tokens``
(prompt tokens not recomputed) and ``saved_fraction`` (of the prompt tokens of every prefill
started), ``transfer_saved_tokens`` (context the KV transfers did not send), and the TTFT of
requests that hit against those that missed (``ttft_s_hit`` / ``ttft_s_miss``). The effect on
TTFT and throughput against caching off is a comparison of two replays (the study
``mooncake-prefix``). With every prefix-caching option off, ``prefix_cache`` and those options
are left out of summary.json, so results without the feature are byte-identical to before it.

Serving component (:mod:`replay.serving`): ``serving`` holds its terms when any is set (left out
of summary.json while every term is zero, as is ``scheduler.vllm.num_gpu_blocks`` while null, and
the prompt machines' ``prompt_whole_prompts`` / ``prompt_max_num_batched_tokens`` while unset).

Extrapolation: ``extrapolated`` lists what the run asked of its phase models beyond their
measured range (a prompt longer than the longest measured, a context per request longer than
measured, ...: ``PhaseModel.range_notes``), each with what the model then assumes (the fitted
quadratic attention term continued; decode linear per context token). Left out of summary.json
when empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from common.jsonsafe import jsonable
from common.units import joules_to_kwh, w_to_kw
from replay.metrics import PERCENTILES, request_summary, span_gaps, weighted_percentiles
from replay.slo import SLO

ENERGY_MODEL = (
    "busy spans at prefill_power(prompt tokens) or decode_power(batch), idle_power_w otherwise"
)
NO_CONTEXT = {
    "policy": None, "max_context": None, "clipped": 0, "clipped_tokens": 0, "rejected": 0,
    "rejected_tokens": 0,
}  # fmt: skip


@dataclass
class ReplaySummary:
    """Every number of one replay (seconds, req/s, J, W, $/h). JSON: :meth:`to_dict`."""

    design: dict
    scheduler: dict
    seed: int
    requests: dict  # total, completed, rejected, incomplete
    ttft_s: dict
    tbt_s: dict
    e2e_s: dict
    kv_transfer_s: dict
    tbt_weighting: str
    preemptions: int
    requests_preempted: int
    steady_window_s: list
    throughput_method: str
    throughput_rps: float
    goodput_rps: float
    goodput_definition: str
    slowdown: dict | None = None
    slowdown_reference: str | None = None
    slo: dict | None = None  # name, percentiles, limits, checks, all_ok, worst_ratio
    duration_s: float = 0.0
    energy_j: float = 0.0
    energy_kwh: float = 0.0
    mean_power_w: float | None = None
    energy_model: str = ENERGY_MODEL
    utilization: dict = field(default_factory=dict)
    pool_changes: int = 0
    decode_linearization_max_rel_error: float = 0.0
    max_decode_batch: int = 0
    context: dict = field(default_factory=lambda: dict(NO_CONTEXT))
    trace: dict = field(default_factory=dict)
    display: dict = field(default_factory=dict)
    prefix_cache: dict | None = None  # None: prefix caching off (left out of summary.json)
    extrapolated: list = field(default_factory=list)  # phase-model range notes (empty: left out)
    serving: dict | None = None  # the serving component's terms (None: all zero, left out)

    @property
    def slo_met(self) -> bool:
        return bool(self.slo and self.slo["all_ok"])

    @property
    def slo_worst_ratio(self) -> float:
        return math.inf if not self.slo else float(self.slo["worst_ratio"])

    @property
    def cost_per_hour(self) -> float:
        return float(self.design["cost_per_hour"])

    @property
    def provisioned_power_w(self) -> float:
        return float(self.design["provisioned_power_w"])

    def to_dict(self) -> dict:
        """summary.json: JSON-safe (common.jsonsafe; non-finite numbers become null)."""
        d = jsonable(self)
        if d.get("prefix_cache") is None:
            d.pop("prefix_cache", None)
        if not d.get("extrapolated"):
            d.pop("extrapolated", None)
        if d.get("serving") is None:
            d.pop("serving", None)
        return d


def context_counts(info: dict | None) -> dict:
    """The ``context`` block of a trace's prepare() info (zeros when no policy ran)."""
    c = (info or {}).get("context")
    return {**NO_CONTEXT, **c} if c else dict(NO_CONTEXT)


#: scheduler options of prefix caching, left out of summary.json while off (module doc)
CACHE_OPTIONS = ("prefix_caching", "cache_aware_routing")
CACHE_TRANSFER_OPTIONS = ("uncached_only",)
CACHE_MODEL = (
    "LRU blocks in the KV memory running requests leave free (no sharing with running "
    "requests); a hit computes the uncached suffix: linear terms on the suffix, attention "
    "(sum of squares) on context^2 - prefix^2; at least one prompt token is computed; "
    "recomputes after preemption do not use the cache"
)


def scheduler_dict(scheduler) -> dict:
    """The scheduler options as summary.json shows them (prefix-caching options while off are
    left out: see the module doc)."""
    from dataclasses import asdict

    d = asdict(scheduler)
    v = d.get("vllm")
    if isinstance(v, dict) and v.get("num_gpu_blocks") is None:  # the spec's capacity: as before
        v.pop("num_gpu_blocks", None)
    if isinstance(v, dict):  # a prefill instance's own settings: shown only when set
        if not v.get("prompt_whole_prompts"):
            v.pop("prompt_whole_prompts", None)
        if v.get("prompt_max_num_batched_tokens") is None:
            v.pop("prompt_max_num_batched_tokens", None)
    if not any(d.get(k) for k in CACHE_OPTIONS):
        kv = d.get("kv_transfer") or {}
        if not any(kv.get(k) for k in CACHE_TRANSFER_OPTIONS):
            for k in CACHE_OPTIONS:
                d.pop(k, None)
            for k in CACHE_TRANSFER_OPTIONS:
                kv.pop(k, None)
    return d


def cache_summary(counts: dict, requests: pd.DataFrame) -> dict:
    """The ``prefix_cache`` block of a summary from the engine's cache records."""
    c = counts["counts"]
    cached = counts["cached_tokens"]
    ttft = requests["ttft_s"].to_numpy(dtype=float)
    done = ~np.isnan(requests["e2e_s"].to_numpy(dtype=float))
    started = ~np.isnan(requests["queue_s"].to_numpy(dtype=float))
    prompt = int(requests["prompt_tokens"].to_numpy(dtype=np.int64)[started].sum())
    hit = cached > 0
    lb = c["lookup_blocks"]
    return {
        "model": CACHE_MODEL,
        "block_tokens": counts["block_tokens"],
        "cache_aware_routing": counts["cache_aware_routing"],
        "transfer_uncached_only": counts["transfer_uncached_only"],
        "lookups": c["lookups"],
        "hits": c["hits"],
        "lookup_blocks": lb,
        "hit_blocks": c["hit_blocks"],
        "block_hit_rate": c["hit_blocks"] / lb if lb else None,
        "request_hit_rate": c["hits"] / c["lookups"] if c["lookups"] else None,
        "saved_tokens": c["saved_tokens"],
        "prefill_prompt_tokens": prompt,
        "saved_fraction": c["saved_tokens"] / prompt if prompt else None,
        "inserted_blocks": c["inserted_blocks"],
        "evicted_blocks": c["evicted_blocks"],
        "transfer_saved_tokens": counts["transfer_saved_tokens"],
        "ttft_s_hit": weighted_percentiles(ttft[done & hit]),
        "ttft_s_miss": weighted_percentiles(ttft[done & ~hit]),
    }


def energy_joules(iterations: pd.DataFrame, power_models: list, end_s: float) -> float:
    """Energy of a run, J: each instance's spans at its phase power, the rest idle.

    Per instance, the busy time of each prefill size (prompt tokens) and of each decode batch
    size is summed (numpy sums of that group's spans in record order) and priced at the phase
    power; groups come from one stable sort of the spans (not a mask per group and machine).
    """
    total = 0.0
    if not len(iterations):
        return sum(pm.idle_power_w * max(end_s, 0.0) for pm in power_models) + 0.0
    machine = iterations["machine"].to_numpy()
    nn = iterations["iterations"].to_numpy()
    d0 = iterations["first_s"].to_numpy()
    inc = iterations["increment_s"].to_numpy()
    bb = iterations["batch_size"].to_numpy()
    pt = iterations["prefill_tokens"].to_numpy()
    dur = nn * d0 + inc * nn * (nn - 1) / 2.0
    is_dec = pt <= 0
    key = np.where(is_dec, bb, pt)
    order = np.lexsort((key, is_dec, machine))  # stable: record order within a group
    m_s, d_s, k_s, dur_s = machine[order], is_dec[order], key[order], dur[order]
    n = len(order)
    cut = np.flatnonzero((m_s[1:] != m_s[:-1]) | (d_s[1:] != d_s[:-1]) | (k_s[1:] != k_s[:-1]))
    starts = np.concatenate(([0], cut + 1)).tolist()
    ends = starts[1:] + [n]
    g_m, g_d, g_k = m_s[starts].tolist(), d_s[starts].tolist(), k_s[starts].tolist()
    by_m = np.argsort(machine, kind="stable")  # each instance's spans in record order
    dur_m = dur[by_m]
    ids = np.arange(len(power_models))
    m_first = np.searchsorted(machine[by_m], ids, "left").tolist()
    m_last = np.searchsorted(machine[by_m], ids, "right").tolist()
    gi = 0
    ng = len(starts)
    for idx, pm in enumerate(power_models):
        e = 0.0
        pp, dp = pm.prefill_power, pm.decode_power
        while gi < ng and g_m[gi] == idx:
            a, b = starts[gi], ends[gi]
            s = float(dur_s[a]) if b - a == 1 else float(dur_s[a:b].sum())
            e += (dp(int(g_k[gi])) if g_d[gi] else pp(int(g_k[gi]))) * s
            gi += 1
        busy = float(dur_m[m_first[idx] : m_last[idx]].sum())
        e += pm.idle_power_w * max(end_s - busy, 0.0)
        total += e
    return total


def build_summary(
    *,
    requests: pd.DataFrame,
    iterations: pd.DataFrame,
    request_gaps: pd.DataFrame,
    reference: tuple,
    slo: SLO,
    trim: float,
    design,
    scheduler,
    seed: int,
    end_s: float,
    power_models: list,
    engine: dict,
    trace_info: dict | None = None,
    display: dict | None = None,
    prefix_cache: dict | None = None,
    extrapolated: list | None = None,
    serving: dict | None = None,
) -> ReplaySummary:
    """The one summary of a replay (see the module doc). ``engine``: utilization,
    pool_changes, decode_linearization_max_rel_error, max_decode_batch. ``prefix_cache``: the
    engine's cache records (``replay.simulate``), None when caching is off. ``extrapolated``: the
    notes of phase-model queries beyond the measured range (``replay.simulate._range_notes``)."""
    it = iterations
    gv, gw = span_gaps(
        it["first_s"], it["increment_s"], it["iterations"], it["batch_size"], it["first_excluded"]
    )
    g = request_gaps["gap_s"].to_numpy(dtype=float)
    gaps = (np.concatenate([gv, g]), np.concatenate([gw, np.ones_like(g)]))
    metrics = request_summary(requests, reference, gaps, trim, slo)
    energy = energy_joules(iterations, power_models, end_s)
    return ReplaySummary(
        design=design.describe(),
        scheduler=scheduler_dict(scheduler),
        seed=int(seed),
        **metrics,
        duration_s=end_s,
        energy_j=energy,
        energy_kwh=joules_to_kwh(energy),
        mean_power_w=energy / end_s if end_s > 0 else None,
        **engine,
        context=context_counts(trace_info),
        trace=dict(trace_info or {}),
        display=dict(display or {}),
        prefix_cache=None if prefix_cache is None else cache_summary(prefix_cache, requests),
        extrapolated=list(extrapolated or []),
        serving=serving,
    )


def format_summary(summary: ReplaySummary | dict) -> str:
    """A printable table of a summary (a :class:`ReplaySummary` or a summary.json dict)."""
    if isinstance(summary, ReplaySummary):
        summary = summary.to_dict()
    lines = []
    d = summary.get("design", {})
    if d:
        pools = (
            f"{d.get('prompt_machines')} x {d.get('prompt_spec')}"
            if d.get("kind") == "baseline"
            else f"{d.get('prompt_machines')} x {d.get('prompt_spec')} prompt + "
            f"{d.get('token_machines')} x {d.get('token_spec')} token"
        )
        per = d.get("instances_per_node") or {}
        inst = ", ".join(f"{v} per {k}" for k, v in per.items())
        lines.append(f"design      {d.get('name')} ({d.get('model')}): {pools} nodes")
        lines.append(
            f"instances   tp={d.get('tp')}: {inst}" if inst else f"tp          {d.get('tp')}"
        )
        lines.append(
            f"cost        ${d.get('cost_per_hour') or 0:,.1f}/h   provisioned "
            f"{w_to_kw(d.get('provisioned_power_w') or 0):,.1f} kW"
        )
    r = summary.get("requests", {})
    lines.append(
        f"requests    {r.get('total')} total, {r.get('completed')} completed, "
        f"{r.get('rejected')} rejected, {r.get('incomplete')} incomplete"
    )
    c = summary.get("context") or {}
    if c.get("policy"):
        lines.append(
            f"context     {c.get('policy')} at {c.get('max_context')} tokens: "
            f"{c.get('clipped')} clipped ({c.get('clipped_tokens')} tokens removed), "
            f"{c.get('rejected')} rejected ({c.get('rejected_tokens')} tokens) before the replay"
        )

    def f(x, nd=3):
        return "-" if x is None else f"{x:.{nd}f}"

    lines.append(f"{'metric':<10}{'P50':>10}{'P90':>10}{'P99':>10}  slowdown P50/P90/P99")
    for key, name in (("ttft_s", "ttft"), ("tbt_s", "tbt"), ("e2e_s", "e2e")):
        p = summary.get(key, {})
        sd = (summary.get("slowdown") or {}).get(name)
        sds = "/".join(f(sd.get(f"p{q}"), 2) for q in PERCENTILES) if sd else "-"
        label = f"{name} s" + (" *" if name == "tbt" else "")
        lines.append(
            f"{label:<10}{f(p.get('p50')):>10}{f(p.get('p90')):>10}{f(p.get('p99')):>10}  {sds}"
        )
    lines.append("  * TBT: " + str(summary.get("tbt_weighting", "token-weighted")))
    slo = summary.get("slo")
    if slo:
        bad = [k for k, v in slo["checks"].items() if not v["ok"]]
        worst = slo.get("worst_ratio")
        lines.append(
            f"SLO ({slo.get('name')}) "
            + ("met" if slo["all_ok"] else "MISSED: " + ", ".join(sorted(bad)))
            + f"   worst slowdown / limit {f(worst, 2)}"
        )
    lines.append(
        f"throughput  {f(summary.get('throughput_rps'), 2)} req/s   goodput "
        f"{f(summary.get('goodput_rps'), 2)} req/s (steady window)"
    )
    if "energy_kwh" in summary:
        lines.append(
            f"energy      {f(summary.get('energy_kwh'), 2)} kWh   mean power "
            f"{f(w_to_kw(summary.get('mean_power_w') or 0), 1)} kW"
        )
    u = summary.get("utilization")
    if u:
        lines.append(
            "utilization "
            + "  ".join(f"{k} {f(v, 2)}" for k, v in sorted(u.items()) if v is not None)
        )
    pc = summary.get("prefix_cache")
    if pc:
        lines.append(
            f"prefix cache hit rate {f(pc.get('block_hit_rate'), 3)} of blocks, "
            f"{f(pc.get('request_hit_rate'), 3)} of prefills; saved {pc.get('saved_tokens'):,} "
            f"prefill tokens ({f(pc.get('saved_fraction'), 3)} of "
            f"{pc.get('prefill_prompt_tokens'):,})"
        )
        th, tm = pc.get("ttft_s_hit") or {}, pc.get("ttft_s_miss") or {}
        lines.append(
            f"  ttft P50 hit {f(th.get('p50'))} s / miss {f(tm.get('p50'))} s   routing "
            f"{'cache-aware' if pc.get('cache_aware_routing') else 'jsq'}   kv transfer saved "
            f"{pc.get('transfer_saved_tokens'):,} tokens"
            + (" (uncached only)" if pc.get("transfer_uncached_only") else "")
        )
    for note in summary.get("extrapolated") or []:
        lines.append(f"extrapolated {note}")
    if summary.get("serving"):  # the serving component (replay.serving), where a term is set
        from replay.serving import describe

        lines.append(describe(summary["serving"]))
    kv = summary.get("kv_transfer_s", {})
    lines.append(
        f"kv transfer mean {f(kv.get('mean'), 4)} s, P99 {f(kv.get('p99'), 4)} s   "
        f"preemptions {summary.get('preemptions')}"
    )
    return "\n".join(lines)
