"""Several studies side by side: the highest rate each design sustains under the SLO within
each budget, per study, each study labelled by what sets it apart."""

from __future__ import annotations

import numpy as np

from experiments.report import study_figures as sf
from experiments.report.format import md_table
from experiments.report.plotting import Figures


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
