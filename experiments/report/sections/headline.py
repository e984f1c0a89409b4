"""The headline ratios with their seed interval over every seeds study of the inputs, the models
side by side (``figures/headline_intervals.csv``)."""

from __future__ import annotations

import pandas as pd

from experiments.report.describe import has_seeds, study_command
from experiments.report.format import md_rows
from experiments.report.plotting import Figures
from experiments.report.sections.seeds import interval_text, seed_intervals


def headline_intervals(studies: list[dict]) -> pd.DataFrame:
    """The seed intervals of every seeds study of the inputs, one block per model."""
    frames = [seed_intervals(s) for s in studies if has_seeds(s)]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def headline_section(figs: Figures, studies: list[dict]) -> list[str]:
    """The headline ratios with their seed interval, the models side by side; also as
    ``figures/headline_intervals.csv``."""
    iv = headline_intervals(studies)
    if iv.empty:
        return []
    figs.csv(iv, "headline_intervals")
    models = list(dict.fromkeys(iv["model_display"]))
    wide: dict[tuple, dict] = {}
    for _, r in iv.iterrows():
        k = (r["trace_display"], r["design_display"], r["vs_display"])
        wide.setdefault(k, {})[r["model_display"]] = interval_text(r)
    rows = [[tr, f"{des} / {vs}", *(cells.get(m, "-") for m in models)]
            for (tr, des, vs), cells in wide.items()]  # fmt: skip
    srcs = [s for s in studies if has_seeds(s)]
    n = sorted(set(iv["seeds"]))
    md = [
        "## Headline ratios with their seed intervals",
        "",
        "Splitwise max rate under the SLO over the baseline's at the same budget: median "
        f"[min, max] over {'/'.join(map(str, n))} re-sampling seeds (seed 0: each study's own "
        "search; the others: its seed variants at seed 0's configuration). Data: "
        "`figures/headline_intervals.csv`. Made by "
        + "; ".join(f"`{study_command(s)}` (study `{s['label']}`)" for s in srcs)
        + ".",
        "",
        md_rows(["trace", "comparison", *models], rows, [False, False] + [True] * len(models)),
        "",
    ]
    return md
