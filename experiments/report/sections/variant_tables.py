"""The tables of variants the variant sections share: each design's max rate under the SLO with
the default settings and under each variant (``variants.csv``), and the headline ratios under each
variant (``variant_ratios.csv``), with their changes from the default."""

from __future__ import annotations

import pandas as pd

from experiments.report.describe import held_text, made_by, vs_display
from experiments.report.format import NONE_NOTE, config_text, md_rows, num, pct, truthy
from experiments.report.plotting import Figures, hue_order


def rate_cell(r) -> str:
    """A variant's max rate and its change; ``none``: no rate of the search grid met the SLO."""
    if pd.isna(r.get("max_rate")):
        return "none"
    return f"{num(r['max_rate'])} ({pct(r['change'])})"


def variant_cell(r) -> str:
    """A variant's max-rate cell: ``-`` (no row), ``(n/a)`` after the rate where the variant
    does not change the design, else the rate and its change (:func:`rate_cell`)."""
    if r is None:
        return "-"
    if "applies" in r.index and not truthy(r["applies"]):
        return f"{num(r['max_rate'])} (n/a)"
    return rate_cell(r)


def variant_rate_table(s: dict, groups) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Rows (trace, design): the max rate under the SLO with the default settings (the study's own
    search) and under each variant of ``groups`` with its change. Returns (header, rows, data)."""
    v = s["variants"]
    v = v[v["group"].astype(str).isin(list(groups))]
    if v.empty:
        return [], [], pd.DataFrame()
    variants = list(dict.fromkeys(v["variant"]))
    labels = dict(zip(v["variant"], v["variant_label"], strict=False))
    header = ["trace", "design", "config", "default (req/s)"] + [
        f"{labels[x]} (req/s, change)" for x in variants
    ]
    rows = []
    for (_tr, _des), g in v.groupby(["trace", "design"], sort=False):
        first = g.iloc[0]
        cells = [str(first["trace_display"]), str(first["design_display"]), config_text(first),
                 num(first["own_rate"])]  # fmt: skip
        by = {r["variant"]: r for _, r in g.iterrows()}
        cells += [variant_cell(by.get(x)) for x in variants]
        rows.append(cells)
    cols = ("trace", "trace_display", "design", "design_display", "variant", "group",
            "variant_label", "applies", "prompt_machines", "token_machines", "machines",
            "max_rate", "own_rate", "change")  # fmt: skip
    keep = [c for c in cols if c in v.columns]
    return header, rows, v[keep]


def variant_ratio_table(s: dict, groups) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Rows (trace, Splitwise design vs baseline): the headline ratio with the default settings
    and under each variant of ``groups`` (``variant_ratios.csv``), with its change."""
    t = s["variant_ratios"]
    t = t[t["group"].astype(str).isin(list(groups))]
    if t.empty:
        return [], [], pd.DataFrame()
    variants = list(dict.fromkeys(t["variant"]))
    labels = dict(zip(t["variant"], t["variant_label"], strict=False))
    header = ["trace", "comparison", "default"] + [f"{labels[x]} (change)" for x in variants]
    rows = []
    order = {d: i for i, d in enumerate(hue_order(t["design_display"]))}
    keys = t.drop_duplicates(["trace", "design", "vs"])
    keys = keys.assign(_o=[order[d] for d in keys["design_display"]])
    traces = {tr: i for i, tr in enumerate(dict.fromkeys(t["trace"]))}
    keys = keys.assign(_t=[traces[x] for x in keys["trace"]])
    keys = keys.sort_values(["_t", "vs", "_o"], kind="stable")
    for _, k in keys.iterrows():
        g = t[(t["trace"] == k["trace"]) & (t["design"] == k["design"]) & (t["vs"] == k["vs"])]
        by = {r["variant"]: r for _, r in g.iterrows()}
        cells = [str(k["trace_display"]), f"{k['design_display']} / {vs_display(s, k['vs'])}",
                 f"{num(k['default_ratio'])}x"]  # fmt: skip
        for x in variants:
            r = by.get(x)
            cells.append("-" if r is None else f"{num(r['ratio'])}x ({pct(r['change'])})")
        rows.append(cells)
    return header, rows, t


def variant_rate_rows(s: dict, groups) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per trace, the max rate table turned round (a row per variant, a column per design):
    [(trace display, header, rows)], for studies with many variants."""
    v = s["variants"]
    v = v[v["group"].astype(str).isin(list(groups))]
    out = []
    for _tr, g in v.groupby("trace", sort=False):
        designs = list(dict.fromkeys(g["design"]))
        first = {d: g[g["design"] == d].iloc[0] for d in designs}
        header = ["group", "variant"] + [
            f"{first[d]['design_display']} ({config_text(first[d])})" for d in designs
        ]
        rows = [["default", "(the study's own search)"]
                + [num(first[d]["own_rate"]) for d in designs]]  # fmt: skip
        for _v, gv in g.groupby("variant", sort=False):
            by = {r["design"]: r for _, r in gv.iterrows()}
            cells = [str(gv["group"].iloc[0]), str(gv["variant_label"].iloc[0])]
            cells += [variant_cell(by.get(d)) for d in designs]
            rows.append(cells)
        out.append((str(g["trace_display"].iloc[0]), header, rows))
    return out


def variant_block(
    figs: Figures, s: dict, groups, tag: str, what: str, ratios: bool = True
) -> list[str]:
    h1, r1, d1 = variant_rate_table(s, groups)
    h2, r2, d2 = variant_ratio_table(s, groups) if ratios else ([], [], pd.DataFrame())
    md = []
    if r1:
        figs.csv(d1, f"{s['slug']}_{tag}_rates")
        md += [
            f"Max rate under the SLO (req/s) of each design {what}: {held_text(s)}; change: "
            "over the default max rate; `n/a`: the variant does not change this design (the "
            "default holds); " + NONE_NOTE + " " + made_by(s, "variants"),
            "",
            md_rows(h1, r1, [False, False, False] + [True] * (len(h1) - 3)),
            "",
        ]
    if r2:
        figs.csv(d2, f"{s['slug']}_{tag}_ratios")
        md += [
            "Headline ratios (Splitwise max rate / baseline max rate at the same budget) under "
            "each variant, beside the default; change: over the default ratio. "
            + made_by(s, "variant_ratios"),
            "",
            md_rows(h2, r2, [False, False] + [True] * (len(h2) - 2)),
            "",
        ]
    return md
