"""A study's figures (throughput per design at each budget, latency CDFs, SLO attainment vs
rate, the provisioning heatmap), the runs' latency CDFs, and the comparison of several studies.
Each figure's data goes beside it as CSV (the tests read those)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report.plotting import (
    METRIC_LABEL,
    OKABE_ITO,
    Figures,
    hue_order,
    line_facets,
    log_axis,
    palette,
    style,
)

#: heatmap cell states: (code, label, colour); simulated cells dark, inferred ones light
HEAT_STATES = (
    ("met/simulated", "SLO met (simulated)", OKABE_ITO["blue"]),
    ("met/inferred", "SLO met (inferred)", OKABE_ITO["sky"]),
    ("missed/simulated", "SLO missed (simulated)", OKABE_ITO["vermillion"]),
    ("missed/inferred", "SLO missed (inferred)", "#F2B48C"),  # a light tint of vermillion
    ("failed/simulated", "point failed (error)", OKABE_ITO["grey"]),
)


def fig_budget_bars(figs: Figures, budget: pd.DataFrame, name: str) -> str | None:
    """Highest SLO-meeting rate of each design at each budget, one panel per trace."""
    if budget.empty or budget["max_rate"].isna().all():
        return None
    plt, sns = style()
    keep = ["trace_display", "budget", "design_display", "max_rate", "throughput_rps"]
    keep += [c for c in ("cost_per_hour", "power_w") if c in budget.columns]
    data = budget[keep].copy()
    g = sns.catplot(
        errorbar=None,
        data=data,
        kind="bar",
        x="design_display",
        y="max_rate",
        hue="budget",
        col="trace_display",
        height=3.2,
        aspect=1.5,
        sharey=False,
        palette=[OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["green"], OKABE_ITO["purple"]][
            : data["budget"].nunique()
        ],
    )
    g.set_axis_labels("", "max rate under SLO (req/s)")
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    return figs.save(g.figure, f"{name}_throughput", data)


def slo_marks(slo: dict | None, metrics) -> pd.DataFrame:
    """Rows (metric, quantile, slowdown_limit): where the SLO's limits apply on a CDF."""
    rows = []
    if not slo:
        return pd.DataFrame(rows)
    pcts = list(slo.get("percentiles") or [])
    for m in metrics:
        lims = slo.get(m.removesuffix("_s")) or []
        for p, lim in zip(pcts, lims, strict=False):
            rows.append(
                {"metric": METRIC_LABEL.get(m, m), "quantile": float(p) / 100.0, "limit": lim}
            )
    return pd.DataFrame(rows)


def _draw_slo_marks(g, marks: pd.DataFrame) -> None:
    """A dotted line at each percentile the SLO judges, labelled with its slowdown limit."""
    if marks.empty:
        return
    for ax in g.axes.flat:
        title = ax.get_title()
        for _, m in marks[marks["metric"] == title].iterrows():
            ax.axhline(m["quantile"], color="k", lw=0.7, ls=":", zorder=0)
            ax.annotate(
                f"P{100 * m['quantile']:g} <= {m['limit']:g}x ref",
                xy=(0.02, m["quantile"]),
                xycoords=("axes fraction", "data"),
                xytext=(0, 2),
                textcoords="offset points",
                fontsize=6,
                va="bottom",
            )


