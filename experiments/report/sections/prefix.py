"""Prefix caching (``variants.csv``, groups :data:`~experiments.report.describe.PREFIX_GROUPS`):
hit rate, prefill tokens saved, TTFT and throughput at the default's max rate."""

from __future__ import annotations

import pandas as pd

from experiments.report.describe import PREFIX_GROUPS, made_by, variant_groups
from experiments.report.format import config_text, md_rows, num, truthy
from experiments.report.plotting import Figures
from experiments.report.sections.variant_tables import rate_cell


def prefix_section(figs: Figures, s: dict) -> list[str]:
    """Prefix caching (issue 14): per design and variant, the max rate under the SLO at the
    default's configuration and, at the default's max rate (the same offered load), the block
    hit rate, the share of prompt tokens not recomputed, TTFT and throughput."""
    v = s["variants"]
    if v.empty or not any(g in PREFIX_GROUPS for g in variant_groups(s)):
        return []
    v = v[v["group"].astype(str).isin(PREFIX_GROUPS)]
    b = s["budget"]
    b = b[b["budget"].astype(str) == str(s["meta"]["study"].get("variant_budget", "iso-power"))]
    rows, data = [], []
    for _, r in b.iterrows():  # the default first: no cache (the study's own search)
        data.append({"trace": r["trace"], "design": r["design"], "variant": "default",
                     "max_rate": r["max_rate"]})  # fmt: skip
    lq = s.get("latency_quantiles", pd.DataFrame())

    def ttft(tr, des, rate, q):  # the default's TTFT quantile at its max rate (seconds)
        if lq.empty or rate is None:
            return None
        m = lq[(lq["trace"] == tr) & (lq["design"] == des) & (lq["metric"] == "ttft_s")]
        m = m[(m["rate"] == rate) & ((m["quantile"] - q).abs() < 1e-9)]
        return float(m["value_s"].iloc[0]) if len(m) else None

    for (tr, des), g in v.groupby(["trace", "design"], sort=False):
        d0 = b[(b["trace"] == tr) & (b["design"] == des)]
        own = float(d0["max_rate"].iloc[0]) if len(d0) else None
        thr = d0["throughput_rps"].iloc[0] if len(d0) else None
        name = str(g["design_display"].iloc[0])
        cfg = config_text(g.iloc[0])
        rows.append([name, cfg, "no prefix cache (default)", num(own), "-", "-",
                     num(ttft(tr, des, own, 0.5), ".3f"), num(ttft(tr, des, own, 0.99), ".2f"),
                     num(thr)])  # fmt: skip
        for _, r in g.iterrows():
            if not truthy(r.get("applies", True)):
                continue
            rows.append(
                [
                    name,
                    cfg,
                    str(r["variant_label"]),
                    rate_cell(r),
                    num(r.get("at_source_rate_prefix_hit_rate"), ".1%"),
                    num(r.get("at_source_rate_prefix_saved_fraction"), ".1%"),
                    num(r.get("at_source_rate_ttft_p50_s"), ".3f"),
                    num(r.get("at_source_rate_ttft_p99_s"), ".2f"),
                    num(r.get("at_source_rate_throughput_rps"), ".2f"),
                ]
            )
            data.append({k: r.get(k) for k in v.columns if k in r})
    figs.csv(pd.DataFrame(data), f"{s['slug']}_prefix_cache")
    header = ["design", "configuration", "setting", "max rate (req/s, change)",
              "block hit rate", "prompt tokens saved", "TTFT P50 (s)", "TTFT P99 (s)",
              "throughput (req/s)"]  # fmt: skip
    return [
        "### Prefix caching: hit rate, prefill tokens saved, TTFT and throughput",
        "",
        "Each design at the configuration of the study's own search (no prefix cache); each "
        "setting re-searches the max rate under the SLO there. Hit rate, prompt tokens saved "
        "(not recomputed), TTFT and throughput are at the default's max rate: the same offered "
        "load. The cache: LRU per instance, in the KV memory running requests leave free, "
        "512-token blocks; cache-aware routing sends a request to the prompt instance with the "
        "least pending prompt tokens less its cached prefix. " + made_by(s, "variants"),
        "",
        md_rows(header, rows, [False, False, False] + [True] * 6),
        "",
    ]
