"""Phase characterization figures: prefill latency vs prompt size and batch, decode step
latency vs batch and context, instance power per phase; profile points with the fitted phase
model's curves. Each figure's data goes beside it as CSV (column ``kind``: ``model`` for the
fitted curves, ``profile`` for the profile table's points)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report.plotting import OKABE_ITO, Figures, line_facets, style

#: one decode step at these contexts per request (tokens)
DECODE_CONTEXTS = (256, 512, 1024, 2048)


def _gpu_colors(gpus) -> dict:
    cols = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "purple", "orange", "sky")]
    return {g: cols[i % len(cols)] for i, g in enumerate(sorted(gpus))}


def identical_curves(d: pd.DataFrame, keys: list[str], value: str) -> dict[str, str]:
    """{gpu: the earlier gpu whose model curve is the same} for gpus whose ``value`` over
    ``keys`` equals another's everywhere (relative 1e-9): such a line would hide under the
    other."""
    m = d[d["kind"] == "model"]
    curves = {g: grp.set_index(keys)[value].sort_index() for g, grp in m.groupby("gpu")}
    out: dict[str, str] = {}
    names = sorted(curves)
    for i, g in enumerate(names):
        for h in names[:i]:
            a, b = curves[g], curves[h]
            if h not in out and a.index.equals(b.index) and np.allclose(a, b, rtol=1e-9, atol=0):
                out[g] = h
                break
    return out


def prefill_data(pms: dict, pre: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    rows = []
    p0 = int(pre["tokens_per_request"].mode().iloc[0]) if not pre.empty else 512
    sweeps = ("prompt size (batch 1)", f"batch size (prompts of {p0} tokens)")
    units = ("prompt tokens", "requests")
    for g, pm in pms.items():
        for p in np.geomspace(64, 8192, 40).astype(int):
            rows.append(
                {"gpu": g, "sweep": sweeps[0], "x": int(p), "x_unit": units[0],
                 "latency_s": pm.prefill_time([int(p)]), "kind": "model"}
            )  # fmt: skip
        for b in range(1, 65):
            rows.append(
                {"gpu": g, "sweep": sweeps[1], "x": b, "x_unit": units[1],
                 "latency_s": pm.prefill_time([p0] * b), "kind": "model"}
            )  # fmt: skip
    for _, r in pre.iterrows():
        if r["gpu"] not in pms:
            continue
        if r["batch_size"] == 1:
            rows.append(
                {"gpu": r["gpu"], "sweep": sweeps[0], "x": r["tokens_per_request"],
                 "x_unit": units[0], "latency_s": r["latency_s"], "kind": "profile"}
            )  # fmt: skip
        if r["tokens_per_request"] == p0:
            rows.append(
                {"gpu": r["gpu"], "sweep": sweeps[1], "x": r["batch_size"], "x_unit": units[1],
                 "latency_s": r["latency_s"], "kind": "profile"}
            )  # fmt: skip
    return pd.DataFrame(rows), p0


def phase_figures(
    figs: Figures, source: str, model: str, tp: int = 8
) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """([(figure path, caption)], held-out error table) of ``model`` at ``tp``."""
    from characterize.modeling.phase_model import load_phase_models
    from characterize.modeling.profiles import read_profile_source

    prof = read_profile_source(source)[0]
    prof = prof[(prof["model"] == model) & (prof["tp"] == tp)]
    models = load_phase_models(source)
    if prof.empty:
        return [], pd.DataFrame()
    style()
    gpus = sorted(prof["gpu"].unique())
    pms = {g: models.get(model, g, tp) for g in gpus if (model, g, tp) in models}
    colors = _gpu_colors(pms)
    err = models.error_table()
    err = err[(err["model"] == model) & (err["tp"] == tp)] if "model" in err.columns else err
    title = f"{model}, TP{tp}"
    out = [
        _prefill_figure(figs, pms, prof[prof["phase"] == "prefill"], colors, title),
        _decode_figure(figs, decode_data(pms, prof[prof["phase"] == "decode"]), pms, colors, title),
        _power_figure(figs, pms, prof, err, colors, title),
    ]
    return [f for f in out if f is not None], err


def _prefill_figure(figs: Figures, pms: dict, pre: pd.DataFrame, colors: dict, title: str):
    """Prefill latency vs prompt size (batch 1) and vs batch (the most common prompt size)."""
    d, p0 = prefill_data(pms, pre)
    if d.empty:
        return None
    plt, sns = style()
    sweeps = list(dict.fromkeys(d["sweep"]))
    unit = dict(zip(d["sweep"], d["x_unit"], strict=False))

    def measured(ax) -> None:
        meas = d[(d["kind"] == "profile") & (d["sweep"] == ax.get_title().split(" = ")[-1])]
        if not meas.empty:
            sns.scatterplot(
                data=meas, x="x", y="latency_s", hue="gpu", ax=ax, legend=False,
                marker="X", s=40, palette=colors, zorder=3,
            )  # fmt: skip

    g = line_facets(
        d[d["kind"] == "model"],
        x="x",
        y="latency_s",
        hue="gpu",
        col="sweep",
        col_order=sweeps,
        labels=("", "prefill latency (s)"),
        aspect=1.3,
        sharey=False,
        per_panel=measured,
        palette=colors,
    )
    for ax, sw in zip(g.axes.flat, sweeps, strict=False):
        ax.set_xlabel(f"{sw.split(' (')[0]} ({unit[sw]})")
    g.figure.suptitle(
        f"{title}: one prefill iteration (lines: phase model; X: profile points)", y=1.04
    )
    return (
        figs.save(g.figure, "phase_prefill_latency", d),
        f"Prefill iteration latency (s) vs prompt size at batch 1 and vs batch size at "
        f"{p0}-token prompts.",
    )


def decode_data(pms: dict, dec: pd.DataFrame) -> pd.DataFrame:
    """Decode step latency vs batch size at several contexts per request: the model's curves
    (only inside the profiled range of total context: no extrapolation) and the profile points."""
    rows = []
    c_max = float((dec["batch_size"] * dec["tokens_per_request"]).max()) if not dec.empty else 0
    for gname, pm in pms.items():
        for ctx in DECODE_CONTEXTS:
            for b in range(1, 65):
                if c_max and b * ctx > c_max:
                    break
                rows.append(
                    {"gpu": gname, "context_per_request": ctx, "batch_size": b,
                     "latency_s": pm.decode_time(b, b * ctx), "kind": "model"}
                )  # fmt: skip
    for _, r in dec.iterrows():
        if r["gpu"] in pms:
            rows.append(
                {"gpu": r["gpu"], "context_per_request": int(r["tokens_per_request"]),
                 "batch_size": r["batch_size"], "latency_s": r["latency_s"], "kind": "profile"}
            )  # fmt: skip
    return pd.DataFrame(rows)


#: line styles of the decode figure's contexts per request
_DASHES = ["-", "--", "-.", ":"]


def _decode_lines(ax, d: pd.DataFrame, pms: dict, colors: dict, same: dict) -> None:
    for gname in sorted(pms):
        m = d[(d["kind"] == "model") & (d["gpu"] == gname)]
        dup = gname in same
        for i, (_ctx, grp) in enumerate(m.groupby("context_per_request")):
            ax.plot(
                grp["batch_size"],
                grp["latency_s"],
                color=colors[gname],
                # the band under an identical curve is solid (its dashes would break it)
                ls="-" if gname in same.values() else _DASHES[i % len(_DASHES)],
                # a curve identical to another's is drawn thin on top, with markers, over
                # a wide translucent band of the other: both stay visible
                lw=1.2 if dup else (5.0 if gname in same.values() else 1.5),
                alpha=1.0 if dup else (0.4 if gname in same.values() else 1.0),
                marker="o" if dup else None,
                markevery=6,
                ms=3,
                zorder=3 if dup else 2,
            )
        meas = d[(d["kind"] == "profile") & (d["gpu"] == gname)]
        if not meas.empty:
            ax.scatter(
                meas["batch_size"], meas["latency_s"], color=colors[gname], marker="X", s=30,
                zorder=4,
            )  # fmt: skip


def _decode_legend(ax, d: pd.DataFrame, pms: dict, colors: dict, same: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colors[gname], lw=5 if gname in same.values() else 2,
               alpha=0.4 if gname in same.values() else 1.0,
               marker="o" if gname in same else None,
               label=gname + (f" (same as {same[gname]})" if gname in same else ""))
        for gname in sorted(pms)
    ]  # fmt: skip
    handles += [
        Line2D([], [], color="k", ls=_DASHES[i % len(_DASHES)], label=f"{ctx} tokens/request")
        for i, ctx in enumerate(sorted(set(d.loc[d["kind"] == "model", "context_per_request"])))
    ]
    handles.append(Line2D([], [], color="k", marker="X", ls="", label="profile point"))
    ax.legend(handles=handles, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)


def _decode_figure(figs: Figures, d: pd.DataFrame, pms: dict, colors: dict, title: str):
    """Decode step latency vs batch size at several contexts per request."""
    if d.empty:
        return None
    plt, _ = style()
    same = identical_curves(d, ["context_per_request", "batch_size"], "latency_s")
    d["same_as"] = d["gpu"].map(same)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    _decode_lines(ax, d, pms, colors, same)
    _decode_legend(ax, d, pms, colors, same)
    ax.set_xlabel("decode batch size (requests)")
    ax.set_ylabel("decode step latency (s)")
    ax.set_title(f"{title}: one decode step (lines: phase model; X: profile)")
    note = (
        " "
        + "; ".join(f"{a}'s curves are identical to {b}'s" for a, b in same.items())
        + " (drawn with markers on top of the other's wide band)."
        if same
        else ""
    )
    return (
        figs.save(fig, "phase_decode_latency", d),
        "Decode step latency (s) vs batch size at several contexts per request." + note,
    )


def power_data(pms: dict, prof: pd.DataFrame, src: dict) -> pd.DataFrame:
    """Power per phase: the fitted curves and the profile's power points (``src``: the power
    source of each (gpu, phase))."""
    rows = []
    for gname, pm in pms.items():
        for t in np.geomspace(64, 8192, 30).astype(int):
            rows.append(
                {"gpu": gname, "phase": "prefill", "x": int(t),
                 "power_w": pm.prefill_power(int(t)), "kind": "model",
                 "power_source": src.get((gname, "prefill"))}
            )  # fmt: skip
        for b in range(1, 65):
            rows.append(
                {"gpu": gname, "phase": "decode", "x": b, "power_w": pm.decode_power(b),
                 "kind": "model", "power_source": src.get((gname, "decode"))}
            )  # fmt: skip
    if "power_w" in prof.columns:
        for _, r in prof[prof["power_w"].notna() & prof["gpu"].isin(list(pms))].iterrows():
            x = (
                r["batch_size"] * r["tokens_per_request"]
                if r["phase"] == "prefill"
                else r["batch_size"]
            )
            rows.append(
                {"gpu": r["gpu"], "phase": r["phase"], "x": x, "power_w": r["power_w"],
                 "kind": "profile", "power_source": "measured"}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _power_figure(
    figs: Figures, pms: dict, prof: pd.DataFrame, err: pd.DataFrame, colors: dict, title: str
):
    """Instance power per phase: the fitted curves and the profile's power points."""
    src = {}
    if "power_source" in err.columns:
        src = {(r["gpu"], r["phase"]): r["power_source"] for _, r in err.iterrows()}
    d = power_data(pms, prof, src)
    if d.empty:
        return None
    plt, sns = style()
    scaled = sorted({g for (g, _), s in src.items() if s is not None and str(s) != "measured"})
    d["label"] = [
        g + (" (A100 shape scaled, not measured)" if g in scaled else "") for g in d["gpu"]
    ]
    lab_colors = {lab: colors[g] for g, lab in zip(d["gpu"], d["label"], strict=True)}

    def points(ax) -> None:
        meas = d[(d["kind"] == "profile") & (d["phase"] == ax.get_title().split(" = ")[-1])]
        if not meas.empty:
            sns.scatterplot(
                data=meas, x="x", y="power_w", hue="label", ax=ax, legend=False,
                marker="X", s=40, palette=lab_colors, zorder=3,
            )  # fmt: skip

    g = line_facets(
        d[d["kind"] == "model"],
        x="x",
        y="power_w",
        hue="label",
        col="phase",
        col_order=["prefill", "decode"],
        labels=("", "instance power (W)"),
        aspect=1.3,
        per_panel=points,
        palette=lab_colors,
    )
    g.axes.flat[0].set_xlabel("prefill batch tokens")
    g.axes.flat[-1].set_xlabel("decode batch size (requests)")
    g.legend.set_title("gpu")
    g.figure.suptitle(
        f"{title}: instance power (lines: fitted curve; X: profile power points)", y=1.04
    )
    cap = "Instance power (W) per phase: fitted curves and the profile's power points."
    if scaled:
        cap += (
            f" The {', '.join(scaled)} curves are not measurements: the profiles hold no "
            "power for them, so they are the A100 reference's power shape scaled to that "
            "GPU's power (phase model fallback)."
        )
    return (figs.save(g.figure, "phase_power", d), cap)
