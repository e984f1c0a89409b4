"""``batch``: completion throughput (no SLO) of evenly spaced configurations of the source's
budget frontier at a saturating offered rate, per $/h and per kW (batch jobs)."""

from __future__ import annotations

from experiments.provision import Budget, Pool, SearchLog, affordable_frontier, cost_of, power_of
from experiments.study.kinds.base import DependentKind
from experiments.study.kinds.rows import machine_columns


class BatchKind(DependentKind):
    name = "batch"

    def from_best(self, ctx, task, ev, pools, best, src_rate, grid) -> dict:
        log = SearchLog(ev)
        offered = grid.rates[grid.index_near(task.overload * src_rate)]
        configs = batch_configs(pools, task.source.budget, best, ctx.batch_configs)
        for c in configs:
            log.met(tuple(c), offered)
        return {"best": best, "rate": offered, "configs": [list(c) for c in configs],
                "points": log.points}  # fmt: skip

    def rows(self, task, res, pools, base, tables) -> None:
        for p in res["points"]:
            row = _batch_row(task.design, p, pools)
            row["slo_config"] = list(p["counts"]) == list(res["best"] or [])
            tables["batch"].append({**base, "slo_max_rate": res["source_rate"], **row})


def batch_configs(pools: list[Pool], budget: dict, best, n: int) -> list[tuple[int, ...]]:
    """``n`` evenly spaced configurations of the budget's frontier, and ``best`` (the SLO
    search's), in frontier order."""
    cands = affordable_frontier(pools, Budget(**budget))
    if len(cands) <= n:
        pick = list(cands)
    else:
        pick = [cands[round(j * (len(cands) - 1) / (n - 1))] for j in range(n)] if n > 1 else []
    if best is not None and tuple(best) not in pick:
        pick.append(tuple(best))
    order = {c: i for i, c in enumerate(cands)}
    return sorted(set(pick), key=lambda c: order.get(c, -1))


def _batch_row(design, p: dict, pools: list[Pool]) -> dict:
    """Completion throughput of one configuration at a saturating offered rate, per $/h and per
    kW of provisioned power. ``saturated``: completions fell short of the offered rate by 5% or
    more (below that, the throughput is a lower bound of the capacity)."""
    r = p["result"]
    c = tuple(p["counts"])
    thr = r.get("throughput_rps")
    cost, power = cost_of(pools, c), power_of(pools, c)
    return {
        **machine_columns(design, c),
        "offered_rate": p["rate"],
        "status": "failed" if r.get("error") else "ok",
        "throughput_rps": thr,
        "saturated": None if thr is None else bool(thr < 0.95 * p["rate"]),
        "cost_per_hour": cost,
        "power_w": power,
        "requests_per_dollar": thr * 3600.0 / cost if thr is not None and cost else None,
        "rps_per_kw": thr / (power / 1000.0) if thr is not None and power else None,
        "error": r.get("error"),
    }


def best_batch(rows: list[dict]) -> None:
    """Mark each (trace, design)'s best configuration per $ and per kW."""
    for key in ("requests_per_dollar", "rps_per_kw"):
        best: dict = {}
        for r in rows:
            g, v = (r["trace"], r["design"]), r.get(key)
            if v is not None and (g not in best or v > best[g].get(key)):
                best[g] = r
        for r in rows:
            r[f"best_{key}"] = best.get((r["trace"], r["design"])) is r
