"""One task's search: its points through the cache, its answer from its kind.

The call chain of a point (downward only): :func:`run_task` -> the kind's ``search``
(:mod:`experiments.study.kinds`) -> a search of :mod:`experiments.provision` ->
:class:`experiments.point.PointEvaluator` -> :meth:`experiments.cache.PointCache.evaluate` ->
:func:`experiments.point.evaluate_point` -> ``replay.simulate.simulate`` (its ``ReplaySummary``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from experiments.cache import PointCache
from experiments.point import PointEvaluator
from experiments.study.kinds import kind_of
from experiments.study.pools import pools_of
from experiments.study.task import StudyContext, Task


def evaluator_of(ctx: StudyContext, task: Task, cache: PointCache) -> PointEvaluator:
    """The points of ``task``: its own settings where it has them, else the context's."""
    return PointEvaluator(
        model=task.model or ctx.model,
        design=task.design,
        trace=task.trace,
        scheduler=task.scheduler or ctx.scheduler,
        slo=ctx.slo,
        serving=ctx.serving,
        profiles=task.profiles or ctx.profiles,
        search=ctx.search,
        seed=task.seed,
        cache=cache,
        fn=ctx.evaluator,
        progress_file=ctx.progress_file,
    )


def run_task(ctx: StudyContext, task: Task) -> dict:
    """Run one search; a JSON-able dict with the answer and every point it looked at."""
    cache = PointCache(
        Path(ctx.cache_dir) if ctx.cache_dir else None, ctx.cache_enabled, ctx.retry_errors
    )
    kind = kind_of(task)
    if kind.dependent:  # run alone (not after its wave): its source's and peer's answers first
        if task.source_result is None:
            task.source_result = answer_of(run_task(ctx, task.source))
        if task.peer is not None and task.peer_result is None:
            task.peer_result = answer_of(run_task(ctx, task.peer))
    pools = pools_of(task.design, ctx.search, task.grid)
    t0 = time.perf_counter()
    out: dict = {"kind": task.kind, "trace": task.trace_key, "design": task.design_key}
    out.update(kind.search(ctx, task, evaluator_of(ctx, task, cache), pools))
    out["pools"] = [asdict(p) for p in pools]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["evaluated"] = cache.stats.evaluated
    out["cache_hits"] = cache.stats.hits
    out["errors"] = cache.stats.errors
    return out


def answer_of(res: dict) -> dict:
    """What a dependent task takes from its source's (or peer's) result."""
    return {"best": res.get("best"), "rate": res.get("rate")}
