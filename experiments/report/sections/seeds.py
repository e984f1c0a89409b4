"""Seeds (``budget.csv``, ``variants.csv``, ``variant_ratios.csv``, groups
:data:`~experiments.report.describe.SEED_GROUPS`): the headline ratios and each design's max rate
over re-sampling seeds, median [min, max]."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report.describe import (
    HEADLINE_BASELINES,
    SEED_GROUPS,
    has_seeds,
    held_text,
    made_by,
    model_display,
    model_name,
    vs_display,
)
from experiments.report.format import config_text, md_rows, num
from experiments.report.plotting import Figures, hue_order


def seed_ratios(s: dict) -> pd.DataFrame:
    """Long table of a seeds study's headline ratios: seed 0 (the study's own search at
    ``variant_budget``: ``budget.csv``'s ``max_rate_vs_<baseline>``) and each seed variant
    (``variant_ratios.csv``'s ``ratio``)."""
    st = s["meta"]["study"]
    bud = st.get("variant_budget", "iso-power")
    seed0 = (s["meta"].get("search") or {}).get("seed", 0)
    seed_of = {}
    for v in st.get("variants") or []:
        if isinstance(v, dict) and v.get("group") in SEED_GROUPS:
            seed_of[v.get("name")] = (v.get("set") or {}).get("seed")
    rows = []
    b = s["budget"]
    b = b[(b["budget"] == bud) & (b["kind"] == "splitwise")] if not b.empty else b
    for _, r in b.iterrows():
        for bl in HEADLINE_BASELINES:
            col = f"max_rate_vs_{bl}"
            if col not in r.index:
                continue
            rows.append({"trace": r["trace"], "trace_display": r["trace_display"],
                         "design": r["design"], "design_display": r["design_display"], "vs": bl,
                         "variant": "", "seed": seed0, "ratio": r[col]})  # fmt: skip
    vr = s["variant_ratios"]
    vr = vr[vr["group"].astype(str).isin(SEED_GROUPS)] if not vr.empty else vr
    for _, r in vr.iterrows():
        rows.append({"trace": r["trace"], "trace_display": r["trace_display"],
                     "design": r["design"], "design_display": r["design_display"], "vs": r["vs"],
                     "variant": r["variant"], "seed": seed_of.get(r["variant"]),
                     "ratio": r["ratio"]})  # fmt: skip
    return pd.DataFrame(rows)


def seed_intervals(s: dict) -> pd.DataFrame:
    """Per (trace, Splitwise design, baseline): the headline ratio's median, min and max over the
    seeds (seed 0 and every seed variant), the number of seeds with a ratio, and seed 0's."""
    long = seed_ratios(s)
    if long.empty:
        return pd.DataFrame()
    rows = []
    seed0 = (s["meta"].get("search") or {}).get("seed", 0)
    for (tr, des, vs), g in long.groupby(["trace", "design", "vs"], sort=False):
        vals = pd.to_numeric(g["ratio"], errors="coerce").dropna()
        zero = g[g["variant"] == ""]["ratio"]
        rows.append(
            {
                "model": model_name(s),
                "model_display": model_display(s),
                "study": s["label"],
                "trace": tr,
                "trace_display": g["trace_display"].iloc[0],
                "design": des,
                "design_display": g["design_display"].iloc[0],
                "vs": vs,
                "vs_display": vs_display(s, vs),
                "seeds": len(vals),
                "seed_list": " ".join(str(int(x)) for x in g.loc[vals.index, "seed"].fillna(-1)),
                "ratio_seed0": zero.iloc[0] if len(zero) else np.nan,
                "median": float(np.median(vals)) if len(vals) else np.nan,
                "min": float(vals.min()) if len(vals) else np.nan,
                "max": float(vals.max()) if len(vals) else np.nan,
                "seed0": seed0,
            }
        )
    out = pd.DataFrame(rows)
    order = {d: i for i, d in enumerate(hue_order(out["design_display"]))}
    traces = {t: i for i, t in enumerate(dict.fromkeys(out["trace"]))}
    out = out.assign(
        _t=[traces[x] for x in out["trace"]], _o=[order[x] for x in out["design_display"]]
    )
    return out.sort_values(["_t", "vs", "_o"], kind="stable").drop(columns=["_t", "_o"])


def interval_text(r) -> str:
    return f"{num(r['median'])}x [{num(r['min'])}, {num(r['max'])}]"


def seeds_section(figs: Figures, s: dict) -> list[str]:
    if not has_seeds(s):
        return []
    iv = seed_intervals(s)
    if iv.empty:
        return []
    name = s["slug"]
    figs.csv(seed_ratios(s), f"{name}_seed_ratios")
    figs.csv(iv, f"{name}_seed_intervals")
    seeds = sorted({int(x) for x in " ".join(iv["seed_list"]).split()})
    md = [
        "### Seeds: the headline ratios over re-sampling seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))}: seed {int(iv['seed0'].iloc[0])} is the study's own "
        "search, the others re-sample every trace (and seed the simulator) anew, "
        f"{held_text(s)}: the interval measures the re-sampling noise of the max rate, not of the "
        "configuration choice. Median [min, max] over the seeds. "
        + made_by(s, "budget", "variants", "variant_ratios"),
        "",
        md_rows(
            [
                "trace",
                "comparison",
                "seeds",
                f"seed {int(iv['seed0'].iloc[0])}",
                "median [min, max]",
            ],
            [
                [
                    str(r["trace_display"]),
                    f"{r['design_display']} / {r['vs_display']}",
                    str(r["seeds"]),
                    f"{num(r['ratio_seed0'])}x",
                    interval_text(r),
                ]
                for _, r in iv.iterrows()
            ],
            [False, False, True, True, True],
        ),  # fmt: skip
        "",
    ]
    return md + _rate_table(s, int(iv["seed0"].iloc[0]))


def _rate_table(s: dict, seed0: int) -> list[str]:
    """Each design's max rate over the seeds (seed 0: budget.csv; the others: variants.csv)."""
    v = s["variants"]
    v = v[v["group"].astype(str).isin(SEED_GROUPS)]
    b = s["budget"]
    b = b[b["budget"] == s["meta"]["study"].get("variant_budget", "iso-power")]
    rows = []
    for _, r in b.iterrows():
        vals = pd.concat(
            [
                pd.Series([r["max_rate"]]),
                v[(v["trace"] == r["trace"]) & (v["design"] == r["design"])]["max_rate"],
            ],
            ignore_index=True,
        ).dropna()
        rows.append([str(r["trace_display"]), str(r["design_display"]), config_text(r),
                     str(len(vals)), num(r["max_rate"]),
                     f"{num(np.median(vals) if len(vals) else np.nan)} "
                     f"[{num(vals.min() if len(vals) else np.nan)}, "
                     f"{num(vals.max() if len(vals) else np.nan)}]"])  # fmt: skip
    if not rows:
        return []
    header = ["trace", "design", "config", "seeds", f"seed {seed0}", "median [min, max]"]
    return [
        "Each design's max rate under the SLO (req/s) over the same seeds:",
        "",
        md_rows(header, rows, [False, False, False, True, True, True]),
        "",
    ]
