"""Figures of the dependent studies (issue 13): load curves (SLO attainment and P99 latencies
against load), batch jobs (throughput per dollar and per kW), and the sensitivity tornado (how far
each modelling assumption swings the headline ratios, the seeds' spread as the noise floor).
Each figure's data goes beside it as CSV (:class:`~experiments.report.plotting.Figures`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report.plotting import OKABE_ITO, Figures, hue_order, log_axis, palette, style

#: the load figure's rows: (load.csv column, axis label)
LOAD_METRICS = (
    ("slo_attainment", "SLO attainment (share of requests)"),
    ("slo_worst_ratio", "worst slowdown percentile / its SLO limit"),
    ("ttft_p99_s", "P99 TTFT (s)"),
    ("tbt_p99_s", "P99 TBT (s, token-weighted)"),
    ("e2e_p99_s", "P99 E2E (s)"),
)
_LOAD_YLABEL = (
    "SLO attainment",
    "worst slowdown / limit",
    "P99 TTFT (s)",
    "P99 TBT (s)",
    "P99 E2E (s)",
)
#: the attainment level the load table and figure mark
ATTAINMENT_LEVEL = 0.9


def fig_load(figs: Figures, load: pd.DataFrame, name: str) -> str | None:
    """SLO attainment and P99 TTFT / TBT / E2E against load factor (rate / the design's max rate
    under the SLO), one line per design, a column per trace; the max rate under the SLO (load
    factor 1) dashed, points that miss the SLO crossed, the attainment level dotted."""
    if load.empty:
        return None
    ok = load[load.get("status", pd.Series("ok", index=load.index)).astype(str) != "failed"]
    rows = []
    for col, label in LOAD_METRICS:
        if col not in ok.columns:
            continue
        part = ok[["trace_display", "design_display", "rate", "load_factor", "slo_met", col]]
        part = part.rename(columns={col: "value"}).assign(metric=label)
        rows.append(part)
    d = pd.concat(rows, ignore_index=True).dropna(subset=["value", "load_factor"])
    if d.empty:
        return None
    d["slo_met"] = d["slo_met"].astype(str).str.lower().isin(["true", "1", "1.0"])
    d = d.rename(columns={"trace_display": "trace", "design_display": "design"})
    d = d.sort_values(["trace", "design", "metric", "load_factor"], kind="stable")
    plt, sns = style()
    metrics = [lab for _, lab in LOAD_METRICS if lab in set(d["metric"])]
    traces = list(dict.fromkeys(load["trace_display"]))
    g = sns.relplot(
        data=d,
        kind="line",
        estimator=None,
        errorbar=None,
        x="load_factor",
        y="value",
        hue="design",
        hue_order=hue_order(d["design"]),
        palette=palette(d["design"]),
        row="metric",
        row_order=metrics,
        col="trace",
        col_order=traces,
        marker="o",
        markersize=4,
        facet_kws={"sharex": True, "sharey": "row", "margin_titles": False},
        height=2.4,
        aspect=1.5,
    )
    for (metric, trace), ax in g.axes_dict.items():
        miss = d[(d["metric"] == metric) & (d["trace"] == trace) & ~d["slo_met"]]
        if len(miss):
            ax.scatter(miss["load_factor"], miss["value"], marker="x", color="k", s=22, zorder=5,
                       linewidths=0.9)  # fmt: skip
        ax.axvline(1.0, color="k", lw=1.0, ls="--", zorder=1)
        if metric == LOAD_METRICS[0][1]:
            ax.axhline(ATTAINMENT_LEVEL, color="k", lw=0.7, ls=":", zorder=0)
        if metric == LOAD_METRICS[1][1]:  # the SLO holds up to 1 (all nine percentiles)
            ax.axhline(1.0, color="k", lw=0.7, ls=":", zorder=0)
        ax.set_title(f"{trace}: {metric}", fontsize=8)
    for metric, axes in zip(metrics, g.axes, strict=True):
        if metric not in (LOAD_METRICS[0][1], LOAD_METRICS[1][1]):
            log_axis(list(axes), "y")
        ylab = dict(zip((lab for _, lab in LOAD_METRICS), _LOAD_YLABEL, strict=True))
        axes[0].set_ylabel(ylab[metric])
    g.set_xlabels("load: rate / max rate under the SLO")
    g.legend.set_title("design (x: SLO missed)")
    return figs.save(g.figure, f"{name}_load", d)


def fig_batch(figs: Figures, table: pd.DataFrame, name: str) -> str | None:
    """Requests per dollar and req/s per kW of each design with no SLO: its best configuration
    beside the SLO search's configuration, a column per trace."""
    if table.empty:
        return None
    d = table.dropna(subset=["value"])
    if d.empty:
        return None
    plt, sns = style()
    g = sns.catplot(
        data=d,
        kind="bar",
        errorbar=None,
        x="design",
        y="value",
        hue="configuration",
        hue_order=["best for the metric", "SLO search's"],
        palette=[OKABE_ITO["blue"], OKABE_ITO["orange"]],
        row="metric",
        row_order=list(dict.fromkeys(d["metric"])),
        col="trace",
        col_order=list(dict.fromkeys(d["trace"])),
        order=hue_order(d["design"]),
        sharey="row",
        height=2.6,
        aspect=1.5,
    )
    for (metric, trace), ax in g.axes_dict.items():
        ax.set_title(f"{trace}: {metric}", fontsize=8)
        ax.tick_params(axis="x", rotation=30)
    for metric, axes in zip(g.row_names, g.axes, strict=True):
        axes[0].set_ylabel(metric)
    g.set_xlabels("")
    return figs.save(g.figure, f"{name}_batch", d)


