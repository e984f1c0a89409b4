"""Variants and mismatches: each design's ``study.variant_budget`` configuration under changed
settings (:mod:`experiments.variants`) or served another trace. Their tasks are budget tasks
(``study.reprovision``) or fixed ones; their rows carry the latencies at the variant's own max
rate and at the default's, and the headline ratios under each variant."""

from __future__ import annotations

from experiments.study.kinds.rows import prefix_columns, row_metrics


def variant_metrics(res: dict, best, m: dict) -> dict:
    """Latencies and prefix-cache counters of a variant at its max rate, and (a fixed
    configuration) at the default's max rate: the same offered load as the default."""
    out = {
        "ttft_p50_s": (m.get("ttft_s") or {}).get("p50"),
        "ttft_p99_s": (m.get("ttft_s") or {}).get("p99"),
    }
    src = res.get("source_rate")
    if best and src is not None:
        a = row_metrics(res["points"], best, src)
        out.update(
            {
                "at_source_rate_slo_met": a.get("slo_met") if a else None,
                "at_source_rate_ttft_p50_s": (a.get("ttft_s") or {}).get("p50"),
                "at_source_rate_ttft_p99_s": (a.get("ttft_s") or {}).get("p99"),
                "at_source_rate_throughput_rps": a.get("throughput_rps"),
                **{f"at_source_rate_{k}": v for k, v in prefix_columns(a).items()},
            }
        )
    return out


def add_own_rate(rows: list[dict], budget_rows: list[dict]) -> None:
    """``own_rate``: the design's max rate in the study's own search of the row's trace and
    budget (the default settings); ``change``: the row's max rate over it, minus 1."""
    own = {(b["trace"], b["design"], b["budget"]): b["max_rate"] for b in budget_rows}
    for r in rows:
        o = own.get((r["trace"], r["design"], r["budget"]))
        r["own_rate"] = o
        r["change"] = r["max_rate"] / o - 1.0 if o and r.get("max_rate") is not None else None


def variant_ratios(variant_rows: list[dict], budget_rows: list[dict], st) -> list[dict]:
    """The headline ratios under each variant: every Splitwise design's max rate over each
    baseline design's (the headline ones first), beside the same ratio with the default
    settings (the study's own search at ``variant_budget``) and their relative change."""
    from experiments.study.tables import HEADLINE_BASELINES

    own = {
        (b["trace"], b["design"]): b["max_rate"]
        for b in budget_rows
        if b["budget"] == st.variant_budget
    }
    rate = {(r["variant"], r["trace"], r["design"]): r["max_rate"] for r in variant_rows}
    # the headline baselines first, then any other baseline design of the study
    others = sorted({r["design"] for r in variant_rows if r["kind"] == "baseline"})
    baselines = [*HEADLINE_BASELINES, *(b for b in others if b not in HEADLINE_BASELINES)]
    out = []
    for v in dict.fromkeys(r["variant"] for r in variant_rows):
        for r in variant_rows:
            if r["variant"] != v or r["kind"] != "splitwise":
                continue
            for bl in baselines:
                if (v, r["trace"], bl) in rate:
                    out.append(_ratio_row(r, bl, rate[(v, r["trace"], bl)], own))
    return out


def _ratio_row(r: dict, bl: str, den, own: dict) -> dict:
    """Variant row ``r``'s max rate over baseline ``bl``'s (``den``), and the default's."""
    num = r["max_rate"]
    n0, d0 = own.get((r["trace"], r["design"])), own.get((r["trace"], bl))
    ratio = num / den if num is not None and den else None
    ratio0 = n0 / d0 if n0 is not None and d0 else None
    return {
        "variant": r["variant"],
        "group": r["group"],
        "variant_label": r["variant_label"],
        "trace": r["trace"],
        "trace_display": r["trace_display"],
        "design": r["design"],
        "design_display": r["design_display"],
        "vs": bl,
        "ratio": ratio,
        "default_ratio": ratio0,
        "change": ratio / ratio0 - 1.0 if ratio is not None and ratio0 else None,
    }
