"""A study's iso-throughput section: for each target rate, the cheapest and the lowest-power
configuration of each design that meets the SLO, with cost and power ratios to the headline
baselines (``iso_throughput.csv``)."""

from __future__ import annotations

from common.units import w_to_kw
from experiments.report.describe import HEADLINE_BASELINES, design_display
from experiments.report.format import config_text, md_table
from experiments.report.plotting import Figures


def _short(baseline: str) -> str:
    """``Baseline-A100`` -> ``A100`` (the column headers' short name of a baseline)."""
    return design_display(baseline).split("-", 1)[-1]


def iso_throughput_section(figs: Figures, s: dict) -> list[str]:
    t = s["iso_throughput"]
    if t.empty:
        return []
    md = [
        "### Iso-throughput",
        "",
        "For a target rate: the cheapest and the lowest-power configuration of each "
        "design that meets the SLO, with cost and power ratios to the baselines.",
        "",
    ]
    tt = t.copy()
    tt["config"] = [config_text(r) for _, r in tt.iterrows()]
    tt["power_kw"] = w_to_kw(tt["power_w"])
    cols = [
        ("design_display", "design", ""),
        ("config", "config", ""),
        ("cost_per_hour", "cost ($/h)", ",.0f"),
        ("power_kw", "power (kW)", ".1f"),
    ]
    for metric, what in (("cost_per_hour", "cost"), ("power_w", "power")):
        cols += [
            (f"{metric}_vs_{bl}", f"{what} x {_short(bl)}", ".2f") for bl in HEADLINE_BASELINES
        ]
    for (tr, rate), grp in tt.groupby(["trace_display", "rate"], sort=False):
        ch = grp[grp["objective"] == "cheapest"]
        lp = grp[grp["objective"] == "lowest_power"]
        same = list(ch["config"]) == list(lp["config"])
        parts = (
            [("cheapest (also the lowest power)", ch)]
            if same
            else [("cheapest", ch), ("lowest power", lp)]
        )
        for title, sub in parts:
            md += [f"**{tr} trace at {rate:g} req/s, {title}**", "", md_table(sub, cols), ""]
    return md
