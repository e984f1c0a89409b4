"""Row helpers the task kinds share: a configuration's machine columns, a point's result at a
configuration and rate, its prefix-cache columns and SLO attainment."""

from __future__ import annotations


def machine_columns(design, counts) -> dict:
    """``prompt_machines``, ``token_machines`` (None for a one-pool design) and ``machines``
    of a configuration (None: every one None)."""
    f = design.count_fields(counts) if counts else {}
    return {
        "prompt_machines": f.get("prompt_machines"),
        "token_machines": f.get("token_machines"),
        "machines": sum(counts) if counts else None,
    }


def row_metrics(points: list[dict], counts, rate) -> dict:
    """The result of the point at ``counts`` and ``rate`` ({} when not looked at)."""
    for p in points:
        if list(p["counts"]) == list(counts) and p["rate"] == rate:
            return p["result"]
    return {}


def prefix_columns(result: dict) -> dict:
    """Prefix-cache and extrapolation columns of a point result (none where the point ran
    without prefix caching and inside the measured range: those rows keep their columns)."""
    out = {}
    pc = result.get("prefix_cache")
    if pc:
        out["prefix_hit_rate"] = pc.get("block_hit_rate")
        out["prefix_request_hit_rate"] = pc.get("request_hit_rate")
        out["prefix_tokens_saved"] = pc.get("saved_tokens")
        out["prefix_saved_fraction"] = pc.get("saved_fraction")
    if result.get("extrapolated"):
        out["extrapolated"] = "; ".join(result["extrapolated"])
    return out


def slo_attainment(result: dict) -> float | None:
    """Share of steady-state completions within the SLO's per-request limits: goodput over
    throughput (:func:`replay.metrics.summarize` defines both)."""
    thr, good = result.get("throughput_rps"), result.get("goodput_rps")
    return good / thr if thr and good is not None else None