def fig_tornado(figs: Figures, bars: pd.DataFrame, name: str, trace: str) -> str | None:
    """One trace's tornado: a panel per headline comparison (Splitwise design vs baseline), a
    horizontal bar per assumption group from its lowest to its highest headline ratio (the
    default inside), as the change from the default ratio (%); the seeds' spread shaded."""
    d = bars[bars["trace"] == trace]
    var = d[d["kind"] == "variant"]
    if var.empty:
        return None
    plt, _ = style()
    designs = hue_order(var["design_display"])
    bls = list(dict.fromkeys(var["vs_display"]))
    swing = (var["hi"] - var["lo"]).groupby(var["group"], sort=False).max()
    groups = list(swing.sort_values(ascending=True, kind="stable").index)  # widest on top
    ys = {gr: i for i, gr in enumerate(groups)}
    fig, axes = plt.subplots(
        len(bls), len(designs), figsize=(3.3 * len(designs), 0.9 + 0.32 * len(groups) * len(bls)),
        sharex=True, sharey=True, squeeze=False,
    )  # fmt: skip
    for i, bl in enumerate(bls):
        for j, des in enumerate(designs):
            ax = axes[i][j]
            p = var[(var["vs_display"] == bl) & (var["design_display"] == des)]
            band = d[
                (d["kind"] == "seed band") & (d["vs_display"] == bl) & (d["design_display"] == des)
            ]
            for _, b in band.iterrows():
                ax.axvspan(100 * b["lo"], 100 * b["hi"], color=OKABE_ITO["grey"], alpha=0.3,
                           lw=0, label="seed spread")  # fmt: skip
            y = np.array([ys[gr] for gr in p["group"]])
            ax.barh(y, 100 * p["lo"], color=OKABE_ITO["vermillion"], height=0.6)
            ax.barh(y, 100 * p["hi"], color=OKABE_ITO["blue"], height=0.6)
            ax.axvline(0.0, color="k", lw=0.8)
            default = p["default_ratio"].dropna()
            dtext = f" (default {default.iloc[0]:.2f}x)" if len(default) else ""
            ax.set_title(f"{des} vs {bl}{dtext}", fontsize=7)
            ax.set_yticks(range(len(groups)), groups, fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
            if i == len(bls) - 1:
                ax.set_xlabel("headline ratio vs default (%)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles[:1], labels[:1], loc="upper right", fontsize=7, frameon=False)
    disp = d["trace_display"].iloc[0]
    fig.suptitle(f"Sensitivity of the headline ratios: {disp} trace", fontsize=9)
    fig.tight_layout()
    return figs.save(fig, f"{name}_{trace}_tornado", d)
