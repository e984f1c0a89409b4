"""A study's plan: its tasks (deduplicated: tasks that are the same search run once) and the
notes the report prints.

Per trace, every design of every profile set (:mod:`experiments.study.sets`) gets a budget task
per budget and, where the trace has an iso-throughput rate, a throughput task; the heatmap is
one task; then the tasks that start from a budget task's best configuration (variants,
mismatch, load curves, batch jobs) of ``study.designs`` in the study's own set.
"""

from __future__ import annotations

from experiments.config import schemas
from experiments.errors import ExperimentError
from experiments.study.pools import budget_of


class _Plan:
    """The tasks planned so far, by search: a task equal to one already planned adds its
    label to that one."""

    def __init__(self, search: schemas.SearchConf):
        self.search = search
        self.tasks: dict = {}

    def add(self, task, label: dict):
        from experiments.study.kinds import kind_of

        sig = kind_of(task).dedup(task, self.search)
        if sig not in self.tasks:
            self.tasks[sig] = task
        self.tasks[sig].labels.append(label)
        return self.tasks[sig]


def plan(cfg: dict) -> tuple[list, list[str]]:
    """The study's tasks (deduplicated) and notes for the report."""
    from experiments.study.sets import profile_runs

    notes: list[str] = []
    runs = profile_runs(cfg, notes)
    p = _Plan(cfg["search"])
    base = _plan_searches(cfg, runs, p)
    st: schemas.StudySpec = cfg["study"]
    if st.heatmap:
        _plan_heatmap(cfg, runs[0], p)
    _plan_dependent(cfg, base, p.add)
    # Largest searches first (A100 designs have the most machines) for load balance.
    from experiments.study.kinds import kind_of

    order = sorted(p.tasks.values(), key=lambda t: (not kind_of(t).first, not t.design.is_split))
    return order, notes


def _plan_searches(cfg: dict, runs: list, p: _Plan) -> dict:
    """Budget and throughput tasks of every set's designs on every trace; returns the own
    set's ``variant_budget`` tasks by (trace, design)."""
    from experiments.study.task import Task

    st: schemas.StudySpec = cfg["study"]
    base: dict = {}  # (trace, design) -> its variant_budget task
    for tk in st.traces:
        for run in runs:
            for dk in run.designs:
                on, design = run.on(dk), run.design(cfg, dk)
                for b in st.budgets:
                    budget = budget_of(b)
                    t = p.add(
                        Task("budget", tk, cfg["traces"][tk], dk, design, budget=budget, **on),
                        {"budget": b.name, "budget_w": budget["power_w"],
                         "budget_cost": budget["cost_per_hour"], **run.label(dk)},
                    )  # fmt: skip
                    if b.name == st.variant_budget and run.own:
                        base[(tk, dk)] = t
                if tk in st.iso_throughput_rates:
                    p.add(
                        Task("throughput", tk, cfg["traces"][tk], dk, design,
                             rate=float(st.iso_throughput_rates[tk]), **on),
                        {"budget": "iso-throughput", **run.label(dk)},
                    )  # fmt: skip
    return base


def _plan_heatmap(cfg: dict, own, p: _Plan) -> None:
    from experiments.study.task import Task

    h = cfg["heatmap"]
    p.add(
        Task("heatmap", h.trace, cfg["traces"][h.trace], h.design, cfg["designs"][h.design],
             rate=h.rate, grid=(h.prompt_max, h.token_max), **own.on(h.design)),
        {"budget": "heatmap"},
    )  # fmt: skip


def _plan_dependent(cfg: dict, base: dict, add) -> None:
    """The tasks that start from a budget task's best configuration: variants (each design at
    its ``variant_budget`` configuration under changed settings, or re-provisioned), mismatch
    (served another trace), load curves and batch jobs. Only ``study.designs`` of the study's
    own profile set take part (not ``extra_designs``, not ``profile_sets``); each keeps its
    budget task's profiles."""
    from experiments.study.task import Task

    st: schemas.StudySpec = cfg["study"]
    wanted = st.variants or st.mismatch or st.load_factors or st.batch_overload
    if not wanted:
        return
    if not base:
        raise ExperimentError(
            f"study.variant_budget: no budget named '{st.variant_budget}' in study.budgets"
        )
    for (tk, dk), src in base.items():
        if dk not in st.designs:
            continue
        design, trace = cfg["designs"][dk], cfg["traces"][tk]
        lab = {"budget": st.variant_budget}
        _plan_variants(cfg, tk, dk, src, add)
        if st.mismatch:
            for other in st.traces:
                if other != tk:
                    add(Task("fixed", other, cfg["traces"][other], dk, design, source=src,
                             profiles=src.profiles, peer=base.get((other, dk))),
                        {**lab, "mismatch": f"{tk}->{other}"})  # fmt: skip
        if st.load_factors:
            add(Task("load", tk, trace, dk, design, source=src, profiles=src.profiles,
                     factors=tuple(float(f) for f in st.load_factors)),
                {**lab, "load": True})  # fmt: skip
        if st.batch_overload:
            add(Task("batch", tk, trace, dk, design, source=src, profiles=src.profiles,
                     overload=float(st.batch_overload)),
                {**lab, "batch": True})  # fmt: skip


def _plan_variants(cfg: dict, tk: str, dk: str, src, add) -> None:
    """Design ``dk`` on trace ``tk`` under each of ``study.variants`` (from ``src``, its
    ``variant_budget`` task): a fixed task, or a budget one with ``study.reprovision``."""
    from dataclasses import replace

    from experiments import point
    from experiments.study.task import Task
    from experiments.variants import Settings, applies, apply_variant

    st: schemas.StudySpec = cfg["study"]
    design = cfg["designs"][dk]
    plain = Settings(cfg["scheduler"], cfg["profiles"], cfg["traces"][tk], design,
                     cfg["search"].seed)  # fmt: skip
    for i, v in enumerate(st.variants):
        got = apply_variant(v, plain, f"study.variants[{i}]")
        prof = None
        if got.profiles != plain.profiles:  # on the design's own set (a GPU the base lacks)
            gp = got.profiles
            if src.profiles:
                gp = replace(gp, source=src.profiles["source"])
            prof = point.profiles_identity(gp)
        add(
            Task(
                "budget" if st.reprovision else "fixed",
                tk,
                got.trace,
                dk,
                got.design,
                budget=src.budget,
                profiles=prof or src.profiles,
                scheduler=got.scheduler if got.scheduler != plain.scheduler else None,
                seed=got.seed if got.seed != plain.seed else None,
                source=None if st.reprovision else src,
            ),
            {"budget": st.variant_budget, "variant": v.name, "group": v.group,
             "variant_label": v.label, "applies": applies(v, design)},
        )  # fmt: skip