def fig_cdfs(
    figs: Figures,
    lat: pd.DataFrame,
    budget: pd.DataFrame,
    name: str,
    trace: str,
    slo: dict | None = None,
) -> str | None:
    """TTFT / TBT / E2E CDFs of each design at its best iso-power configuration and rate, with
    the SLO's percentile limits marked."""
    if lat.empty:
        return None
    d = lat[(lat["trace"] == trace) & (lat["rate"] == lat["best_rate"])].copy()
    if "iso-power" in set(budget.get("budget", [])):
        d = d[d["budgets"].astype(str).str.contains("iso-power")]
    d = d.dropna(subset=["value_s"])
    if d.empty:
        return None
    label = "design_display" if "design_display" in d.columns else "design"
    metrics = [k for k in ("ttft_s", "tbt_s", "e2e_s") if k in set(d["metric"])]
    d = d[[label, "metric", "quantile", "value_s"]].rename(columns={label: "design"})
    style()
    d["metric"] = d["metric"].map(METRIC_LABEL).fillna(d["metric"])
    cols = [METRIC_LABEL[k] for k in metrics]
    g = line_facets(
        d,
        x="value_s",
        y="quantile",
        hue="design",
        col="metric",
        labels=("latency (s)", "CDF"),
        hue_order=hue_order(d["design"]),
        palette=palette(d["design"]),
        col_order=cols,
    )
    g.legend.set_title("design")
    log_axis(g.axes.flat, "x")
    marks = slo_marks(slo, metrics)
    _draw_slo_marks(g, marks)
    data = pd.concat(
        [d.assign(kind="cdf"), marks.assign(kind="slo_limit", design="")], ignore_index=True
    )
    return figs.save(g.figure, f"{name}_{trace}_cdf", data)


def fig_slo_vs_rate(
    figs: Figures, points: pd.DataFrame, budget: pd.DataFrame, name: str, trace: str
) -> str | None:
    """Worst SLO slowdown / limit vs request rate at each design's best iso-power config."""
    if points.empty or budget.empty:
        return None
    b = budget[(budget["trace"] == trace)]
    if "iso-power" in set(b["budget"]):
        b = b[b["budget"] == "iso-power"]
    rows = []
    for _, r in b.iterrows():
        if pd.isna(r["machines"]):
            continue
        p = points[
            (points["trace"] == trace)
            & (points["design"] == r["design"])
            & (points["task"] == "budget")
        ]
        if pd.notna(r["prompt_machines"]):
            p = p[
                (p["prompt_machines"] == r["prompt_machines"])
                & (p["token_machines"] == r["token_machines"])
            ]
        else:
            p = p[p["machines"] == r["machines"]]
        for _, q in p.iterrows():
            rows.append(
                {
                    "design": r["design_display"],
                    "rate": q["rate"],
                    "slo_worst_ratio": q["slo_worst_ratio"],
                    "slo_met": q["slo_met"],
                }
            )
    d = pd.DataFrame(rows).dropna()
    if d.empty:
        return None
    d = d.drop_duplicates().sort_values(["design", "rate"])
    plt, sns = style()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.lineplot(
        estimator=None,
        errorbar=None,
        data=d,
        x="rate",
        y="slo_worst_ratio",
        hue="design",
        marker="o",
        ax=ax,
        hue_order=hue_order(d["design"]),
        palette=palette(d["design"]),
    )
    ax.axhline(1.0, color="k", lw=1, ls="--")
    log_axis([ax], "y")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7, title="design")
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("worst slowdown / SLO limit (<= 1: met)")
    ax.set_title(f"SLO attainment vs rate ({trace}, best iso-power config)")
    return figs.save(fig, f"{name}_{trace}_slo_vs_rate", d)


