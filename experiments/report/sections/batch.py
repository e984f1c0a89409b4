"""Batch jobs (``batch.csv``): throughput per dollar and per kW with no latency SLO."""

from __future__ import annotations

import pandas as pd

from experiments.report import variant_figures as vf
from experiments.report.describe import made_by
from experiments.report.format import config_text, md_rows, num, truthy
from experiments.report.plotting import Figures


def batch_table(batch: pd.DataFrame) -> pd.DataFrame:
    """Per (trace, design): the configuration with the most requests per dollar, the one with the
    most req/s per kW (``best_*`` flags of batch.csv), and the SLO search's configuration."""
    rows = []
    for (_tr, _des), g in batch.groupby(["trace", "design"], sort=False):
        first = g.iloc[0]
        row = {k: first[k] for k in ("trace", "trace_display", "design", "design_display")}
        row["offered_rate"] = first["offered_rate"]
        row["configs"] = len(g)
        for tag, flag in (("dollar", "best_requests_per_dollar"), ("kw", "best_rps_per_kw"),
                          ("slo", "slo_config")):  # fmt: skip
            hit = g[g[flag].map(truthy)]
            r = hit.iloc[0] if len(hit) else None
            row[f"{tag}_config"] = None if r is None else config_text(r)
            for k in ("throughput_rps", "requests_per_dollar", "rps_per_kw", "cost_per_hour",
                      "power_w", "saturated"):  # fmt: skip
                row[f"{tag}_{k}"] = None if r is None or k not in r.index else r[k]
        rows.append(row)
    return pd.DataFrame(rows)


def batch_section(figs: Figures, s: dict) -> list[str]:
    batch = s["batch"]
    if batch.empty:
        return []
    name = s["slug"]
    t = batch_table(batch)
    figs.csv(t, f"{name}_batch_table")
    over = s["meta"]["study"].get("batch_overload")
    md = [
        "### Batch jobs: throughput per dollar and per kW, no latency SLO",
        "",
        "No SLO, completions only: every configuration offered "
        + (f"{over:g}x" if isinstance(over, (int, float)) else "a multiple of")
        + " the design's max rate under the SLO (saturating; `saturated`: completions fell short "
        "of the offered rate by 5% or more, else the throughput is a lower bound of capacity), "
        "on evenly spaced configurations of the budget's frontier plus the SLO search's own. "
        "Requests per dollar: completions per hour / ($/h); per kW: completions per second / "
        "provisioned kW. " + made_by(s, "batch"),
        "",
    ]
    rows = []
    for _, r in t.iterrows():
        rows.append(
            [
                str(r["trace_display"]),
                str(r["design_display"]),
                str(r["dollar_config"] or "-"),
                num(r["dollar_requests_per_dollar"], ",.0f"),
                num(r["dollar_throughput_rps"]),
                str(r["kw_config"] or "-"),
                num(r["kw_rps_per_kw"], ".3f"),
                str(r["slo_config"] or "-"),
                num(r["slo_requests_per_dollar"], ",.0f"),
                num(r["slo_rps_per_kw"], ".3f"),
            ]
        )
    md += [
        md_rows(
            [
                "trace",
                "design",
                "best per $: config",
                "requests / $",
                "req/s",
                "best per kW: config",
                "req/s / kW",
                "SLO config",
                "requests / $",
                "req/s / kW",
            ],
            rows,
            [False, False, False, True, True, False, True, False, True, True],
        ),  # fmt: skip
        "",
    ]
    long = []
    for _, r in t.iterrows():
        for metric, best, slo in (
            ("requests per $", "dollar_requests_per_dollar", "slo_requests_per_dollar"),
            ("req/s per kW", "kw_rps_per_kw", "slo_rps_per_kw"),
        ):
            cfg_best = r["dollar_config"] if metric == "requests per $" else r["kw_config"]
            for conf, col, cfg in (("best for the metric", best, cfg_best),
                                   ("SLO search's", slo, r["slo_config"])):  # fmt: skip
                long.append({"trace": r["trace_display"], "design": r["design_display"],
                             "metric": metric, "configuration": conf, "config": cfg,
                             "value": r[col]})  # fmt: skip
    fig = vf.fig_batch(figs, pd.DataFrame(long), name)
    if fig:
        md += [
            "Requests per dollar and req/s per kW: each design's best configuration for the "
            "metric beside the SLO search's configuration.",
            "",
            f"![batch jobs]({fig})",
            "",
        ]
    return md
