"""A study's unit of work: one :class:`Task` (one search), run with one :class:`StudyContext`.

A task's ``kind`` names its class in :mod:`experiments.study.kinds` (budget, throughput,
heatmap, fixed, load, batch), which owns its search, its progress line and its table rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from experiments.config import schemas


@dataclass
class StudyContext:
    """Everything a worker process needs (plain dataclasses: picklable)."""

    model: schemas.ModelConf
    scheduler: schemas.SchedulerConf
    slo: schemas.SloConf
    profiles: dict  # point.profiles_identity(...)
    search: schemas.SearchConf
    cache_dir: str | None
    cache_enabled: bool = True
    retry_errors: bool = False
    evaluator: object = None  # None: point.evaluate_point; tests pass a cheap function
    progress_file: str | None = None  # one line appended per point looked at (progress bar)
    main_pid: int = 0  # the study's process (workers elsewhere ignore Ctrl-C: it stops here)
    batch_configs: int = 5  # study.batch_configs
    serving: object = None  # replay.serving.ServingConfig (None: every term zero)


@dataclass
class Task:
    """One search. ``budget``: the best configuration within a budget; ``throughput``: the
    cheapest for a rate; ``heatmap``: a machine grid; and, from the best configuration of
    ``source`` (a budget task): ``fixed`` (its max rate under other settings: a variant, another
    trace), ``load`` (points at ``factors`` x its max rate) and ``batch`` (throughput at a
    saturating rate on evenly spaced frontier configurations)."""

    kind: str  # a name of experiments.study.kinds.KINDS
    trace_key: str
    trace: schemas.TraceConf
    design_key: str
    design: schemas.DesignConf
    budget: dict | None = None  # {"power_w", "cost_per_hour"}
    rate: float | None = None
    grid: tuple[int, int] | None = None  # heatmap (prompt_max, token_max)
    profiles: dict | None = None  # overrides the context's (a GPU the base lacks, variants, sets)
    model: schemas.ModelConf | None = None  # overrides the context's (profile sets)
    labels: list[dict] = field(default_factory=list)  # which study rows this task answers
    scheduler: schemas.SchedulerConf | None = None  # overrides the context's (variants)
    seed: int | None = None  # overrides search.seed for the simulator and the re-sampling
    source: Task | None = None  # dependent kinds: the budget task whose best config is used
    factors: tuple[float, ...] | None = None  # load: rates as factors of the max rate
    overload: float | None = None  # batch: offered rate / SLO max rate
    source_result: dict | None = field(default=None, repr=False)  # set by run_tasks
    # fixed (mismatch): the served trace's own budget task; where its best configuration is the
    # source's, its max rate is the answer (one owner: the same configuration on the same trace
    # is not searched twice, which at finite trace lengths could disagree)
    peer: Task | None = field(default=None, repr=False)
    peer_result: dict | None = field(default=None, repr=False)  # set by run_tasks

    def signature(self) -> str:
        return json.dumps(
            [
                self.kind,
                self.trace_key,
                self.design_key,
                self.budget,
                self.rate,
                self.grid,
                self.profiles,
                asdict(self.trace),
                asdict(self.design),
                asdict(self.scheduler) if self.scheduler is not None else None,
                self.seed,
                self.source.signature() if self.source is not None else None,
                self.factors,
                self.overload,
                *([self.model.name] if self.model is not None else []),
            ],
            sort_keys=True,
            default=str,
        )


def label_text(lab: dict) -> str:
    """A task label as the progress lines and points.csv show it."""
    for k in ("variant", "mismatch"):
        if lab.get(k):
            return f"{lab['budget']} {k} {lab[k]}"
    for k in ("load", "batch"):
        if lab.get(k):
            return f"{lab['budget']} {k}"
    if lab.get("profile_set"):
        return f"{lab['budget']} {lab['profile_set']}"
    return lab["budget"]


def labels_text(task: Task) -> str:
    """Every label of a task, joined (points.csv's ``labels``)."""
    return "+".join(sorted({label_text(lab) for lab in task.labels}))
