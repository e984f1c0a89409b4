"""Sensitivity (``variant_ratios.csv``, every group not of another section): how far each modelling
assumption swings the headline ratios, as tornado bars with the seeds' noise band of a seeds study
of the same model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report import variant_figures as vf
from experiments.report.describe import (
    has_seeds,
    held_text,
    made_by,
    model_name,
    sensitivity_groups,
    vs_display,
)
from experiments.report.format import NONE_NOTE, md_rows, num, pct
from experiments.report.plotting import Figures, hue_order
from experiments.report.sections.seeds import seed_intervals
from experiments.report.sections.variant_tables import variant_rate_rows, variant_rate_table


def _matching_seeds(s: dict, studies: list[dict]) -> list[dict]:
    return [t for t in studies if t is not s and has_seeds(t) and model_name(t) == model_name(s)]


def seed_changes(seeds: dict) -> pd.DataFrame:
    """Per (trace, design, vs) of a seeds study: every seed's headline ratio relative to seed 0's
    (the study's own search), as ``lo``/``hi`` (min/max, 0 included: seed 0 is a draw too)."""
    iv = seed_intervals(seeds)
    if iv.empty:
        return pd.DataFrame()
    out = iv[["trace", "design", "vs"]].copy()
    out["lo"] = np.minimum(iv["min"] / iv["ratio_seed0"] - 1.0, 0.0)
    out["hi"] = np.maximum(iv["max"] / iv["ratio_seed0"] - 1.0, 0.0)
    return out


def tornado_bars(s: dict, seeds: list[dict]) -> pd.DataFrame:
    """Per (trace, design, vs, assumption group) of a sensitivity study: the lowest and highest
    change of the headline ratio over the group's variants, 0 (the default) included, the
    variants that reach them; then, from a seeds study of the same model, the seeds' band."""
    t = s["variant_ratios"]
    groups = sensitivity_groups(s)
    t = t[t["group"].astype(str).isin(groups)]
    rows = []
    for (tr, des, vs, gr), g in t.groupby(["trace", "design", "vs", "group"], sort=False):
        g = g.dropna(subset=["change"])
        if g.empty:
            continue
        lo_r, hi_r = g.loc[g["change"].idxmin()], g.loc[g["change"].idxmax()]
        rows.append(
            {
                "kind": "variant",
                "trace": tr,
                "trace_display": g["trace_display"].iloc[0],
                "design": des,
                "design_display": g["design_display"].iloc[0],
                "vs": vs,
                "vs_display": vs_display(s, vs),
                "group": gr,
                "lo": min(0.0, float(lo_r["change"])),
                "hi": max(0.0, float(hi_r["change"])),
                "lo_variant": lo_r["variant"] if lo_r["change"] < 0 else "",
                "hi_variant": hi_r["variant"] if hi_r["change"] > 0 else "",
                "min_ratio": float(g["ratio"].min()),
                "max_ratio": float(g["ratio"].max()),
                "default_ratio": g["default_ratio"].iloc[0],
                "source": s["label"],
            }
        )
    d = pd.DataFrame(rows)
    if d.empty:
        return d
    for sd in seeds[:1]:
        ch = seed_changes(sd)
        for _, c in ch.iterrows():
            hit = d[
                (d["trace"] == c["trace"]) & (d["design"] == c["design"]) & (d["vs"] == c["vs"])
            ]
            if hit.empty:
                continue
            h = hit.iloc[0]
            rows.append({**{k: h[k] for k in ("trace", "trace_display", "design", "design_display",
                                               "vs", "vs_display")},
                         "kind": "seed band", "group": "seed", "lo": c["lo"], "hi": c["hi"],
                         "lo_variant": "", "hi_variant": "", "min_ratio": np.nan,
                         "max_ratio": np.nan, "default_ratio": np.nan,
                         "source": sd["label"]})  # fmt: skip
    return pd.DataFrame(rows)


def sensitivity_section(figs: Figures, s: dict, studies: list[dict]) -> list[str]:
    groups = sensitivity_groups(s)
    vr = s["variant_ratios"]
    if not groups or vr.empty:
        return []
    name = s["slug"]
    seeds = _matching_seeds(s, studies)
    bars = tornado_bars(s, seeds)
    md = [
        "### Sensitivity: how far each modelling assumption swings the headline ratios",
        "",
        f"One assumption at a time, {held_text(s)}. " + made_by(s, "variants", "variant_ratios"),
        "",
    ]
    if not bars.empty:
        figs.csv(bars, f"{name}_tornado_bars")
        band = (
            f" Grey band: the spread of the same ratio over the re-sampling seeds of study "
            f"`{seeds[0]['label']}` (its seeds' ratios relative to its seed 0): changes inside "
            "it are within the noise floor. " + made_by(seeds[0], "budget", "variant_ratios")
            if seeds
            else " No seeds study of this model among the inputs: no noise floor is shown."
        )
        for tr in dict.fromkeys(bars["trace"]):
            fig = vf.fig_tornado(figs, bars, name, tr)
            if fig:
                disp = bars.loc[bars["trace"] == tr, "trace_display"].iloc[0]
                md += [
                    f"**{disp} trace.** Per headline comparison (Splitwise design / baseline at "
                    "the same budget), a bar per assumption group from its lowest to its highest "
                    "ratio over the group's variants, as the change from the default ratio (the "
                    "vertical line; the default lies inside every bar); widest on top; a variant "
                    "under which a design meets the SLO at no rate has no ratio and no bar." + band,
                    "",
                    f"![tornado {disp}]({fig})",
                    "",
                ]
    t = vr[vr["group"].astype(str).isin(groups)]
    for _tr, g in t.groupby("trace", sort=False):
        comps = g.drop_duplicates(["design", "vs"])
        order = {d: i for i, d in enumerate(hue_order(comps["design_display"]))}
        comps = comps.assign(_o=[order[x] for x in comps["design_display"]])
        comps = comps.sort_values(["vs", "_o"], kind="stable")
        keys = [(r["design"], r["vs"]) for _, r in comps.iterrows()]
        header = ["group", "variant"] + [
            f"{r['design_display']} / {vs_display(s, r['vs'])}" for _, r in comps.iterrows()
        ]
        rows = [["default", "(the study's own search)"]
                + [f"{num(r['default_ratio'])}x" for _, r in comps.iterrows()]]  # fmt: skip
        for _v, gv in g.groupby("variant", sort=False):
            by = {(r["design"], r["vs"]): r for _, r in gv.iterrows()}
            cells = [str(gv["group"].iloc[0]), str(gv["variant_label"].iloc[0])]
            for k in keys:
                r = by.get(k)
                cells.append("-" if r is None else f"{num(r['ratio'])}x ({pct(r['change'])})")
            rows.append(cells)
        md += [
            f"**{g['trace_display'].iloc[0]} trace: every variant's headline ratio (change "
            "from the default)**",
            "",
            md_rows(header, rows, [False, False] + [True] * len(keys)),
            "",
        ]
    _, _, data = variant_rate_table(s, groups)
    if not data.empty:
        figs.csv(data, f"{name}_sensitivity_rates")
    for disp, header, rows in variant_rate_rows(s, groups):
        md += [
            f"**{disp} trace: each design's max rate under the SLO (req/s, change from the "
            "default; `n/a`: the variant does not change this design)**. " + NONE_NOTE,
            "",
            md_rows(header, rows, [False, False] + [True] * (len(header) - 2)),
            "",
        ]
    return md
