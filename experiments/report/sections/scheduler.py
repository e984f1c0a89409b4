"""Scheduler (``variants.csv``, groups :data:`~experiments.report.describe.SCHEDULER_GROUPS`):
what JSQ routing and the mixed pool buy."""

from __future__ import annotations

from experiments.report.describe import SCHEDULER_GROUPS, variant_groups
from experiments.report.plotting import Figures
from experiments.report.sections.variant_tables import variant_block


def scheduler_section(figs: Figures, s: dict) -> list[str]:
    groups = [g for g in variant_groups(s) if g in SCHEDULER_GROUPS]
    if not groups:
        return []
    md = [
        "### Scheduler: what JSQ and the mixed pool buy",
        "",
        "The default is the reference scheduler (join-the-shortest-queue routing, the mixed "
        "pool on for Splitwise designs); each variant changes one part of it.",
        "",
    ]
    return md + variant_block(figs, s, groups, "scheduler", "under each scheduler")
