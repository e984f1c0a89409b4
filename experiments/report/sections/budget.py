"""A study's iso-power and iso-cost section: per trace and budget, each design's best
configuration within the budget, the highest rate it sustains under the SLO and its ratios to the
headline baselines (``budget.csv``), and the bar figure of those rates."""

from __future__ import annotations

import pandas as pd

from common.units import w_to_kw
from experiments.report import study_figures as sf
from experiments.report.describe import HEADLINE_BASELINES, design_display
from experiments.report.format import config_text, md_table, num
from experiments.report.plotting import Figures
from experiments.report.sections.engines import own_rows


def headline(b: pd.DataFrame) -> list[str]:
    """One line per trace and budget: the design with the highest sustained rate."""
    out = []
    for (tr, bud), grp in b.groupby(["trace_display", "budget"], sort=False):
        g = grp.dropna(subset=["max_rate"])
        if g.empty:
            continue
        best = g.loc[g["max_rate"].idxmax()]
        ratios = ", ".join(
            f"{num(best.get(f'max_rate_vs_{bl}'))}x {design_display(bl)}"
            for bl in HEADLINE_BASELINES
            if pd.notna(best.get(f"max_rate_vs_{bl}"))
        )
        out.append(
            f"- {tr}, {bud}: {best['design_display']} ({config_text(best)}) sustains "
            f"{best['max_rate']:.1f} req/s" + (f", {ratios}" if ratios else "")
        )
    return out


def _budget_text(b: pd.DataFrame) -> str:
    parts = []
    for _, r in b.drop_duplicates("budget").iterrows():
        lim = []
        if pd.notna(r.get("budget_w")):
            lim.append(f"{w_to_kw(r['budget_w']):,.0f} kW provisioned power")
        if pd.notna(r.get("budget_cost")):
            lim.append(f"${r['budget_cost']:,.0f}/h")
        parts.append(f"{r['budget']} = {' and '.join(lim)}")
    return "; ".join(parts)


def budget_section(figs: Figures, s: dict) -> list[str]:
    b = own_rows(s["budget"])  # other profile sets: the engines section
    if b.empty:
        return []
    md = ["### Iso-power and iso-cost", ""]
    md += headline(b) + [""]
    md += [
        f"Budgets: {_budget_text(b)}. Each design's best configuration within the "
        "budget, the highest request rate it sustains under the SLO (its throughput; "
        "the ratios to the baselines are of this rate), the measured steady-state "
        "completion rate at that point, and the configuration's cost and provisioned "
        "power.",
        "",
    ]
    cols = [
        ("design_display", "design", ""),
        ("config", "config (machines)", ""),
        ("max_rate", "throughput: max rate (req/s)", ".2f"),
        ("throughput_rps", "measured (req/s)", ".2f"),
        ("cost_per_hour", "cost ($/h)", ",.0f"),
        ("power_kw", "power (kW)", ".1f"),
    ]
    cols += [(f"max_rate_vs_{bl}", f"x {design_display(bl)}", ".2f") for bl in HEADLINE_BASELINES]
    bb = b.copy()
    bb["config"] = [config_text(r) for _, r in bb.iterrows()]
    bb["power_kw"] = w_to_kw(bb["power_w"])
    for (tr, bud), grp in bb.groupby(["trace_display", "budget"], sort=False):
        md += [f"**{tr} trace, {bud}**", "", md_table(grp, cols), ""]
    bars = sf.fig_budget_bars(figs, b, s.get("slug", s["meta"]["study"]["name"]))
    if bars:
        md += [f"![max rate per design]({bars})", ""]
    return md
