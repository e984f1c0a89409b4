"""The report's markdown: a section per study (budget tables, iso-throughput, latency, SLO
attainment, heatmap, context policy), a comparison of several studies, the replay runs, the
phase characterization and the configs; :func:`write_report` assembles them."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import write_text_atomic
from common.units import w_to_kw
from experiments.errors import ExperimentError
from experiments.report import study_figures as sf
from experiments.report import variant_sections as vs
from experiments.report.engines_section import engines_section, own_rows
from experiments.report.inputs import inputs_slug, load_inputs, run_context, study_context
from experiments.report.phase_figures import phase_figures
from experiments.report.plotting import Figures, atomic_csv
from replay.serving import describe as serving_describe

BASELINES = ("baseline-a100", "baseline-h100")


def fmt(x, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def md_table(df: pd.DataFrame, cols: list[tuple[str, str, str]]) -> str:
    """Markdown table: cols = (column, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|" + "|".join("---" if f == "" else "---:" for _, _, f in cols) + "|"
    lines = [head, sep]
    for _, r in df.iterrows():
        cells = []
        for c, _, f in cols:
            v = r.get(c)
            cells.append(("-" if v is None or v is np.nan else str(v)) if f == "" else fmt(v, f))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def config_label(r) -> str:
    if pd.notna(r.get("prompt_machines")):
        return f"{int(r['prompt_machines'])}P + {int(r['token_machines'])}T"
    return "-" if pd.isna(r.get("machines")) else f"{int(r['machines'])}"


def run_label(r: dict) -> str:
    s = r["summary"]
    disp = s.get("display") or {}
    d = s.get("design") or {}
    return f"{disp.get('design') or d.get('name', '?')} / {disp.get('trace', '')} ({r['dir'].name})"


def headline(b: pd.DataFrame) -> list[str]:
    """One line per trace and budget: the design with the highest sustained rate."""
    out = []
    for (tr, bud), grp in b.groupby(["trace_display", "budget"], sort=False):
        g = grp.dropna(subset=["max_rate"])
        if g.empty:
            continue
        best = g.loc[g["max_rate"].idxmax()]
        ratios = ", ".join(
            f"{fmt(best.get(f'max_rate_vs_{bl}'))}x {name}"
            for bl, name in (("baseline-a100", "Baseline-A100"), ("baseline-h100", "Baseline-H100"))
            if pd.notna(best.get(f"max_rate_vs_{bl}"))
        )
        out.append(
            f"- {tr}, {bud}: {best['design_display']} ({config_label(best)}) sustains "
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


def _trace_policy(meta: dict) -> dict[str, str]:
    """{trace key: its configured context policy} from study.json's traces section."""
    out = {}
    for k, t in (meta.get("traces") or {}).items():
        if isinstance(t, dict) and t.get("context_policy"):
            out[k] = str(t["context_policy"])
    return out


#: kinds of phase-model extrapolation notes (characterize.modeling.phase.model), by a phrase
EXTRAPOLATION_KINDS = (
    ("prefill batch", "batch tokens is beyond"),
    ("single prompt", "prompt"),
    ("decode step", "decode of"),
    ("context per request", "context per"),
)


def extrapolation_section(s: dict) -> list[str]:
    """How many simulated points queried a phase model beyond the range its profiles measured,
    by kind, with the widest note of each kind (the notes are per point in points.csv)."""
    pts = s["points"]
    md = ["### Phase models beyond their measured range", ""]
    if pts.empty:
        return []
    if "extrapolated" not in pts.columns:
        md += [
            "This study's points carry no extrapolation notes (a study from before they were "
            f"recorded: code version `{s['meta'].get('code_version', '?')}`); the phase models "
            "may have been queried beyond the measured range unseen.",
            "",
        ]
        return md
    notes = pts["extrapolated"].dropna().astype(str)
    notes = notes[notes.str.len() > 0]
    n_all = int((pts.get("status", "ok") != "failed").sum())
    if notes.empty:
        md += [f"None of the {n_all} points queried a phase model beyond its measured range.", ""]
        return md
    rows = []
    for kind, phrase in EXTRAPOLATION_KINDS:
        hits = [n for joined in notes for n in joined.split("; ") if phrase in n]
        if kind == "single prompt":
            hits = [n for n in hits if "batch tokens" not in n]
        if hits:
            points = int(notes.map(lambda j, ph=phrase: ph in j).sum())
            rows.append({"kind": kind, "points": points, "example": sorted(hits)[-1]})
    md += [
        f"{len(notes)} of {n_all} simulated points queried a phase model beyond the range its "
        "profiles measured; the simulator continued the fitted forms there (prefill: its "
        "quadratic attention and linear terms; decode: linear in batch, batch^2 and context "
        "tokens). Per point: points.csv, column `extrapolated`.",
        "",
        md_table(
            pd.DataFrame(rows),
            [
                ("kind", "beyond the measured range", ""),
                ("points", "points", "d"),
                ("example", "one note (the last in sorted order)", ""),
            ],
        ),  # fmt: skip
        "",
    ]
    return md


def context_section(s: dict) -> list[str]:
    """Per trace: requests clipped or rejected by the model's context window, tokens removed."""
    meta = s["meta"]
    ctx = study_context(s["points"])
    disp = {}
    if not s["budget"].empty and "trace_display" in s["budget"].columns:
        disp = dict(zip(s["budget"]["trace"], s["budget"]["trace_display"], strict=False))
    policy = _trace_policy(meta)
    md = ["### Context window: clipped and rejected requests", ""]
    if ctx.empty:
        md += [
            "This study's points carry no context-policy counts (a study from before they were "
            "recorded); configured policy per trace: "
            + (", ".join(f"{disp.get(k, k)} `{v}`" for k, v in policy.items()) or "unknown")
            + ".",
            "",
        ]
        return md
    ctx = ctx.copy()
    ctx["trace_display"] = [disp.get(t, t) for t in ctx["trace"]]
    ctx["policy"] = [
        p if p else policy.get(t) for t, p in zip(ctx["trace"], ctx["policy"], strict=True)
    ]
    tr = pd.to_numeric(ctx["trace_requests"], errors="coerce")
    ctx["clipped_pct"] = 100.0 * ctx["clipped"] / tr
    ctx["rejected_pct"] = 100.0 * ctx["rejected"] / tr
    ctx["tokens_per_clipped"] = np.where(
        ctx["clipped"] > 0, ctx["clipped_tokens"] / ctx["clipped"].where(ctx["clipped"] > 0), np.nan
    )
    md += [
        "Requests longer than the model's context window (prompt + output tokens) are clipped "
        "(output first, then the prompt) or rejected, per the trace's `context_policy`. Counts "
        "are summed over every simulated point of the study (each point re-samples the trace), "
        "so the percentages are the share of re-sampled requests the policy changed.",
        "",
        md_table(
            ctx,
            [
                ("trace_display", "trace", ""),
                ("policy", "policy", ""),
                ("max_context", "window (tokens)", ""),
                ("points", "points", ".0f"),
                ("trace_requests", "requests", ",.0f"),
                ("clipped", "clipped", ",.0f"),
                ("clipped_pct", "clipped (%)", ".1f"),
                ("clipped_tokens", "tokens removed by clipping", ",.0f"),
                ("tokens_per_clipped", "per clipped request", ",.0f"),
                ("rejected", "rejected", ",.0f"),
                ("rejected_pct", "rejected (%)", ".1f"),
                ("rejected_tokens", "tokens of rejected requests", ",.0f"),
            ],
        ),
        "",
    ]
    return md


def reject_section(studies: list[dict]) -> list[str]:
    """The headline ratios under ``clip`` and under ``reject``, when the inputs hold a study of
    each policy; otherwise the marked place where that comparison goes."""
    md = ["## Context policy: how the headline ratios change under `reject`", ""]
    by_policy: dict[str, list[dict]] = {}
    for s in studies:
        pols = set(_trace_policy(s["meta"]).values())
        ctx = study_context(s["points"])
        if not ctx.empty:
            pols |= {p for p in ctx["policy"].dropna() for p in str(p).split(", ")}
        if len(pols) == 1:
            by_policy.setdefault(pols.pop(), []).append(s)
    if "clip" in by_policy and "reject" in by_policy:
        t = sf.compare_table(by_policy["clip"][:1] + by_policy["reject"][:1])
        t = t[t["study"].isin([by_policy["clip"][0]["label"], by_policy["reject"][0]["label"]])]
        t["policy"] = np.where(t["study"] == by_policy["clip"][0]["label"], "clip", "reject")
        wide = t.pivot_table(
            index=["trace_display", "budget", "design_display"],
            columns="policy",
            values=["max_rate_vs_baseline-a100", "max_rate_vs_baseline-h100"],
            aggfunc="first",
            sort=False,
        )
        wide.columns = [f"{a.removeprefix('max_rate_vs_')} ({b})" for a, b in wide.columns]
        wide = wide.reset_index()
        cols = [("trace_display", "trace", ""), ("budget", "budget", ""),
                ("design_display", "design", "")]  # fmt: skip
        cols += [(c, f"x {c}", ".2f") for c in wide.columns[3:]]
        md += [
            f"Ratios of the highest SLO-meeting rate to the baselines: study "
            f"`{by_policy['clip'][0]['label']}` (clip) vs `{by_policy['reject'][0]['label']}` "
            "(reject).",
            "",
            md_table(wide, cols),
            "",
        ]
    else:
        md += [
            "<!-- PLACE: headline ratios under context_policy=reject -->",
            "**Not measured in this report's inputs.** Run the same study with every trace's "
            "`context_policy=reject` and give both studies to `splitbench-report`: this section "
            "then shows each design's ratios to the baselines under `clip` and under `reject` "
            "side by side.",
            "",
        ]
    return md


def study_section(figs: Figures, s: dict) -> list[str]:
    meta = s["meta"]
    st = meta["study"]
    name = s.get("slug", st["name"])
    title = s.get("label", st["name"])
    md = [f"## Study `{title}` ({vs.model_display(s)})", "", st.get("description", ""), ""]
    md += [f"Made by `{vs.study_command(s)}` (output places left out)."]
    if s.get("overrides"):
        md += ["Overrides: " + " ".join(f"`{o}`" for o in s["overrides"])]
    md += [""]
    sims = meta.get("simulations", {})
    sea = meta.get("search", {})
    slo = meta["slo"]
    md.append(
        f"Model {meta['model'].get('name')} (TP{meta['model'].get('tp')}); profiles "
        f"`{meta['profiles'].get('source')}`; SLO `{slo.get('name')}` "
        f"(slowdown limits at P{'/P'.join(f'{p:g}' for p in slo.get('percentiles', []))}: "
        f"TTFT {slo.get('ttft')}, TBT {slo.get('tbt')}, E2E {slo.get('e2e')}); "
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
    md += ["", serving_describe(meta.get("serving"))]  # the serving component: zeros by default
    md.append("")
    for n in meta.get("notes", []):
        md.append(f"- Note: {n}")
    md.append("")
    md += _failures(s["points"])
    b = own_rows(s["budget"])  # other profile sets: engines_section
    if not b.empty:
        md += ["### Iso-power and iso-cost", ""]
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
            ("max_rate_vs_baseline-a100", "x Baseline-A100", ".2f"),
            ("max_rate_vs_baseline-h100", "x Baseline-H100", ".2f"),
        ]
        bb = b.copy()
        bb["config"] = [config_label(r) for _, r in bb.iterrows()]
        bb["power_kw"] = w_to_kw(bb["power_w"])
        for (tr, bud), grp in bb.groupby(["trace_display", "budget"], sort=False):
            md += [f"**{tr} trace, {bud}**", "", md_table(grp, cols), ""]
        bars = sf.fig_budget_bars(figs, b, name)
        if bars:
            md += [f"![max rate per design]({bars})", ""]
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
        tt["config"] = [config_label(r) for _, r in tt.iterrows()]
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
            for title_, sub in parts:
                md += [f"**{tr} trace at {rate:g} req/s, {title_}**", "", md_table(sub, cols), ""]
    md += context_section(s)
    md += extrapolation_section(s)
    traces = list(dict.fromkeys(b["trace"])) if not b.empty else []
    for tr in traces:
        disp = b[b["trace"] == tr]["trace_display"].iloc[0]
        md += [f"### Latency and SLO attainment: {disp} trace", ""]
        cdf = sf.fig_cdfs(figs, s["latency_quantiles"], b, name, tr, slo=slo)
        if cdf:
            md += [
                "Per design, at its best iso-power configuration and highest SLO-meeting "
                "rate. TBT is token-weighted: every gap between two tokens of a request counts "
                "once. Dotted lines: the percentiles the SLO judges, with their limits "
                "(slowdowns over the same request run alone on the reference machine, so "
                "they are not seconds and do not sit at one latency).",
                "",
                f"![CDFs]({cdf})",
                "",
            ]
        slo_fig = sf.fig_slo_vs_rate(figs, s["points"], b, name, tr)
        if slo_fig:
            n_lim = len(slo.get("percentiles", [])) * 3
            md += [
                f"Worst of the {n_lim} slowdown percentiles over its limit, at every rate the "
                "search simulated on that configuration (<= 1: SLO met).",
                "",
                f"![SLO vs rate]({slo_fig})",
                "",
            ]
    h = s["heatmap"]
    if not h.empty:
        hm, cells = sf.fig_heatmap(figs, h, s["points"], name)
        n_sim = int((cells["source"] == "simulated").sum())
        n_fail = int((cells["status"] == "failed").sum())
        heat_err = sum(
            int(t.get("errors") or 0)
            for t in meta.get("tasks") or []
            if isinstance(t, dict) and t.get("kind") == "heatmap"
        )
        md += [
            "### Provisioning heatmap",
            "",
            f"SLO met, missed or failed over (prompt, token) machine counts and the cost of "
            f"the configurations that meet it; {n_sim} of {len(cells)} cells simulated (dark, "
            "dotted), the rest inferred by monotonicity (light: more machines never miss an "
            "SLO that fewer meet)"
            + (
                f"; {n_fail} cell(s) failed (grey: the simulation raised an error, not an SLO "
                "miss; the search treated them as misses)"
                if n_fail
                else ""
            )
            + (
                f"; the heatmap search had {heat_err} failed simulation(s) that the study's "
                "tables do not locate (no error per cell): those cells show as misses"
                if heat_err > n_fail
                else ""
            )
            + ". Colours: Okabe-Ito (colour-blind safe).",
            "",
            f"![heatmap]({hm})",
            "",
        ]
    return md


def _failures(points: pd.DataFrame) -> list[str]:
    if points.empty or "error" not in points.columns:
        return []
    bad = points[points["error"].notna() & (points["error"].astype(str) != "")]
    if bad.empty:
        return []
    first = str(bad["error"].iloc[0]).splitlines()[0]
    return [
        f"**{len(bad)} of the {len(points)} points in the study's points table failed** "
        f"(shown as failed, not as SLO misses); the first error: `{first}`",
        "",
    ]


def compare_section(figs: Figures, studies: list[dict]) -> list[str]:
    """Several studies side by side, each labelled by what sets it apart."""
    table = sf.compare_table(studies)
    if table.empty:
        return []
    md = [
        "## Studies compared",
        "",
        "Each study is labelled by the overrides it does not share with the others (or, "
        "without recorded overrides, the config keys that differ). Highest rate each design "
        "sustains under the SLO within each budget (req/s), per study.",
        "",
    ]
    labels = list(dict.fromkeys(table["study"]))
    # a study whose rows all stand, equal, in an earlier one (the same searches: e.g. the
    # robustness or seed studies' own default search) is named, not repeated in the table (the
    # figure and its CSV keep every study)
    rows = {lab: table[table["study"] == lab] for lab in labels}
    keyed = {
        lab: dict(
            zip(
                zip(t["trace_display"], t["budget"], t["design_display"], strict=True),
                t["max_rate"],
                strict=True,
            )
        )  # fmt: skip
        for lab, t in rows.items()
    }
    same: dict[str, str] = {}
    for i, lab in enumerate(labels):
        for prev in labels[:i]:
            if prev not in same and all(
                keyed[prev].get(k, np.nan) == v for k, v in keyed[lab].items()
            ):
                same[lab] = prev
                break
    shown = [lab for lab in labels if lab not in same]
    wide = (
        table[table["study"].isin(shown)]
        .pivot_table(
            index=["trace_display", "budget", "design_display"],
            columns="study",
            values="max_rate",
            aggfunc="first",
            sort=False,
        )
        .reset_index()
    )
    cols = [("trace_display", "trace", ""), ("budget", "budget", ""),
            ("design_display", "design", "")]  # fmt: skip
    cols += [(lab, f"`{lab}`", ".2f") for lab in shown if lab in wide.columns]
    md += [md_table(wide, cols), ""]
    if same:
        md += [
            "Not repeated (each of their rows equals the study named): "
            + ", ".join(f"`{lab}` (= `{prev}`)" for lab, prev in same.items())
            + ".",
            "",
        ]
    fig = sf.fig_compare(figs, table)
    if fig:
        md += [f"![studies compared]({fig})", ""]
    return md


def runs_section(figs: Figures, runs: list[dict]) -> list[str]:
    md = ["## Replay runs", ""]
    rows = []
    labels = [run_label(r) for r in runs]
    for r, label in zip(runs, labels, strict=True):
        s = r["summary"]
        d = s.get("design") or {}
        ctx = run_context(s)
        met = (s.get("slo") or {}).get("all_ok")  # None: no SLO judged (e.g. a load run)
        rows.append(
            {
                "run": label,
                "requests": (s.get("requests") or {}).get("completed"),
                "throughput": s.get("throughput_rps"),
                "ttft_p99": (s.get("ttft_s") or {}).get("p99"),
                "tbt_p99": (s.get("tbt_s") or {}).get("p99"),
                "e2e_p99": (s.get("e2e_s") or {}).get("p99"),
                "cost": s.get("cost_per_hour", d.get("cost_per_hour")),
                "power_kw": w_to_kw(s.get("provisioned_power_w", d.get("provisioned_power_w")))
                if s.get("provisioned_power_w", d.get("provisioned_power_w")) is not None
                else None,
                "slo": "-" if met is None else ("met" if met else "missed"),
                "context": _run_context_text(ctx),
            }
        )
    df = pd.DataFrame(rows)
    md += [
        "Numbers from each run's `summary.json`; context policy: the requests the "
        "context-window policy clipped or rejected and the tokens it removed (`-`: the summary "
        "has no context counts); SLO `-`: no SLO was judged (a load-generator run).",
        "",
        md_table(
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
                ("context", "context policy", ""),
            ],
        ),
        "",
    ]
    slo = None
    for r in runs:
        if r["point"] and isinstance(r["point"].get("slo"), dict):
            slo = r["point"]["slo"]
            break
    cdf, defs = sf.fig_run_cdfs(figs, runs, labels, slo=slo)
    if cdf:
        tdef = sorted(set(defs))
        md += [
            "CDFs at the study's quantile levels and by its definitions; TBT: "
            + " / ".join(
                "token-weighted (every gap between two tokens of a request counts once)"
                if t == "token-weighted"
                else t
                for t in tdef
            )
            + (
                ". Dotted lines: the SLO's judged percentiles and limits (slowdowns)."
                if slo
                else "."
            ),
            "",
            f"![run CDFs]({cdf})",
            "",
        ]
    return md


def _run_context_text(ctx: dict | None) -> str:
    if ctx is None:
        return "-"

    def n(k: str) -> str:
        return "?" if ctx.get(k) is None else f"{ctx[k]:,}"

    def tok(k: str) -> str:
        return "tokens not recorded" if ctx.get(k) is None else f"{ctx[k]:,} tokens"

    of = f" of {ctx['requests']:,}" if isinstance(ctx.get("requests"), int) else ""
    return (
        f"{ctx.get('policy') or '?'} at {ctx.get('max_context') or '?'} tokens: "
        f"{n('clipped')}{of} clipped ({tok('clipped_tokens')}), "
        f"{n('rejected')} rejected ({tok('rejected_tokens')})"
    )


def phase_section(figs: Figures, out: Path, profiles_source: str, model: str) -> list[str]:
    md = ["## Phase characterization", ""]
    try:
        figures, err = phase_figures(figs, profiles_source, model)
    except Exception as e:  # noqa: BLE001 - the rest of the report stands without it
        figures, err = [], pd.DataFrame()
        md += [f"Phase figures skipped: {type(e).__name__}: {str(e).splitlines()[0]}", ""]
    md += [
        f"Profile table `{profiles_source}` (points) and the fitted phase model "
        f"(lines), {model}, TP8.",
        "",
    ]
    for path, caption in figures:
        md += [f"![{path}]({path})", "", caption, ""]
    if not err.empty:
        keep = [
            c for c in ("gpu", "tp", "phase", "points", "mape", "max_error") if c in err.columns
        ]
        if "power_source" in err.columns:
            keep.append("power_source")
        e = err[keep].copy()
        figs.csv(err, "phase_model_errors")
        md += [
            "Phase model held-out error (fraction); power source `measured` or the A100 shape "
            "scaled (fallback):",
            "",
            md_table(
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
    if profiles_source == "reference":
        md += derivation_section(figs)
    return md


def derivation_section(figs: Figures) -> list[str]:
    """The held-out error of derived phase models (characterize.modeling.derive): each GPU's
    profile derived from the other's reference rows only, against its measured points."""
    from characterize.modeling.derive import reference_check

    err = reference_check()
    figs.csv(err, "derivation_errors")
    keep = ["from_gpu", "to_gpu", "model", "tp", "phase", "points", "mape", "max_error", "bias"]
    dec, pre = (err.loc[err["phase"] == p, "mape"] for p in ("decode", "prefill"))
    return [
        "### Derived phase models (GPUs nobody profiled)",
        "",
        "A GPU without a measured profile (H200, B200, ...) gets a phase model DERIVED from its "
        "spec and the efficiencies a profiled GPU achieved (`splitbench-profiles derive`); "
        "designs on such profiles are labelled `(derived)`. How wrong that is, measured by "
        "deriving each reference GPU from the other's rows only "
        "(`splitbench-profiles derive --check`; fractions):",
        "",
        md_table(
            err[keep], [(c, c, ".3f" if c in ("mape", "max_error", "bias") else "") for c in keep]
        ),  # fmt: skip
        "",
        f"Decode MAPE: mean {dec.mean():.1%}, worst {dec.max():.1%}; prefill: mean "
        f"{pre.mean():.1%}, worst {pre.max():.1%} (target 15% per phase). Where prefill misses "
        "it, the paper's engine reached a smaller share of the H100's bf16 peak than of the "
        "A100's, which no spec number predicts; a few measured points of the target GPU through "
        "the phase model's calibration would correct it.",
        "",
    ]


def report_folder(inputs: Sequence[str | os.PathLike], base: str | os.PathLike) -> Path:
    """``base/<inputs set>``: the folder of the report of ``inputs`` (one per study, or per set
    of studies and runs), named by the study's label (its name and overrides)."""
    studies, runs = load_inputs(inputs)
    return Path(base) / inputs_slug(studies, runs)


def write_report(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    per_inputs: bool = True,
    profiles_source: str = "reference",
    model: str = "llama2-70b",
    phase: bool = True,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 110,
    command: str | None = None,
) -> Path:
    """Write ``report.md`` and ``figures/*`` from study and run folders into
    ``out_dir/<inputs set>`` (one folder per study or inputs set, see :func:`report_folder`), or
    with ``per_inputs=False`` into ``out_dir`` itself. Files of ``figures/`` that this report did not write are removed
    (nothing stale stays beside it). Returns report.md's path."""
    _check_out_dir(Path(out_dir))
    studies, runs = load_inputs(inputs)
    out = Path(out_dir) / inputs_slug(studies, runs) if per_inputs else Path(out_dir)
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
    versions = list(dict.fromkeys(str(s["meta"].get("code_version", "?")) for s in studies))
    if len(versions) > 1:
        md += [
            f"The studies ran at {len(versions)} code versions ("
            + ", ".join(f"`{v}`" for v in versions)
            + "; each study's is under *Configs and versions*): a study's numbers are its own "
            "version's, and a rerun at another version recomputes its points (the cache keys on "
            "the code).",
            "",
        ]
    md += vs.headline_section(figs, studies)
    if len(studies) > 1:
        md += compare_section(figs, studies)
    for s in studies:
        md += study_section(figs, s)
        md += engines_section(figs, s)
        md += vs.study_extra_sections(figs, s, studies)
    if studies:
        md += reject_section(studies)
    if runs:
        md += runs_section(figs, runs)
    if phase:
        md += phase_section(figs, out, profiles_source, model)
    md += ["## Configs and versions", ""]
    for s in studies:
        meta = s["meta"]
        config = _portable(s["config"])
        md += [
            f"Study `{s['label']}`: code `{meta.get('code_version')}`; "
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
    figs.remove_stale()
    return path


def _check_out_dir(out: Path) -> None:
    """Refuse an output folder under a file before reading or writing anything."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ExperimentError(f"output_dir: '{p}' is a file, not a folder ({out})")
            return


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


__all__ = ["write_report", "report_folder", "atomic_csv"]
