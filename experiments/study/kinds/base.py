"""What every task kind answers, and the row helpers the kinds share.

A kind (one class per file of this package) owns its search (:meth:`Kind.search`: the answer
and every point it looked at, JSON-able), its progress line (:meth:`Kind.describe`) and its
rows in the study tables (:meth:`Kind.rows`). A *dependent* kind starts from a budget task's
best configuration (``Task.source``) and runs in the study's second wave.
"""

from __future__ import annotations

from experiments.provision import Pool, RateGrid, cost_of, power_of
from experiments.study.kinds.rows import machine_columns, prefix_columns, row_metrics
from experiments.study.kinds.variants import variant_metrics


class Kind:
    """A task kind. ``name``: ``Task.kind``; ``dependent``: runs from a budget task's answer."""

    name = ""
    dependent = False
    first = False  # planned first (the budget searches: the largest, for load balance)

    def dedup(self, task, search) -> str:
        """The key under which two tasks are the same search (the plan runs one)."""
        return task.signature()

    def search(self, ctx, task, ev, pools: list[Pool]) -> dict:
        """The task's answer (``ev(counts, rate)``: a point's result; ``pools``: its design's
        pools); keys added to the task's result dict."""
        raise NotImplementedError

    def describe(self, res: dict) -> str:
        """What the progress line says of a finished task."""
        return f"{len(res.get('points', []))} points from {res.get('source_best')}"

    def rows(self, task, res: dict, pools: list[Pool], base: dict, tables: dict) -> None:
        """Append the task's rows to ``tables`` (table name -> rows); ``base``: the columns
        every row of the task starts with (trace, design, kind, profile set)."""
        raise NotImplementedError

    def latency_rows(self, task, res: dict) -> list[dict]:
        """The task's rows of the latency quantile table (none but a budget task's)."""
        return []


class DependentKind(Kind):
    """A kind that starts from its source (budget) task's best configuration and max rate."""

    dependent = True

    def search(self, ctx, task, ev, pools: list[Pool]) -> dict:
        src = task.source_result or {}
        best, src_rate = src.get("best"), src.get("rate")
        s = ctx.search
        grid = RateGrid(s.rate_min, s.rate_max, s.rate_step)
        out: dict = {"source_trace": task.source.trace_key, "source_best": best,
                     "source_rate": src_rate}  # fmt: skip
        if best is None or src_rate is None:
            out.update(best=None, rate=None, points=[])
            return out
        out.update(self.from_best(ctx, task, ev, pools, best, src_rate, grid))
        return out

    def from_best(self, ctx, task, ev, pools, best, src_rate, grid: RateGrid) -> dict:
        """The kind's answer from its source's ``best`` configuration and max rate; with
        ``points``: every point it looked at."""
        raise NotImplementedError


def best_rows(task, res: dict, pools: list[Pool], base: dict, tables: dict, extra) -> None:
    """The rows of a task that answers with a best configuration and its max rate (budget,
    fixed): one per label, in the table the label names (variants, mismatch, else budget).
    ``extra(res)``: the kind's own columns."""
    best = res["best"]
    m = row_metrics(res["points"], best, res["rate"]) if best else {}
    c = tuple(best) if best else None
    for lab in task.labels:
        table = (
            "variants" if lab.get("variant") else "mismatch" if lab.get("mismatch") else "budget"
        )
        tables[table].append(
            {
                **base,
                **lab,
                **machine_columns(task.design, best),
                "max_rate": res["rate"],
                "throughput_rps": m.get("throughput_rps"),
                "cost_per_hour": cost_of(pools, c) if best else None,
                "power_w": power_of(pools, c) if best else None,
                "configs_on_frontier": res.get("candidates"),
                "simulations": len(res["points"]),
                "failed_points": sum(bool(p["result"].get("error")) for p in res["points"]),
                **extra(res),
                **(
                    variant_metrics(res, best, m)
                    if lab.get("variant") or lab.get("mismatch")
                    else {}
                ),
                **prefix_columns(m),
            }
        )
