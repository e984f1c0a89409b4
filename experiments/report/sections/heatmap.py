"""A study's provisioning heatmap section: SLO met, missed or failed over (prompt, token) machine
counts, simulated or inferred by monotonicity (``heatmap.csv``, ``points.csv``)."""

from __future__ import annotations

from experiments.report import study_figures as sf
from experiments.report.plotting import Figures


def heatmap_section(figs: Figures, s: dict) -> list[str]:
    h = s["heatmap"]
    if h.empty:
        return []
    hm, cells = sf.fig_heatmap(figs, h, s["points"], s.get("slug", s["meta"]["study"]["name"]))
    n_sim = int((cells["source"] == "simulated").sum())
    n_fail = int((cells["status"] == "failed").sum())
    heat_err = sum(
        int(t.get("errors") or 0)
        for t in s["meta"].get("tasks") or []
        if isinstance(t, dict) and t.get("kind") == "heatmap"
    )
    return [
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
