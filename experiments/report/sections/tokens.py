"""Token distribution (``variants.csv``, groups :data:`~experiments.report.describe.TOKEN_GROUPS`):
prompt and output lengths scaled."""

from __future__ import annotations

from experiments.report.describe import TOKEN_GROUPS, variant_groups
from experiments.report.plotting import Figures
from experiments.report.sections.variant_tables import variant_block


def token_section(figs: Figures, s: dict) -> list[str]:
    groups = [g for g in variant_groups(s) if g in TOKEN_GROUPS]
    if not groups:
        return []
    md = [
        "### Token distribution: prompt and output lengths scaled",
        "",
        "Every request's prompt or output length scaled (the model's context window applies "
        "after the scaling: the context counts of the points say how many were clipped).",
        "",
    ]
    return md + variant_block(figs, s, groups, "tokens", "with the lengths scaled")
