"""A study's own section: its title, command, model, profiles, SLO and search, its serving
component and notes, the points that failed; then its subsections (:data:`SUBSECTIONS`)."""

from __future__ import annotations

import pandas as pd

from experiments.report.describe import model_display, study_command
from experiments.report.plotting import Figures
from experiments.report.sections.budget import budget_section
from experiments.report.sections.context import context_section
from experiments.report.sections.extrapolation import extrapolation_section
from experiments.report.sections.heatmap import heatmap_section
from experiments.report.sections.iso_throughput import iso_throughput_section
from experiments.report.sections.latency import latency_section
from replay.serving import describe as serving_describe


def _search_text(meta: dict) -> str:
    """The study's model, profiles, SLO and search in one paragraph."""
    sims = meta.get("simulations", {})
    sea = meta.get("search", {})
    slo = meta["slo"]
    return (
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


def _intro(s: dict) -> list[str]:
    meta = s["meta"]
    st = meta["study"]
    title = s.get("label", st["name"])
    md = [f"## Study `{title}` ({model_display(s)})", "", st.get("description", ""), ""]
    md += [f"Made by `{study_command(s)}` (output places left out)."]
    if s.get("overrides"):
        md += ["Overrides: " + " ".join(f"`{o}`" for o in s["overrides"])]
    md += ["", _search_text(meta)]
    md += ["", serving_describe(meta.get("serving"))]  # the serving component: zeros by default
    md.append("")
    for n in meta.get("notes", []):
        md.append(f"- Note: {n}")
    md.append("")
    return md + _failures(s["points"])


#: the subsections of a study's own section, in order
SUBSECTIONS = (
    budget_section,
    iso_throughput_section,
    lambda figs, s: context_section(s),
    lambda figs, s: extrapolation_section(s),
    latency_section,
    heatmap_section,
)


def study_section(figs: Figures, s: dict) -> list[str]:
    md = _intro(s)
    for section in SUBSECTIONS:
        md += section(figs, s)
    return md
