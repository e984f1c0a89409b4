"""The provisioning search's reference answer for tests: every configuration at every rate
(what ``experiments.provision``'s pruned searches must agree with)."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.provision import Budget, Counts, Evaluator, Pool, RateGrid, affordable_frontier


def brute_force_max_rate(
    evaluate: Evaluator, pools: Sequence[Pool], budget: Budget, grid: RateGrid
) -> tuple[float | None, list[Counts]]:
    """Reference answer: every maximal affordable configuration at every grid rate.

    Returns the best rate and every configuration achieving it.
    """
    best, who = None, []
    for c in affordable_frontier(pools, budget):
        ok = [r for r in grid.rates if evaluate(c, r).get("slo_met")]
        r = max(ok) if ok else None
        if r is not None and (best is None or r > best):
            best, who = r, [c]
        elif r is not None and r == best:
            who.append(c)
    return best, who
