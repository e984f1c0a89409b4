"""A study's section on its phase models queried beyond the range their profiles measured:
the points so noted, by kind, with the widest note of each kind (``points.csv``'s
``extrapolated``)."""

from __future__ import annotations

import pandas as pd

from experiments.report.format import md_table

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