def heatmap_cells(heat: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """The heatmap's cells with ``status`` (met / missed / failed) and ``source`` (simulated /
    inferred by monotonicity). A cell failed when its own simulation did: the heatmap's
    ``status`` or ``error`` column where it has one, or the points table's ``error`` at that
    design, trace, configuration and rate."""
    d = heat.copy()
    sim = d["evaluated"].astype(bool) if "evaluated" in d.columns else pd.Series(True, d.index)
    failed = pd.Series(False, index=d.index)
    if "status" in d.columns:
        failed |= d["status"].astype(str).isin(["failed", "error"])
    if "error" in d.columns:
        failed |= d["error"].notna() & (d["error"].astype(str) != "")
    need = {"design", "trace", "prompt_machines", "token_machines", "rate", "error"}
    if need <= set(points.columns) and {"design", "trace"} <= set(d.columns):
        # the same (design, trace, configuration, rate) is the same cached simulation, whichever
        # search looked at it
        bad = points[points["error"].notna() & (points["error"].astype(str) != "")]
        keys = {
            (r["design"], r["trace"], int(r["prompt_machines"]), int(r["token_machines"]),
             float(r["rate"]))
            for _, r in bad.iterrows()
            if pd.notna(r["prompt_machines"]) and pd.notna(r["token_machines"])
        }  # fmt: skip
        failed |= pd.Series(
            [
                (r["design"], r["trace"], int(r["prompt"]), int(r["token"]), float(r["rate"]))
                in keys
                for _, r in d.iterrows()
            ],
            index=d.index,
        )
    met = d["slo_met"].astype(str).str.lower().isin(["true", "1", "1.0"])
    d["status"] = np.where(failed, "failed", np.where(met, "met", "missed"))
    d["source"] = np.where(sim | failed, "simulated", "inferred")
    d["cost_if_met"] = np.where(d["status"] == "met", d["cost_per_hour"], np.nan)
    return d


def fig_heatmap(figs: Figures, heat: pd.DataFrame, points: pd.DataFrame, name: str):
    """SLO met / missed / failed (simulated cells dark and dotted, inferred ones light) over
    (prompt, token) machine counts, and the cost of the cells that meet it. Returns (figure path,
    cells) or (None, None)."""
    if heat.empty:
        return None, None
    plt, sns = style()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    d = heatmap_cells(heat, points)
    codes = {k: i for i, (k, _, _) in enumerate(HEAT_STATES)}
    d["state"] = d["status"] + "/" + d["source"]
    d["code"] = d["state"].map(codes)
    grid = d.pivot(index="token", columns="prompt", values="code").astype(float).iloc[::-1]
    src = d.pivot(index="token", columns="prompt", values="source").iloc[::-1]
    cost = d.pivot(index="token", columns="prompt", values="cost_if_met").iloc[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    cmap = ListedColormap([c for _, _, c in HEAT_STATES])
    annot = src.apply(lambda col: col.map({"simulated": "•", "inferred": ""}))
    sns.heatmap(
        grid,
        ax=axes[0],
        cmap=cmap,
        vmin=-0.5,
        vmax=len(HEAT_STATES) - 0.5,
        cbar=False,
        linewidths=0.5,
        annot=annot.to_numpy(),
        fmt="",
        annot_kws={"color": "white", "fontsize": 14},
    )
    present = set(d["state"])
    axes[0].legend(
        handles=[Patch(color=c, label=lab) for k, lab, c in HEAT_STATES if k in present],
        bbox_to_anchor=(0.5, -0.18),
        loc="upper center",
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    axes[0].set_title("SLO per configuration (• simulated; others inferred)")
    if cost.notna().to_numpy().any():
        sns.heatmap(
            cost,
            ax=axes[1],
            cmap="viridis",
            annot=True,
            fmt=".0f",
            linewidths=0.5,
            cbar_kws={"label": "$/h"},
            annot_kws={"fontsize": 6},
        )
    else:
        sns.heatmap(cost.fillna(0.0), ax=axes[1], cmap=ListedColormap(["white"]), cbar=False)
        axes[1].text(0.5, 0.5, "no configuration meets the SLO", ha="center", va="center",
                     transform=axes[1].transAxes)  # fmt: skip
    axes[1].set_title("cost of SLO-meeting configurations ($/h)")
    for ax in axes:
        ax.set_xlabel("prompt machines")
        ax.set_ylabel("token machines")
    r = heat.iloc[0]
    fig.suptitle(f"{r['design_display']} on {r['trace_display']} at {r['rate']:g} req/s")
    out = d.drop(columns=["code"])
    return figs.save(fig, f"{name}_heatmap", out), out


def run_cdf_data(runs: list[dict], labels: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Each run's TTFT / TBT / E2E quantiles at the study's levels, by the study's definitions
    (replay.metrics.weighted_percentiles; TBT over every token gap). Returns (rows, the TBT
    definitions used)."""
    from experiments.report.inputs import run_tbt
    from experiments.study.tables import QUANTILE_LEVELS
    from replay.metrics import weighted_percentiles

    qs = [100.0 * q for q in QUANTILE_LEVELS]
    frames, defs = [], []
    for r, name in zip(runs, labels, strict=True):
        req = r["requests"]
        done = req["e2e_s"].notna().to_numpy()
        tv, tw, tdef = run_tbt(r)
        defs.append(tdef)
        for key, (v, w) in (
            ("ttft_s", (req["ttft_s"].to_numpy(dtype=float)[done], None)),
            ("tbt_s", (tv, tw)),
            ("e2e_s", (req["e2e_s"].to_numpy(dtype=float)[done], None)),
        ):
            if len(v) == 0:
                continue
            pct = weighted_percentiles(v, w, qs)
            frames.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "metric": METRIC_LABEL[key],
                        "quantile": list(QUANTILE_LEVELS),
                        "value_s": [pct[f"p{x:g}"] for x in qs],
                        "definition": tdef if key == "tbt_s" else "per request",
                    }
                )
            )
    d = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return (d.dropna(subset=["value_s"]) if not d.empty else d), defs


def fig_run_cdfs(
    figs: Figures, runs: list[dict], labels: list[str], slo: dict | None = None
) -> tuple[str | None, list[str]]:
    """TTFT / TBT (token-weighted) / E2E CDFs of every run, the SLO's percentiles marked."""
    d, defs = run_cdf_data(runs, labels)
    if d.empty:
        return None, defs
    style()
    metrics = [k for k in ("ttft_s", "tbt_s", "e2e_s") if METRIC_LABEL[k] in set(d["metric"])]
    g = line_facets(
        d,
        x="value_s",
        y="quantile",
        hue="run",
        col="metric",
        labels=("latency (s)", "CDF"),
        drawstyle="steps-post",
        col_order=[METRIC_LABEL[k] for k in metrics],
    )
    log_axis(g.axes.flat, "x")
    marks = slo_marks(slo, metrics)
    _draw_slo_marks(g, marks)
    data = pd.concat(
        [d.assign(kind="cdf"), marks.assign(kind="slo_limit", run="")], ignore_index=True
    )
    return figs.save(g.figure, "runs_cdf", data), defs


def compare_table(studies: list[dict]) -> pd.DataFrame:
    """One row per (trace, budget, design) and study: the highest SLO-meeting rate, the
    measured throughput there, and the ratio to each baseline, each study labelled by what sets
    it apart (its overrides)."""
    from experiments.study.tables import HEADLINE_BASELINES

    rows = []
    for s in studies:
        b = s["budget"]
        if b.empty:
            continue
        for _, r in b.iterrows():
            rows.append(
                {
                    "study": s["label"],
                    "trace_display": r.get("trace_display", r["trace"]),
                    "budget": r["budget"],
                    "design_display": r.get("design_display", r["design"]),
                    "max_rate": r.get("max_rate"),
                    "throughput_rps": r.get("throughput_rps"),
                    **{c: r.get(c) for c in (f"max_rate_vs_{bl}" for bl in HEADLINE_BASELINES)},
                }
            )
    return pd.DataFrame(rows)


def fig_compare(figs: Figures, table: pd.DataFrame) -> str | None:
    """Max rate under SLO per design, one bar per study, a panel per (budget, trace)."""
    if table.empty or table["max_rate"].isna().all():
        return None
    plt, sns = style()
    d = table.copy()
    d["panel"] = d["trace_display"].astype(str) + ", " + d["budget"].astype(str)
    studies = list(dict.fromkeys(d["study"]))
    g = sns.catplot(
        errorbar=None,
        data=d,
        kind="bar",
        x="design_display",
        y="max_rate",
        hue="study",
        hue_order=studies,
        col="panel",
        col_wrap=min(2, d["panel"].nunique()),
        height=3.2,
        aspect=1.5,
        sharey=False,
        palette=sns.color_palette("colorblind", len(studies)),
    )
    g.set_axis_labels("", "max rate under SLO (req/s)")
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, title="study")
    return figs.save(g.figure, "studies_compare", d)
