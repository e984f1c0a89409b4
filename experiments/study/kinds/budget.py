"""``budget``: the highest rate any configuration within a power/cost budget serves within the
SLO, and that configuration (the paper's iso-power and iso-cost comparisons)."""

from __future__ import annotations

import json
from dataclasses import asdict

from experiments.provision import Budget, RateGrid, affordable_frontier, max_rate_under_budget
from experiments.study.kinds.base import Kind, best_rows
from experiments.study.pools import pools_of


class BudgetKind(Kind):
    name = "budget"

    def dedup(self, task, search) -> str:
        """Budget tasks with the same affordable frontier are the same search."""
        cands = affordable_frontier(pools_of(task.design, search), Budget(**task.budget))
        return json.dumps(
            [
                task.trace_key,
                task.design_key,
                cands,
                task.profiles,
                asdict(task.trace),
                asdict(task.design),
                asdict(task.scheduler) if task.scheduler is not None else None,
                task.seed,
                *([task.model.name] if task.model is not None else []),
            ],
            sort_keys=True,
            default=str,
        )

    def search(self, ctx, task, ev, pools) -> dict:
        s = ctx.search
        grid = RateGrid(s.rate_min, s.rate_max, s.rate_step)
        start = s.rate_start
        if s.rate_start_per_machine:
            cands = affordable_frontier(pools, Budget(**task.budget))
            if cands:
                start = s.rate_start_per_machine * sum(cands[len(cands) // 2])
        res = max_rate_under_budget(
            ev,
            pools,
            Budget(**task.budget),
            grid,
            frontier=s.frontier,
            coarse_points=s.coarse_points,
            rate_start=start,
            mode=s.mode,
        )
        return {
            "best": res.best,
            "rate": res.rate,
            "candidates": len(res.candidates),
            "config_rates": [[list(c), r] for c, r in res.config_rates.items()],
            "points": res.points,
        }

    def describe(self, res: dict) -> str:
        return f"max {res.get('rate')} req/s at {res.get('best')}"

    def rows(self, task, res, pools, base, tables) -> None:
        best_rows(task, res, pools, base, tables, lambda r: {})
