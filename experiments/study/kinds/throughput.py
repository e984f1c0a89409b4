"""``throughput``: the cheapest (and the lowest-power) configuration that serves a given rate
within the SLO (the paper's iso-throughput comparison)."""

from __future__ import annotations

from experiments.provision import cost_of, min_machines, power_of
from experiments.study.kinds.base import Kind
from experiments.study.kinds.rows import machine_columns

#: the configurations an iso-throughput search reports, one row each
OBJECTIVES = ("cheapest", "lowest_power")


class ThroughputKind(Kind):
    name = "throughput"

    def search(self, ctx, task, ev, pools) -> dict:
        res = min_machines(ev, pools, task.rate, mode=ctx.search.mode)
        return {
            "rate": task.rate,
            "frontier": [list(c) for c in res.frontier],
            "cheapest": res.cheapest,
            "lowest_power": res.lowest_power,
            "smallest": res.smallest,
            "points": res.points,
        }

    def describe(self, res: dict) -> str:
        return f"cheapest {res.get('cheapest')}"

    def rows(self, task, res, pools, base, tables) -> None:
        for objective in OBJECTIVES:
            c = res[objective]
            tables["iso_throughput"].append(
                {
                    **base,
                    "rate": res["rate"],
                    "objective": objective,
                    **machine_columns(task.design, c),
                    "cost_per_hour": cost_of(pools, tuple(c)) if c else None,
                    "power_w": power_of(pools, tuple(c)) if c else None,
                    "simulations": len(res["points"]),
                }
            )
