"""The paper's design comparisons: iso-power, iso-cost, iso-throughput and the provisioning
heatmap, and the studies beyond them (variants, trace mismatch, load curves, batch jobs), as
searches over cached simulated points.

A study is a list of *tasks* (:mod:`.task`: one search each, of a kind in :mod:`.kinds`: a design
on a trace under a budget, at a target rate, over a machine grid, or from another task's best
configuration). :mod:`.plan` makes them (tasks with identical searches, e.g. Baseline-H100 at
iso-power and at iso-cost, run once) on the profile sets of :mod:`.sets`; :mod:`.execute` runs
them on joblib, Ray or submitit; :mod:`.assemble` turns their results into the tables
:mod:`.tables` names; :mod:`.run` is the whole study and :mod:`.output` writes it. Each task
evaluates points through the on-disk :class:`~experiments.cache.PointCache`
(:class:`experiments.point.PointEvaluator`), so a rerun recomputes nothing.

To add a study kind: a class in ``kinds/`` (search, progress line, rows), its name in
``kinds/__init__.py``, its planning in ``plan.py`` and, for a new table, ``tables.py``.
"""

from __future__ import annotations

from experiments.study.assemble import assemble, latency_rows
from experiments.study.execute import BACKENDS, check_backend, run_tasks
from experiments.study.plan import plan
from experiments.study.pools import budget_of, pools_of
from experiments.study.run import StudyInterrupted, context_of, run_point, run_study
from experiments.study.task import StudyContext, Task

__all__ = [
    "BACKENDS",
    "StudyContext",
    "StudyInterrupted",
    "Task",
    "assemble",
    "budget_of",
    "check_backend",
    "context_of",
    "latency_rows",
    "plan",
    "pools_of",
    "run_point",
    "run_study",
    "run_tasks",
]
