"""The report: ``report.md`` plus seaborn figures (PNG + SVG), each figure's data as CSV beside it.

Reads any set of study folders (``study.json`` + CSVs from ``splitbench-study``) and run folders
(``summary.json`` + ``requests.parquet`` from ``splitbench-replay``). Sections:

- per study and trace: each design's throughput, cost and power at iso-power and iso-cost with
  the ratios to Baseline-A100 and Baseline-H100; iso-throughput cost and power;
- per design TTFT / TBT / E2E CDFs at its best configuration, and SLO attainment (worst
  slowdown over its limit) vs request rate; the provisioning heatmap;
- runs: summary table and latency CDFs;
- phase characterization from the profile table and the fitted phase model;
- the configs and versions that produced it.

Output is deterministic for the same inputs (no timestamps; SVG ids salted with a constant).
seaborn/matplotlib are imported inside the plotting functions only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path, write_text_atomic
from common.units import w_to_kw
from experiments.errors import ExperimentError

BASELINES = ("baseline-a100", "baseline-h100")
METRIC_LABEL = {"ttft_s": "TTFT (s)", "tbt_s": "TBT (s, token-weighted)", "e2e_s": "E2E (s)"}


# ---------------------------------------------------------------------------------------------
# inputs


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot read JSON ({e})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ExperimentError(f"{path}: cannot read Parquet ({e})".splitlines()[0]) from None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot read CSV ({e})".splitlines()[0]) from None


#: sections of study.json the report reads (written by splitbench-study)
_STUDY_KEYS = ("study", "model", "profiles", "slo")


def load_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """(studies, runs) from folders; a folder holding several studies/runs is walked."""
    studies, runs = [], []
    for raw in inputs:
        d = Path(raw)
        if not d.is_dir():
            raise ExperimentError(f"inputs: no such folder '{raw}'")
        found = False
        for sj in sorted(d.rglob("study.json")):
            found = True
            s = sj.parent
            meta = _read_json(sj)
            missing = [k for k in _STUDY_KEYS if not isinstance(meta.get(k), dict)]
            if missing:
                raise ExperimentError(f"{sj}: not a splitbench study (no '{missing[0]}' section)")
            studies.append(
                {
                    "dir": s,
                    "meta": meta,
                    **{
                        k: _read_csv(s / f"{k}.csv")
                        for k in (
                            "budget",
                            "iso_throughput",
                            "heatmap",
                            "points",
                            "latency_quantiles",
                        )
                    },
                    "config": (s / "config.yaml").read_text()
                    if (s / "config.yaml").exists()
                    else "",
                }
            )
        for sj in sorted(d.rglob("summary.json")):
            r = sj.parent
            if not (r / "requests.parquet").exists():
                continue
            found = True
            runs.append(
                {
                    "dir": r,
                    "summary": _read_json(sj),
                    "requests": _read_parquet(r / "requests.parquet"),
                    "point": _read_json(r / "point.json") if (r / "point.json").exists() else None,
                }
            )
        if not found:
            raise ExperimentError(
                f"inputs: '{raw}' holds no study.json or summary.json + requests.parquet"
            )
    return studies, runs


# ---------------------------------------------------------------------------------------------
# figures


class Figures:
    """Saves figures as PNG/SVG with their data as CSV, and remembers them for the markdown."""

    def __init__(self, out_dir: Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 110):
        self.dir = out_dir
        self.formats = tuple(formats)
        self.dpi = dpi
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)

    def save(self, fig, name: str, data: pd.DataFrame) -> str:
        import matplotlib.pyplot as plt

        base = self.dir / "figures" / name
        _atomic_csv(data, base.with_suffix(".csv"))
        for fmt in self.formats:
            path = base.with_suffix(f".{fmt}")
            meta = (
                {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else None)
            )
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=self.dpi, bbox_inches="tight", metadata=meta)
        plt.close(fig)
        first = self.formats[0] if self.formats else "png"
        return f"figures/{name}.{first}"


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def _style():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    plt.rcParams["svg.hashsalt"] = "splitbench"
    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _line_facets(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    col: str,
    labels: tuple[str, str],
    aspect: float = 1.2,
    sharey: bool = True,
    per_panel=None,
    **kw,
):
    """Lines of ``y`` over ``x`` (no aggregation), one panel per value of ``col``, each with its
    own x axis and titled by that value; ``labels`` are the x and y axis labels. ``per_panel(ax)``
    draws on each panel before the labels are set (seaborn labels only unlabelled axes). Call
    after ``_style()``; returns the FacetGrid."""
    import seaborn as sns

    g = sns.relplot(
        data=data,
        kind="line",
        estimator=None,
        errorbar=None,
        x=x,
        y=y,
        hue=hue,
        col=col,
        facet_kws={"sharex": False, "sharey": sharey},
        height=3.0,
        aspect=aspect,
        **kw,
    )
    if per_panel is not None:
        for ax in g.axes.flat:
            per_panel(ax)
    g.set_titles("{col_name}")
    g.set_axis_labels(*labels)
    return g


def fig_budget_bars(figs: Figures, budget: pd.DataFrame, study: str) -> str | None:
    """Throughput of each design at each budget, one panel per trace."""
    if budget.empty or budget["throughput_rps"].isna().all():
        return None
    plt, sns = _style()
    data = budget[
        ["trace_display", "budget", "design_display", "throughput_rps", "cost_per_hour", "power_w"]
    ].copy()
    g = sns.catplot(
        errorbar=None,
        data=data,
        kind="bar",
        x="design_display",
        y="throughput_rps",
        hue="budget",
        col="trace_display",
        height=3.2,
        aspect=1.5,
        sharey=False,
    )
    g.set_axis_labels("", "max throughput under SLO (req/s)")
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    return figs.save(g.figure, f"{study}_throughput", data)


def fig_cdfs(
    figs: Figures, lat: pd.DataFrame, budget: pd.DataFrame, study: str, trace: str
) -> str | None:
    """TTFT / TBT / E2E CDFs of each design at its best iso-power configuration and rate."""
    if lat.empty:
        return None
    d = lat[(lat["trace"] == trace) & (lat["rate"] == lat["best_rate"])].copy()
    if "iso-power" in set(budget.get("budget", [])):
        d = d[d["budgets"].astype(str).str.contains("iso-power")]
    d = d.dropna(subset=["value_s"])
    if d.empty:
        return None
    label = "design_display" if "design_display" in d.columns else "design"
    d = d[[label, "metric", "quantile", "value_s"]].copy()
    _style()
    d["metric"] = d["metric"].map(METRIC_LABEL).fillna(d["metric"])
    hue = "design_display" if "design_display" in d.columns else "design"
    cols = [
        METRIC_LABEL[k] for k in ("ttft_s", "tbt_s", "e2e_s") if METRIC_LABEL[k] in set(d["metric"])
    ]
    g = _line_facets(
        d,
        x="value_s",
        y="quantile",
        hue=hue,
        col="metric",
        labels=("latency (s)", "CDF"),
        hue_order=_hue_order(d[hue]),
        palette=_palette(d[hue]),
        col_order=cols,
    )
    g.legend.set_title("design")
    _log_x(g.axes.flat)
    return figs.save(g.figure, f"{study}_{trace}_cdf", d)


DESIGN_ORDER = (
    "Baseline-A100",
    "Baseline-H100",
    "Splitwise-AA",
    "Splitwise-HH",
    "Splitwise-HA",
    "Splitwise-HHcap",
    "Baseline-H200",
    "Splitwise-H200",
)


def _palette(names) -> dict:
    """The same colour for the same design in every figure."""
    import seaborn as sns

    known = [n for n in DESIGN_ORDER]
    extra = sorted(set(names) - set(known))
    colors = sns.color_palette("tab10", len(known) + len(extra))
    return {n: colors[i] for i, n in enumerate(known + extra)}


def _hue_order(names) -> list:
    present = set(names)
    return [n for n in DESIGN_ORDER if n in present] + sorted(present - set(DESIGN_ORDER))


def _log_x(axes) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())


def fig_slo_vs_rate(
    figs: Figures, points: pd.DataFrame, budget: pd.DataFrame, study: str, trace: str
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
    d = d.sort_values(["design", "rate"])
    plt, sns = _style()
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
        hue_order=_hue_order(d["design"]),
        palette=_palette(d["design"]),
    )
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_yscale("log")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7, title="design")
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("worst slowdown / SLO limit (<= 1: met)")
    ax.set_title(f"SLO attainment vs rate ({trace}, best iso-power config)")
    return figs.save(fig, f"{study}_{trace}_slo_vs_rate", d)


def fig_heatmap(figs: Figures, heat: pd.DataFrame, study: str) -> str | None:
    """SLO met (and cost where met) over (prompt, token) machine counts."""
    if heat.empty:
        return None
    plt, sns = _style()
    d = heat.copy()
    d["cost_if_met"] = np.where(d["slo_met"].astype(bool), d["cost_per_hour"], np.nan)
    met = d.pivot(index="token", columns="prompt", values="slo_met").astype(float)
    cost = d.pivot(index="token", columns="prompt", values="cost_if_met")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sns.heatmap(
        met.iloc[::-1],
        ax=axes[0],
        cmap="RdYlGn",
        vmin=0,
        vmax=1,
        cbar=False,
        linewidths=0.5,
        annot=False,
    )
    axes[0].set_title("SLO met (green) or not (red)")
    sns.heatmap(
        cost.iloc[::-1],
        ax=axes[1],
        cmap="viridis",
        annot=True,
        fmt=".0f",
        linewidths=0.5,
        cbar_kws={"label": "$/h"},
        annot_kws={"fontsize": 6},
    )
    axes[1].set_title("cost of SLO-meeting configurations ($/h)")
    for ax in axes:
        ax.set_xlabel("prompt machines")
        ax.set_ylabel("token machines")
    r = heat.iloc[0]
    fig.suptitle(f"{r['design_display']} on {r['trace_display']} at {r['rate']:g} req/s")
    return figs.save(fig, f"{study}_heatmap", d)


def fig_run_cdfs(figs: Figures, runs: list[dict]) -> str | None:
    """TTFT / TBT (per-request mean) / E2E CDFs of every run."""
    frames = []
    for r in runs:
        req = r["requests"]
        name = _run_label(r)
        for col, label in (
            ("ttft_s", METRIC_LABEL["ttft_s"]),
            ("tbt_mean_s", "TBT (s, per-request mean)"),
            ("e2e_s", METRIC_LABEL["e2e_s"]),
        ):
            v = np.sort(req[col].dropna().to_numpy(dtype=float))
            if v.size == 0:
                continue
            idx = np.unique(np.linspace(0, v.size - 1, min(v.size, 400)).astype(int))
            frames.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "metric": label,
                        "value_s": v[idx],
                        "quantile": (idx + 1) / v.size,
                    }
                )
            )
    if not frames:
        return None
    d = pd.concat(frames, ignore_index=True)
    _style()
    g = _line_facets(
        d,
        x="value_s",
        y="quantile",
        hue="run",
        col="metric",
        labels=("latency (s)", "CDF"),
        drawstyle="steps-post",
    )
    return figs.save(g.figure, "runs_cdf", d)


def phase_figures(figs: Figures, source: str, model: str) -> tuple[list[str], pd.DataFrame]:
    """Prefill latency vs prompt size and batch, decode latency vs batch and context, power per
    phase: measured profile points with the fitted phase model's curves."""
    from characterize.modeling.phase_model import load_phase_models
    from characterize.modeling.profiles import read_profile_source

    prof = read_profile_source(source)[0]
    prof = prof[(prof["model"] == model) & (prof["tp"] == 8)]
    models = load_phase_models(source)
    if prof.empty:
        return [], pd.DataFrame()
    plt, sns = _style()
    out = []
    gpus = sorted(prof["gpu"].unique())
    pms = {g: models.get(model, g, 8) for g in gpus if (model, g, 8) in models}
    pre = prof[prof["phase"] == "prefill"]
    dec = prof[prof["phase"] == "decode"]

    # prefill latency vs prompt size (batch 1) and vs batch (the most common prompt size)
    rows = []
    for g, pm in pms.items():
        for p in np.geomspace(64, 8192, 40).astype(int):
            rows.append(
                {
                    "gpu": g,
                    "sweep": "prompt size (batch 1)",
                    "x": int(p),
                    "latency_s": pm.prefill_time([int(p)]),
                    "kind": "model",
                }
            )
        p0 = int(pre["tokens_per_request"].mode().iloc[0]) if not pre.empty else 512
        for b in range(1, 65):
            rows.append(
                {
                    "gpu": g,
                    "sweep": f"batch size (prompt {p0})",
                    "x": b,
                    "latency_s": pm.prefill_time([p0] * b),
                    "kind": "model",
                }
            )
    if not pre.empty:
        p0 = int(pre["tokens_per_request"].mode().iloc[0])
        for _, r in pre.iterrows():
            if r["batch_size"] == 1:
                rows.append(
                    {
                        "gpu": r["gpu"],
                        "sweep": "prompt size (batch 1)",
                        "x": r["tokens_per_request"],
                        "latency_s": r["latency_s"],
                        "kind": "profile",
                    }
                )
            if r["tokens_per_request"] == p0:
                rows.append(
                    {
                        "gpu": r["gpu"],
                        "sweep": f"batch size (prompt {p0})",
                        "x": r["batch_size"],
                        "latency_s": r["latency_s"],
                        "kind": "profile",
                    }
                )
    d = pd.DataFrame(rows)
    if not d.empty:

        def measured(ax) -> None:
            meas = d[(d["kind"] == "profile") & (d["sweep"] == ax.get_title().split(" = ")[-1])]
            sns.scatterplot(
                data=meas, x="x", y="latency_s", hue="gpu", ax=ax, legend=False, marker="x"
            )

        g = _line_facets(
            d[d["kind"] == "model"],
            x="x",
            y="latency_s",
            hue="gpu",
            col="sweep",
            labels=("", "prefill latency (s)"),
            aspect=1.3,
            sharey=False,
            per_panel=measured,
        )
        out.append(figs.save(g.figure, "phase_prefill_latency", d))

    # decode latency vs batch size at several contexts per request
    rows = []
    # model curves only inside the profiled range of total context (no extrapolation)
    c_max = float((dec["batch_size"] * dec["tokens_per_request"]).max()) if not dec.empty else 0
    for g, pm in pms.items():
        for ctx in (256, 512, 1024, 2048):
            for b in range(1, 65):
                if c_max and b * ctx > c_max:
                    break
                rows.append(
                    {
                        "gpu": g,
                        "context_per_request": ctx,
                        "batch_size": b,
                        "latency_s": pm.decode_time(b, b * ctx),
                        "kind": "model",
                    }
                )
    for _, r in dec.iterrows():
        rows.append(
            {
                "gpu": r["gpu"],
                "context_per_request": int(r["tokens_per_request"]),
                "batch_size": r["batch_size"],
                "latency_s": r["latency_s"],
                "kind": "profile",
            }
        )
    d = pd.DataFrame(rows)
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        m = d[d["kind"] == "model"]
        sns.lineplot(
            estimator=None,
            errorbar=None,
            data=m,
            x="batch_size",
            y="latency_s",
            hue="gpu",
            style="context_per_request",
            ax=ax,
        )
        meas = d[d["kind"] == "profile"]
        if not meas.empty:
            sns.scatterplot(
                data=meas, x="batch_size", y="latency_s", hue="gpu", ax=ax, marker="x", legend=False
            )
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
        ax.set_xlabel("decode batch size")
        ax.set_ylabel("decode step latency (s)")
        ax.set_title(f"{model}: one decode step (lines: phase model; x: profile)")
        out.append(figs.save(fig, "phase_decode_latency", d))

    # power per phase
    rows = []
    for g, pm in pms.items():
        for t in np.geomspace(64, 8192, 30).astype(int):
            rows.append(
                {"gpu": g, "phase": "prefill", "x": int(t), "power_w": pm.prefill_power(int(t))}
            )
        for b in range(1, 65):
            rows.append({"gpu": g, "phase": "decode", "x": b, "power_w": pm.decode_power(b)})
    d = pd.DataFrame(rows)
    if not d.empty:
        g = _line_facets(
            d,
            x="x",
            y="power_w",
            hue="gpu",
            col="phase",
            labels=("batch tokens (prefill) / batch size (decode)", "instance power (W)"),
            aspect=1.3,
        )
        out.append(figs.save(g.figure, "phase_power", d))
    err = models.error_table()
    err = err[err["model"] == model] if "model" in err.columns else err
    return out, err


