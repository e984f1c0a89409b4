"""``fixed``: the max rate of the source's best configuration under other settings (a variant)
or on another trace (a mismatch), searched over rates only."""

from __future__ import annotations

from experiments.provision import max_rate_of
from experiments.study.kinds.base import DependentKind, best_rows


class FixedKind(DependentKind):
    name = "fixed"

    def from_best(self, ctx, task, ev, pools, best, src_rate, grid) -> dict:
        peer = task.peer_result
        if peer is not None and peer.get("best") and list(peer["best"]) == list(best):
            return {"best": best, "rate": peer.get("rate"), "same_as_own": True, "points": []}
        rate, points = max_rate_of(ev, tuple(best), grid, src_rate)
        return {"best": best, "rate": rate, "points": points}

    def describe(self, res: dict) -> str:
        return f"max {res.get('rate')} req/s at {res.get('best')}"

    def rows(self, task, res, pools, base, tables) -> None:
        best_rows(task, res, pools, base, tables, _own_columns)


def _own_columns(res: dict) -> dict:
    return {
        "source_trace": res["source_trace"],
        "source_rate": res["source_rate"],
        "same_configuration": bool(res.get("same_as_own")),
    }
