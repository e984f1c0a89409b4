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
    first = True

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

    def latency_rows(self, task, res) -> list[dict]:
        """Long-format latency quantiles of the best configuration at every rate evaluated
        there (for CDFs and SLO-vs-rate figures)."""
        from experiments.study.tables import QUANTILE_LEVELS, SET_COLUMNS

        if not res.get("best"):
            return []
        rows = []
        for p in res["points"]:
            if list(p["counts"]) != list(res["best"]):
                continue
            for metric, vals in (p["result"].get("quantiles") or {}).items():
                for q, v in zip(QUANTILE_LEVELS, vals, strict=True):
                    rows.append(
                        {
                            "trace": task.trace_key,
                            "design": task.design_key,
                            **{
                                k: task.labels[0][k] for k in SET_COLUMNS[:1] if k in task.labels[0]
                            },
                            "design_display": task.design.display or task.design_key,
                            "budgets": "+".join(lab["budget"] for lab in task.labels),
                            "rate": p["rate"],
                            "best_rate": res["rate"],
                            "slo_met": p["slo_met"],
                            "metric": metric,
                            "quantile": q,
                            "value_s": v,
                        }
                    )
        return rows