# ---------------------------------------------------------------------------------------------
# markdown


def _fmt(x, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def _md_table(df: pd.DataFrame, cols: list[tuple[str, str, str]]) -> str:
    """Markdown table: cols = (column, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|" + "|".join("---" if f == "" else "---:" for _, _, f in cols) + "|"
    lines = [head, sep]
    for _, r in df.iterrows():
        cells = []
        for c, _, f in cols:
            v = r.get(c)
            cells.append(str(v) if f == "" else _fmt(v, f))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _config_label(r) -> str:
    if pd.notna(r.get("prompt_machines")):
        return f"{int(r['prompt_machines'])}P + {int(r['token_machines'])}T"
    return "-" if pd.isna(r.get("machines")) else f"{int(r['machines'])}"


def _run_label(r: dict) -> str:
    s = r["summary"]
    disp = s.get("display") or {}
    d = s.get("design") or {}
    return f"{disp.get('design') or d.get('name', '?')} / {disp.get('trace', '')} ({r['dir'].name})"


def _headline(b: pd.DataFrame) -> list[str]:
    """One line per trace and budget: the design with the highest sustained rate."""
    out = []
    for (tr, bud), grp in b.groupby(["trace_display", "budget"], sort=False):
        g = grp.dropna(subset=["max_rate"])
        if g.empty:
            continue
        best = g.loc[g["max_rate"].idxmax()]
        ratios = ", ".join(
            f"{_fmt(best.get(f'max_rate_vs_{bl}'))}x {name}"
            for bl, name in (("baseline-a100", "Baseline-A100"), ("baseline-h100", "Baseline-H100"))
            if pd.notna(best.get(f"max_rate_vs_{bl}"))
        )
        out.append(
            f"- {tr}, {bud}: {best['design_display']} ({_config_label(best)}) sustains "
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


def study_section(figs: Figures, s: dict) -> list[str]:
    meta = s["meta"]
    st = meta["study"]
    name = st["name"]
    md = [f"## Study `{name}`", "", st.get("description", ""), ""]
    sims = meta.get("simulations", {})
    sea = meta.get("search", {})
    md.append(
        f"Model {meta['model']['name']} (TP{meta['model']['tp']}); profiles "
        f"`{meta['profiles'].get('source')}`; SLO `{meta['slo']['name']}` "
        f"(slowdown limits at P{'/P'.join(f'{p:g}' for p in meta['slo']['percentiles'])}: "
        f"TTFT {meta['slo']['ttft']}, TBT {meta['slo']['tbt']}, E2E {meta['slo']['e2e']}); "
        f"requests re-sampled from each trace (Poisson arrivals, (prompt, output) pairs drawn "
        f"from the trace) for {sea.get('duration_s', 0):g} s per point"
        + (
            f" (at most {sea['max_requests']:,} requests: min({sea.get('duration_s', 0):g} s, "
            f"{sea['max_requests']:,} / rate))"
            if sea.get("max_requests")
            else ""
        )
        + f", seed "
        f"{sea.get('seed')}; rates on a geometric grid with {100 * sea.get('rate_step', 0):g}% "
        f"steps ({sea.get('mode')} search, frontier `{sea.get('frontier')}`); "
        f"{int(sims.get('evaluated', 0)) + int(sims.get('cache_hits', 0))} simulated points "
        f"({int(sims.get('errors', 0))} failed). Throughput: completions per second in the "
        "steady-state window (middle 80% of arrivals)."
    )
    md.append("")
    for n in meta.get("notes", []):
        md.append(f"- Note: {n}")
    md.append("")
    b = s["budget"]
    if not b.empty:
        md += ["### Iso-power and iso-cost", ""]
        md += _headline(b) + [""]
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
            ("max_rate_vs_baseline-a100", "x Baseline-A100", ".2f"),
            ("max_rate_vs_baseline-h100", "x Baseline-H100", ".2f"),
        ]
        bb = b.copy()
        bb["config"] = [_config_label(r) for _, r in bb.iterrows()]
        bb["power_kw"] = w_to_kw(bb["power_w"])
        for (tr, bud), grp in bb.groupby(["trace_display", "budget"], sort=False):
            md += [f"**{tr} trace, {bud}**", "", _md_table(grp, cols), ""]
        bars = fig_budget_bars(figs, b, name)
        if bars:
            md += [f"![throughput per design]({bars})", ""]
    t = s["iso_throughput"]
    if not t.empty:
        md += [
            "### Iso-throughput",
            "",
            "For a target rate: the cheapest and the lowest-power configuration of each "
            "design that meets the SLO, with cost and power ratios to the baselines.",
            "",
        ]
        tt = t.copy()
        tt["config"] = [_config_label(r) for _, r in tt.iterrows()]
        tt["power_kw"] = w_to_kw(tt["power_w"])
        cols = [
            ("design_display", "design", ""),
            ("config", "config", ""),
            ("cost_per_hour", "cost ($/h)", ",.0f"),
            ("power_kw", "power (kW)", ".1f"),
            ("cost_per_hour_vs_baseline-a100", "cost x A100", ".2f"),
            ("cost_per_hour_vs_baseline-h100", "cost x H100", ".2f"),
            ("power_w_vs_baseline-a100", "power x A100", ".2f"),
            ("power_w_vs_baseline-h100", "power x H100", ".2f"),
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
                md += [f"**{tr} trace at {rate:g} req/s, {title}**", "", _md_table(sub, cols), ""]
    traces = list(dict.fromkeys(b["trace"])) if not b.empty else []
    for tr in traces:
        disp = b[b["trace"] == tr]["trace_display"].iloc[0]
        md += [f"### Latency and SLO attainment: {disp} trace", ""]
        cdf = fig_cdfs(figs, s["latency_quantiles"], b, name, tr)
        if cdf:
            md += [
                "Per design, at its best iso-power configuration and highest SLO-meeting "
                "rate (TBT: token-weighted over every gap).",
                "",
                f"![CDFs]({cdf})",
                "",
            ]
        slo = fig_slo_vs_rate(figs, s["points"], b, name, tr)
        if slo:
            md += [
                "Worst of the nine slowdown percentiles over its limit, at every rate the "
                "search simulated on that configuration (<= 1: SLO met).",
                "",
                f"![SLO vs rate]({slo})",
                "",
            ]
    h = s["heatmap"]
    if not h.empty:
        hm = fig_heatmap(figs, h, name)
        n_eval = int(h["evaluated"].sum()) if "evaluated" in h else len(h)
        md += [
            "### Provisioning heatmap",
            "",
            f"SLO met or not over (prompt, token) machine counts and the cost of the "
            f"configurations that meet it; {n_eval} of {len(h)} cells simulated, the rest "
            "decided by monotonicity (more machines never miss an SLO that fewer meet).",
            "",
            f"![heatmap]({hm})",
            "",
        ]
    return md


def runs_section(figs: Figures, runs: list[dict]) -> list[str]:
    md = ["## Replay runs", ""]
    rows = []
    for r in runs:
        s = r["summary"]
        d = s.get("design") or {}
        slo = s.get("slo_config") or {}
        rows.append(
            {
                "run": _run_label(r),
                "requests": (s.get("requests") or {}).get("completed"),
                "throughput": s.get("throughput_rps"),
                "ttft_p99": (s.get("ttft_s") or {}).get("p99"),
                "tbt_p99": (s.get("tbt_s") or {}).get("p99"),
                "e2e_p99": (s.get("e2e_s") or {}).get("p99"),
                "cost": d.get("cost_per_hour"),
                "power_kw": w_to_kw(d.get("provisioned_power_w") or 0),
                "slo": ("met" if slo.get("slo_met") else "missed")
                if slo
                else ("met" if (s.get("slo") or {}).get("all_ok") else "missed"),
            }
        )
    df = pd.DataFrame(rows)
    md += [
        _md_table(
            df,
            [
                ("run", "run", ""),
                ("requests", "completed", ".0f"),
                ("throughput", "req/s", ".2f"),
                ("ttft_p99", "TTFT P99 (s)", ".3f"),
                ("tbt_p99", "TBT P99 (s)", ".4f"),
                ("e2e_p99", "E2E P99 (s)", ".2f"),
                ("cost", "$/h", ",.0f"),
                ("power_kw", "kW", ".1f"),
                ("slo", "SLO", ""),
            ],
        ),
        "",
    ]
    cdf = fig_run_cdfs(figs, runs)
    if cdf:
        md += [f"![run CDFs]({cdf})", ""]
    return md


def write_report(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    profiles_source: str = "reference",
    model: str = "llama2-70b",
    phase: bool = True,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 110,
    command: str | None = None,
) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/figures/*`` from study and run folders."""
    studies, runs = load_inputs(inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures(out, formats, dpi)
    md = ["# splitbench report", ""]
    md.append(
        "Trace-driven comparison of baseline and Splitwise (phase-split) cluster designs "
        "(method: Patel et al., ISCA 2024). Traces: Azure LLM inference traces 2023 "
        "(CC BY 4.0). Reference profiles: the Splitwise paper's DGX-A100/H100 "
        "measurements (splitwise-sim, MIT)."
    )
    md.append("")
    if command:
        md += [f"Generated by `{command}`.", ""]
    md += ["Inputs: " + ", ".join(f"`{_rel(s['dir'], out)}`" for s in studies + runs), ""]
    for s in studies:
        md += study_section(figs, s)
    if runs:
        md += runs_section(figs, runs)
    if phase:
        md += ["## Phase characterization", ""]
        try:
            names, err = phase_figures(figs, profiles_source, model)
        except Exception as e:  # noqa: BLE001 - the rest of the report stands without it
            names, err = [], pd.DataFrame()
            md += [f"Phase figures skipped: {type(e).__name__}: {str(e).splitlines()[0]}", ""]
        md += [
            f"Profile table `{profiles_source}` (points) and the fitted phase model "
            f"(lines), {model}, TP8.",
            "",
        ]
        md += [f"![{n}]({n})" for n in names] + [""]
        if not err.empty:
            keep = [
                c for c in ("gpu", "tp", "phase", "points", "mape", "max_error") if c in err.columns
            ]
            e = err[keep].copy()
            _atomic_csv(err, out / "figures" / "phase_model_errors.csv")
            md += [
                "Phase model held-out error (fraction):",
                "",
                _md_table(
                    e,
                    [
                        (
                            c,
                            c,
                            ""
                            if not pd.api.types.is_numeric_dtype(e[c])
                            else ".3f"
                            if c in ("mape", "max_error")
                            else ".0f",
                        )
                        for c in keep
                    ],
                ),
                "",
            ]
    md += ["## Configs and versions", ""]
    for s in studies:
        meta = s["meta"]
        config = _portable(s["config"])
        md += [
            f"Study `{meta['study']['name']}`: code `{meta.get('code_version')}`; "
            + ", ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items())),
            "",
            "<details><summary>config.yaml</summary>",
            "",
            "```yaml",
            config.rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    for r in runs:
        if r["point"]:
            md += [
                f"Run `{r['dir'].name}`: code `{r['point'].get('code_version')}`",
                "",
                "<details><summary>point.json</summary>",
                "",
                "```json",
                json.dumps(r["point"], indent=1, sort_keys=True),
                "```",
                "",
                "</details>",
                "",
            ]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(md).rstrip() + "\n")
    return path


def _portable(config_text: str) -> str:
    """The study config with its project root written as ``<root>``."""
    from omegaconf import OmegaConf

    try:
        root = str(OmegaConf.create(config_text).paths.root)
    except Exception:  # noqa: BLE001 - not a study config: leave it as it is
        return config_text
    return config_text.replace(root, "<root>") if len(root) > 1 else config_text


def _rel(p: Path, base: Path) -> str:
    try:
        return os.path.relpath(p, base)
    except ValueError:
        return str(p)
