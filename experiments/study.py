"""The paper's design comparisons: iso-power, iso-cost, iso-throughput and the provisioning
heatmap, as searches over cached simulated points, run in a joblib process pool.

A study is a list of *tasks* (one search each: a design on a trace under a budget, at a
target rate, or over a machine grid). Tasks with identical searches (e.g. Baseline-H100 at
iso-power and at iso-cost: both are 40 machines) run once. Each task evaluates points through
the on-disk :class:`~experiments.cache.PointCache`, so a rerun recomputes nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from experiments.cache import PointCache
from experiments.config import schemas
from experiments.errors import ExperimentError
from experiments.provision import (
    Budget,
    Pool,
    RateGrid,
    SearchLog,
    affordable_frontier,
    cost_of,
    heatmap,
    max_rate_of,
    max_rate_under_budget,
    min_machines,
    power_of,
)


@dataclass
class StudyContext:
    """Everything a worker process needs (plain dataclasses: picklable)."""

    model: schemas.ModelConf
    scheduler: schemas.SchedulerConf
    slo: schemas.SloConf
    profiles: dict  # runner.profiles_identity(...)
    search: schemas.SearchConf
    cache_dir: str | None
    cache_enabled: bool = True
    retry_errors: bool = False
    evaluator: object = None  # None: runner.evaluate_point; tests pass a cheap function
    progress_file: str | None = None  # one line appended per point looked at (progress bar)
    main_pid: int = 0  # the study's process (workers elsewhere ignore Ctrl-C: it stops here)
    batch_configs: int = 5  # study.batch_configs
    serving: object = None  # replay.serving.ServingConfig (None: every term zero)


#: tasks that start from another (budget) task's best configuration
DEPENDENT_KINDS = ("fixed", "load", "batch")


@dataclass
class Task:
    """One search. ``budget``: the best configuration within a budget; ``throughput``: the
    cheapest for a rate; ``heatmap``: a machine grid; and, from the best configuration of
    ``source`` (a budget task): ``fixed`` (its max rate under other settings: a variant, another
    trace), ``load`` (points at ``factors`` x its max rate) and ``batch`` (throughput at a
    saturating rate on evenly spaced frontier configurations)."""

    kind: str  # "budget" | "throughput" | "heatmap" | "fixed" | "load" | "batch"
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


def pools_of(
    design: schemas.DesignConf, search: schemas.SearchConf, grid: tuple[int, int] | None = None
) -> list[Pool]:
    """The design's pools with per-machine power (W) and cost ($/h) from the machine specs."""
    from characterize.modeling.specs import load_machine

    if design.kind == "baseline":
        m = load_machine(design.machine)
        return [
            Pool(
                "machines",
                m.power_budget_w,
                m.cost_per_hour,
                search.machines_min,
                search.machines_max,
            )
        ]
    p, t = load_machine(design.prompt_machine), load_machine(design.token_machine)
    pmax, tmax = grid if grid else (search.prompt_max, search.token_max)
    pmin, tmin = (1, 1) if grid else (search.prompt_min, search.token_min)
    return [
        Pool("prompt", p.power_budget_w, p.cost_per_hour, pmin, pmax),
        Pool("token", t.power_budget_w, t.cost_per_hour, tmin, tmax),
    ]


def budget_of(b: schemas.BudgetConf) -> dict:
    """A budget in W and $/h: ``reference_count`` x the reference machine's (from its spec)."""
    from characterize.modeling.specs import load_machine

    m = load_machine(b.reference_machine)
    return {
        "power_w": m.power_budget_w * b.reference_count if b.power else None,
        "cost_per_hour": m.cost_per_hour * b.reference_count if b.cost else None,
    }


def _evaluator(ctx: StudyContext, task: Task, cache: PointCache):
    from experiments import runner

    fn = ctx.evaluator or runner.evaluate_point
    profiles = task.profiles or ctx.profiles
    scheduler = task.scheduler or ctx.scheduler
    seed = ctx.search.seed if task.seed is None else task.seed

    model = task.model or ctx.model

    def evaluate(counts, rate):
        point = runner.make_point(
            model=model,
            design=runner.design_point(task.design, counts),
            trace=runner.trace_point(
                task.trace,
                rate,
                runner.point_duration(rate, ctx.search.duration_s, ctx.search.max_requests),
                seed=task.seed,
            ),
            scheduler=scheduler,
            slo=ctx.slo,
            serving=ctx.serving,
            profiles=profiles,
            seed=seed,
        )
        hits = cache.stats.hits
        rec = cache.evaluate(point, fn)
        res = dict(rec["result"] or {})
        res["slo_met"] = rec["status"] == "ok" and bool(res.get("slo_met"))
        if rec["status"] != "ok":
            res["error"] = rec["error"]
        if ctx.progress_file:
            mark = "c" if cache.stats.hits > hits else ("e" if rec["status"] != "ok" else "s")
            _note_progress(ctx.progress_file, mark)
        res["_key"] = rec["key"]
        return res

    return evaluate


def _note_progress(path: str, mark: str) -> None:
    """Append one mark (``s`` simulated, ``c`` cached, ``e`` failed) to the progress file: one
    small O_APPEND write, whole even with several writers."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, mark.encode())
    finally:
        os.close(fd)


def run_task(ctx: StudyContext, task: Task) -> dict:
    """Run one search; a JSON-able dict with the answer and every point it looked at."""
    cache = PointCache(
        Path(ctx.cache_dir) if ctx.cache_dir else None, ctx.cache_enabled, ctx.retry_errors
    )
    ev = _evaluator(ctx, task, cache)
    s = ctx.search
    pools = pools_of(task.design, s, task.grid)
    t0 = time.perf_counter()
    out: dict = {"kind": task.kind, "trace": task.trace_key, "design": task.design_key}
    if task.kind == "budget":
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
        out.update(
            best=res.best,
            rate=res.rate,
            candidates=len(res.candidates),
            config_rates=[[list(c), r] for c, r in res.config_rates.items()],
            points=res.points,
        )
    elif task.kind == "throughput":
        res = min_machines(ev, pools, task.rate, mode=s.mode)
        out.update(
            rate=task.rate,
            frontier=[list(c) for c in res.frontier],
            cheapest=res.cheapest,
            lowest_power=res.lowest_power,
            smallest=res.smallest,
            points=res.points,
        )
    elif task.kind == "heatmap":
        out.update(rate=task.rate, cells=heatmap(ev, pools, task.rate, mode=s.mode))
        out["points"] = []
    elif task.kind in DEPENDENT_KINDS:
        src = task.source_result or run_task(ctx, task.source)
        best, src_rate = src.get("best"), src.get("rate")
        grid = RateGrid(s.rate_min, s.rate_max, s.rate_step)
        out.update(source_trace=task.source.trace_key, source_best=best, source_rate=src_rate)
        points: list[dict] = []
        if best is None or src_rate is None:
            out.update(best=None, rate=None)
        elif task.kind == "fixed":
            peer = task.peer_result or (run_task(ctx, task.peer) if task.peer else None)
            if peer is not None and peer.get("best") and list(peer["best"]) == list(best):
                out.update(best=best, rate=peer.get("rate"), same_as_own=True)
            else:
                rate, points = max_rate_of(ev, tuple(best), grid, src_rate)
                out.update(best=best, rate=rate)
        elif task.kind == "load":
            log = SearchLog(ev)
            rates = sorted({grid.rates[grid.index_near(f * src_rate)] for f in task.factors})
            for r in rates:
                log.met(tuple(best), r)
            points = log.points
            out.update(best=best, rate=src_rate, factors=list(task.factors))
        else:  # batch: no SLO, completions only, at a saturating offered rate
            log = SearchLog(ev)
            offered = grid.rates[grid.index_near(task.overload * src_rate)]
            configs = batch_configs(pools, task.source.budget, best, ctx.batch_configs)
            for c in configs:
                log.met(tuple(c), offered)
            points = log.points
            out.update(best=best, rate=offered, configs=[list(c) for c in configs])
        out["points"] = points
    else:
        raise ExperimentError(f"study: unknown task kind '{task.kind}'")
    out["pools"] = [asdict(p) for p in pools]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["evaluated"] = cache.stats.evaluated
    out["cache_hits"] = cache.stats.hits
    out["errors"] = cache.stats.errors
    return out


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


@dataclass
class SetRun:
    """One profile set of a study: the designs it runs, its model and, per design, the
    profiles its points name (None: the study context's). ``own``: the study's own set
    (``profiles``); the others come from ``study.profile_sets``."""

    name: str
    text: str  # the set as the report names it (profile_sets.SetSpec.label)
    model: schemas.ModelConf
    designs: list[str]
    profiles: dict[str, dict | None]
    kinds: dict[str, dict[str, str]]  # design -> {profile gpu: reference|measured|composed|derived}
    slo_reference: str  # how the slowdown reference was chosen (the report says it)
    own: bool = True
    labelled: bool = False  # rows carry the profile_set columns (studies with several sets)
    displays: dict[str, str] = field(default_factory=dict)  # design -> display in this set

    base_source: str = "reference"  # the set's resolved base (the designs it covers run on it)

    def label(self, dk: str) -> dict:
        """The profile-set columns of design ``dk``'s rows (none in a study of one set)."""
        if not self.labelled:
            return {}
        prof = self.profiles.get(dk)
        return {
            "profile_set": self.name,
            "profile_set_text": self.text,
            "model": self.model.name,
            "profile_kinds": "; ".join(f"{g}: {k}" for g, k in self.kinds.get(dk, {}).items()),
            "slo_reference": self.slo_reference,
            "profiles_path": prof["source"] if prof else self.base_source,
        }

    def on(self, dk: str) -> dict:
        """The Task fields that put design ``dk`` on this set."""
        out: dict = {"profiles": self.profiles.get(dk)}
        if not self.own:
            out["model"] = self.model
        return out

    def design(self, cfg: dict, dk: str):
        d = cfg["designs"][dk]
        shown = self.displays.get(dk)
        return replace(d, display=shown) if shown and shown != d.display else d


def design_gpus(d: schemas.DesignConf) -> list[str]:
    """The profile gpu keys of a design's machines (machine specs' ``profile_gpu``)."""
    from characterize.modeling.specs import load_machine

    specs = [d.machine] if d.kind == "baseline" else [d.prompt_machine, d.token_machine]
    return [load_machine(s).profile_gpu for s in specs]


def _set_spec(p: schemas.ProfilesConf, **over):
    from characterize.modeling.profile_sets import COMPOSED_DIR, SetSpec

    return SetSpec(
        set=over.get("set", p.set),
        engine=over.get("engine", p.engine),
        engine_version=over.get("engine_version", p.engine_version),
        dtype=over.get("dtype", p.dtype),
        base=p.source if over.get("set", p.set) != "aic" else "",
        measured_dir=p.measured_dir,
        composed_dir=p.composed_dir or str(COMPOSED_DIR),
    )


def _resolve_run(cfg, name, spec, profiles, model, designs, ref_mode, own, notes) -> SetRun:
    """Resolve one set: its base (with the slowdown reference GPU when the SLO is relative to
    the set), then each design's GPUs on it (measured, else composed, else derived)."""
    from characterize.modeling.profile_sets import resolve
    from experiments import runner

    out_dir, root = cfg["paths"].cache_dir, cfg["paths"].root
    tp = model.tp
    if spec.kind == "aic" or ref_mode == "set":
        ref_gpu = [profiles.slo_reference_gpu] if ref_mode == "set" else []
        base = resolve(spec, model.name, tp, ref_gpu, out_dir)
        ref_kind = base.kind_texts()
        spec = replace(spec, base=base.path)
        ref_src = base.path if ref_mode == "set" else profiles.slo_reference_source
        profiles = replace(profiles, source=base.path, slo_reference_source=ref_src)
    ref_text = (
        f"the set's own {profiles.slo_reference_gpu} tp{profiles.slo_reference_tp} "
        f"({ref_kind.get(profiles.slo_reference_gpu, '?')})"
        if ref_mode == "set"
        else f"{profiles.slo_reference_gpu} tp{profiles.slo_reference_tp} of "
        f"'{profiles.slo_reference_source}'"
        + (" (the paper's DGX-A100: fixed per-request targets)"
           if profiles.slo_reference_source == "reference" else "")
    )  # fmt: skip
    run = SetRun(name, spec.label(), model, list(designs), {}, {}, ref_text, own)
    run.base_source = profiles.source
    added: dict[tuple[str, str], list[str]] = {}  # (gpu, kind) -> designs
    sources: dict[tuple[str, str], object] = {}
    for dk in designs:
        pset = resolve(spec, model.name, tp, design_gpus(cfg["designs"][dk]), out_dir, quiet=True)
        run.kinds[dk] = pset.kind_texts()
        if pset.path != profiles.source or not own:
            run.profiles[dk] = runner.profiles_identity(replace(profiles, source=pset.path))
        else:
            run.profiles[dk] = None
        for gpu, src in pset.gpus.items():
            if src.kind in ("measured", "derived") and _row_gpu_added(spec, src):
                added.setdefault((gpu, src.kind), []).append(dk)
                sources[(gpu, src.kind)] = src
        if any(k == "derived" for k in run.kinds[dk].values()):
            d = cfg["designs"][dk]
            if "derived" not in (d.display or dk):
                run.displays[dk] = f"{d.display or dk} (derived)"
    if own:  # every table and figure shows them as derived
        for dk, shown in run.displays.items():
            cfg["designs"][dk] = replace(cfg["designs"][dk], display=shown)
        cfg["profiles"] = profiles
    for (gpu, kind), dks in added.items():
        notes.append(_added_note(gpu, kind, dks, sources[(gpu, kind)], spec, profiles, model, root))
    return run


def _row_gpu_added(spec, src) -> bool:
    """Whether a GPU's rows were added to the set's base (not base rows of that kind)."""
    return src.kind == "derived" or (spec.kind == "aic" or spec.base == "reference")


def _added_note(gpu, kind, designs, src, spec, profiles, model, root) -> str:
    """The note the report prints for a GPU whose rows the set's base lacked."""
    import re

    g = gpu.split("-")[0].upper()
    if kind == "measured":
        return (
            f"{g} designs use the measured {g} rows of "
            f"{', '.join(_shown(p, root) for p in src.tables)} "
            f"(with the `{spec.label()}` profiles for the other machines and the slowdown "
            "reference); another engine than the set's may have measured them: compare with care"
        )
    m = re.search(r"\((\S+) -> ", src.source)
    frm = m.group(1).split("-")[0].upper() if m else "closest"
    shown = _shown(profiles.measured_dir, root)
    composed = ", and no composed one" if spec.kind == "aic" else ""
    which = "reference" if spec.kind == "paper" and spec.base == "reference" else spec.label()
    return (
        f"{g} designs ({', '.join(designs)}) run on DERIVED profiles, not measurements: no "
        f"measured {g} profile of {model.name} under {shown}{composed}, so "
        f"characterize.modeling.derive scaled the {frm} {which} profile by the {g} spec "
        f"at the efficiencies the {frm} achieved (held-out error of that method, A100<->H100 "
        "on the reference data: decode MAPE 2.6-12.1%, prefill 9.7-30.0%; "
        f"`splitbench-profiles derive --check`); measured {g} profiles replace them automatically"
    )


def profile_runs(cfg: dict, notes: list[str]) -> list[SetRun]:
    """The study's profile sets, resolved: its own (``profiles``: ``study.designs`` and
    ``study.h200_designs``) and each of ``study.profile_sets``. Each GPU a design needs comes
    from the set (characterize.modeling.profile_sets: measured, else composed, else derived);
    a design whose GPUs the set's base covers keeps the base's profiles (and cache keys).
    ``cfg["profiles"]`` becomes the own set's resolved base."""
    st: schemas.StudySpec = cfg["study"]
    p = cfg["profiles"]
    designs = list(dict.fromkeys([*st.designs, *st.h200_designs]))
    labelled = bool(st.profile_sets)
    ref_mode = "set" if p.slo_reference_source == "set" else "fixed"
    spec = _set_spec(p)
    name = spec.kind if spec.kind == "paper" else f"{p.engine}-{p.dtype}"
    own = _resolve_run(cfg, name, spec, p, cfg["model"], designs, ref_mode, True, notes)
    own.labelled = labelled
    runs = [own]
    for i, ps in enumerate(st.profile_sets):
        for j, d in enumerate(ps.designs):
            if d not in cfg["designs"]:
                raise ExperimentError(
                    f"study.profile_sets[{i}].designs[{j}]: unknown value '{d}' "
                    f"(known: {', '.join(cfg['designs'])})"
                )
        schemas.check_set(ps, f"study.profile_sets[{i}]", p.composed_dir)
        model = replace(cfg["model"], name=ps.model or cfg["model"].name, display="")
        spec = _set_spec(p, set=ps.set, engine=ps.engine, engine_version=ps.engine_version,
                         dtype=ps.dtype)  # fmt: skip
        if spec.kind == "paper":
            spec = replace(spec, base="reference")
        base = replace(p, set=ps.set, engine=ps.engine, engine_version=ps.engine_version,
                       dtype=ps.dtype, source="reference",
                       slo_reference_source="reference")  # fmt: skip
        mode = "set" if ps.slo_reference == "set" else "fixed"
        run = _resolve_run(cfg, ps.name, spec, base, model, ps.designs, mode, False, notes)
        run.labelled = True
        runs.append(run)
    for run in runs:
        if run.labelled or run.text != "paper":  # the default study keeps its notes
            kinds = "; ".join(
                f"{g}: {k}" for g, k in sorted({x for d in run.kinds.values() for x in d.items()})
            )
            notes.append(
                f"profile set '{run.name}' = {run.text}, {run.model.name}: {kinds}; slowdown "
                f"reference: {run.slo_reference}"
            )
    return runs


def _shown(path: str, root: str) -> str:
    """``path`` relative to the project root when inside it (reports stay portable)."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel


def plan(cfg: dict) -> tuple[list[Task], list[str]]:
    """The study's tasks (deduplicated) and notes for the report."""
    st: schemas.StudySpec = cfg["study"]
    notes: list[str] = []
    runs = profile_runs(cfg, notes)
    tasks: dict[str, Task] = {}

    def add(task: Task, label: dict) -> Task:
        if task.kind == "budget":
            # tasks with the same affordable frontier are the same search
            pools = pools_of(task.design, cfg["search"])
            cands = affordable_frontier(pools, Budget(**task.budget))
            sig = json.dumps(
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
        else:
            sig = task.signature()
        if sig not in tasks:
            tasks[sig] = task
        tasks[sig].labels.append(label)
        return tasks[sig]

    base: dict[tuple[str, str], Task] = {}  # (trace, design) -> its variant_budget task

    for tk in st.traces:
        for run in runs:
            for dk in run.designs:
                on = run.on(dk)
                for b in st.budgets:
                    t = add(
                        Task("budget", tk, cfg["traces"][tk], dk, run.design(cfg, dk),
                             budget=budget_of(b), **on),
                        {
                            "budget": b.name,
                            "budget_w": budget_of(b)["power_w"],
                            "budget_cost": budget_of(b)["cost_per_hour"],
                            **run.label(dk),
                        },
                    )  # fmt: skip
                    if b.name == st.variant_budget and run.own:
                        base[(tk, dk)] = t
                if tk in st.iso_throughput_rates:
                    add(
                        Task("throughput", tk, cfg["traces"][tk], dk, run.design(cfg, dk),
                             rate=float(st.iso_throughput_rates[tk]), **on),
                        {"budget": "iso-throughput", **run.label(dk)},
                    )  # fmt: skip
    if st.heatmap:
        h = cfg["heatmap"]
        add(
            Task(
                "heatmap",
                h.trace,
                cfg["traces"][h.trace],
                h.design,
                cfg["designs"][h.design],
                rate=h.rate,
                grid=(h.prompt_max, h.token_max),
                **runs[0].on(h.design),
            ),
            {"budget": "heatmap"},
        )
    _plan_dependent(cfg, base, add)
    # Largest searches first (A100 designs have the most machines) for load balance.
    order = sorted(tasks.values(), key=lambda t: (t.kind != "budget", t.design.kind == "baseline"))
    return order, notes


def _plan_dependent(cfg: dict, base: dict[tuple[str, str], Task], add) -> None:
    """The tasks that start from a budget task's best configuration: variants (each design at
    its ``variant_budget`` configuration under changed settings, or re-provisioned), mismatch
    (served another trace), load curves and batch jobs. Only ``study.designs`` of the study's
    own profile set take part (not ``h200_designs``, not ``profile_sets``); each keeps its
    budget task's profiles."""
    from experiments import runner
    from experiments.variants import Settings, applies, apply_variant

    st: schemas.StudySpec = cfg["study"]
    wanted = st.variants or st.mismatch or st.load_factors or st.batch_overload
    if not wanted:
        return
    if not base:
        raise ExperimentError(
            f"study.variant_budget: no budget named '{st.variant_budget}' in study.budgets"
        )
    search = cfg["search"]
    for (tk, dk), src in base.items():
        if dk not in st.designs:
            continue
        design = cfg["designs"][dk]
        plain = Settings(cfg["scheduler"], cfg["profiles"], cfg["traces"][tk], design, search.seed)
        for i, v in enumerate(st.variants):
            got = apply_variant(v, plain, f"study.variants[{i}]")
            prof = None
            if got.profiles != plain.profiles:  # on the design's own set (a GPU the base lacks)
                gp = got.profiles
                if src.profiles:
                    gp = replace(gp, source=src.profiles["source"])
                prof = runner.profiles_identity(gp)
            kind = "budget" if st.reprovision else "fixed"
            add(
                Task(
                    kind,
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
                {
                    "budget": st.variant_budget,
                    "variant": v.name,
                    "group": v.group,
                    "variant_label": v.label,
                    "applies": applies(v, design),
                },
            )
        if st.mismatch:
            for other in st.traces:
                if other != tk:
                    add(
                        Task(
                            "fixed",
                            other,
                            cfg["traces"][other],
                            dk,
                            design,
                            source=src,
                            profiles=src.profiles,
                            peer=base.get((other, dk)),
                        ),  # fmt: skip
                        {"budget": st.variant_budget, "mismatch": f"{tk}->{other}"},
                    )
        if st.load_factors:
            add(
                Task(
                    "load",
                    tk,
                    cfg["traces"][tk],
                    dk,
                    design,
                    source=src,
                    profiles=src.profiles,
                    factors=tuple(float(f) for f in st.load_factors),
                ),  # fmt: skip
                {"budget": st.variant_budget, "load": True},
            )
        if st.batch_overload:
            add(
                Task(
                    "batch",
                    tk,
                    cfg["traces"][tk],
                    dk,
                    design,
                    source=src,
                    profiles=src.profiles,
                    overload=float(st.batch_overload),
                ),  # fmt: skip
                {"budget": st.variant_budget, "batch": True},
            )


#: where a study's searches run (``search.backend``): joblib processes on this machine; Ray tasks
#: on a running Ray cluster (RAY_ADDRESS, or the local one; else a new local instance);
#: submitit (SLURM where ``sbatch`` exists, else local processes). Every backend writes the
#: same point cache, which stays the one record of finished points (on a cluster, put
#: ``paths.cache_dir`` on a shared file system).
BACKENDS = ("joblib", "ray", "submitit")


def check_backend(backend: str, key: str = "search.backend") -> None:
    """ExperimentError unless ``backend`` is known and its library importable."""
    if backend not in BACKENDS:
        raise ExperimentError(f"{key}: unknown value '{backend}' (known: {', '.join(BACKENDS)})")
    mod = {"joblib": "joblib", "ray": "ray", "submitit": "submitit"}[backend]
    try:
        __import__(mod)
    except ImportError:
        extra = {"joblib": "sweep", "ray": "ray", "submitit": "sweep"}[backend]
        raise ExperimentError(
            f"{key}: '{backend}' needs the {mod} package (pip install 'splitbench[{extra}]')"
        ) from None


def _indexed(ctx: StudyContext, i: int, task: Task) -> tuple[int, dict]:
    """``(i, run_task(...))`` in a worker: Ctrl-C is the study process's to handle, and the
    phase model's extrapolation warnings are not printed (each point's result lists them:
    ``extrapolated``, shown in points.csv and the report)."""
    import warnings

    from characterize.modeling.phase.errors import ExtrapolationWarning

    if ctx.main_pid and os.getpid() != ctx.main_pid:
        import signal

        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the worker's main thread
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return i, run_task(ctx, task)


def _joblib_results(ctx, tasks, n_jobs):
    from joblib import Parallel, delayed

    yield from Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
        delayed(_indexed)(ctx, i, t) for i, t in enumerate(tasks)
    )


def _ray_results(ctx, tasks, n_jobs):
    """Searches as Ray tasks (one CPU each, at most ``n_jobs`` in flight), results as they
    finish. Connects to the running cluster (RAY_ADDRESS, else the one ``ray start`` left on
    this machine) or, without one, starts a local instance. (Ray's own tasks, not joblib's Ray
    backend: that one returns nothing before every search has finished.)"""
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(_indexed)
    pending = list(enumerate(tasks))
    running: list = []
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                i, t = pending.pop(0)
                running.append(remote.remote(ctx, i, t))
            done, running = ray.wait(running, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)


def _submitit_results(ctx, tasks, n_jobs, folder: Path):
    """Searches as submitit jobs, at most ``n_jobs`` at a time; results as they finish."""
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder / "%j"))
    ex.update_parameters(timeout_min=240, cpus_per_task=1, name="splitbench-study")
    pending = list(enumerate(tasks))
    running: list = []
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                i, t = pending.pop(0)
                running.append(ex.submit(_indexed, ctx, i, t))
            done = [j for j in running if j.done()]
            if not done:
                time.sleep(0.5)
                continue
            for j in done:
                running.remove(j)
                yield j.result()
    finally:
        for j in running:
            j.cancel(check=False)


def run_tasks(ctx: StudyContext, tasks: list[Task], n_jobs: int, **opts) -> list[dict]:
    """Run the searches (``n_jobs`` at once; ``opts``: ``report``, ``backend``, ``progress``,
    ``work_dir`` as in :func:`_run_wave`); returns their results in task order. Two waves: the
    searches, then the tasks that start from a search's best configuration
    (:data:`DEPENDENT_KINDS`), which get that result instead of asking the cache again."""
    first = [i for i, t in enumerate(tasks) if t.kind not in DEPENDENT_KINDS]
    second = [i for i, t in enumerate(tasks) if t.kind in DEPENDENT_KINDS]
    out: list[dict | None] = [None] * len(tasks)
    results = _run_wave(ctx, [tasks[i] for i in first], n_jobs, **opts)
    for i, res in zip(first, results, strict=True):
        out[i] = res
    if second:
        done = {id(tasks[i]): out[i] for i in first}
        for i in second:
            src = done.get(id(tasks[i].source))
            if src is not None:
                tasks[i].source_result = {"best": src.get("best"), "rate": src.get("rate")}
            peer = done.get(id(tasks[i].peer)) if tasks[i].peer is not None else None
            if peer is not None:
                tasks[i].peer_result = {"best": peer.get("best"), "rate": peer.get("rate")}
        results = _run_wave(ctx, [tasks[i] for i in second], n_jobs, **opts)
        for i, res in zip(second, results, strict=True):
            out[i] = res
    return out  # type: ignore[return-value]


def _run_wave(
    ctx: StudyContext,
    tasks: list[Task],
    n_jobs: int,
    report: bool = False,
    backend: str = "joblib",
    progress: bool | None = None,
    work_dir: Path | None = None,
) -> list[dict]:
    """Run the searches on ``backend`` (``n_jobs`` at once; joblib with one job or one task runs
    in this process); returns their results in task order.

    ``report``: a progress bar with ETA over the searches as they finish (on a terminal, or
    ``progress=True``), the points looked at so far inside the running searches, and one line
    per finished search. ``work_dir``: submitit's job folders.
    """
    import threading

    from tqdm import tqdm

    check_backend(backend)
    local = backend == "joblib" and (n_jobs <= 1 or len(tasks) <= 1)
    if report and ctx.progress_file is None:
        import tempfile

        shared = ctx.cache_dir if backend != "joblib" and ctx.cache_dir else None
        if shared:  # remote workers write it: on the (shared) cache file system
            Path(shared).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="progress-", suffix=".log", dir=shared)
        os.close(fd)
        ctx.progress_file = path
    ctx.main_pid = os.getpid()
    if local:
        results_iter = (_indexed(ctx, i, t) for i, t in enumerate(tasks))
    elif backend == "submitit":
        results_iter = _submitit_results(ctx, tasks, n_jobs, work_dir or Path("submitit"))
    elif backend == "ray":
        results_iter = _ray_results(ctx, tasks, n_jobs)
    else:
        results_iter = _joblib_results(ctx, tasks, n_jobs)
    bar = tqdm(
        total=len(tasks),
        unit="search",
        disable=(not report) or (None if progress is None else not progress),
        dynamic_ncols=True,
        file=sys.stderr,
    )
    stop = threading.Event()
    t_start = time.perf_counter()

    def points_text() -> str:
        try:
            with open(ctx.progress_file, "rb") as f:
                marks = f.read()
        except (OSError, TypeError):
            return ""
        s, c, e = marks.count(b"s"), marks.count(b"c"), marks.count(b"e")
        return f"{s + c + e} points: {s} simulated, {c} cached" + (f", {e} failed" if e else "")

    def watch() -> None:
        last, last_print = "", time.perf_counter()
        while not stop.wait(1.0):
            text = points_text()
            if not text or text == last:
                continue
            last = text
            if not bar.disable:
                bar.set_postfix_str(text, refresh=True)
            elif time.perf_counter() - last_print >= 30:  # a log, not a terminal: a line
                last_print = time.perf_counter()
                print(f"  ... {text} ({time.perf_counter() - t_start:.0f} s)", flush=True)

    watcher = threading.Thread(target=watch, daemon=True) if report else None
    if watcher:
        watcher.start()
    out: list[dict | None] = [None] * len(tasks)
    try:
        for done, (i, res) in enumerate(results_iter, start=1):
            out[i] = res
            bar.update(1)
            if report:
                task = tasks[i]
                what = (
                    f"max {res.get('rate')} req/s at {res.get('best')}"
                    if task.kind in ("budget", "fixed")
                    else f"cheapest {res.get('cheapest')}"
                    if task.kind == "throughput"
                    else f"{len(res.get('cells', []))} cells"
                    if task.kind == "heatmap"
                    else f"{len(res.get('points', []))} points from {res.get('source_best')}"
                )
                labels = "+".join(sorted({_label_text(lab) for lab in task.labels}))
                failed = f", {res['errors']} failed" if res.get("errors") else ""
                tqdm.write(
                    f"  [{done}/{len(tasks)}] {task.trace_key} {task.design_key} {labels}: "
                    f"{what} ({res['evaluated']} simulated, {res['cache_hits']} cached{failed}, "
                    f"{res['seconds']} s)",
                    file=sys.stdout,
                )
                sys.stdout.flush()
    finally:
        close = getattr(results_iter, "close", None)
        if close is not None:  # stop the workers (joblib aborts its pool) before counting
            close()
        stop.set()
        if watcher:
            watcher.join()
        bar.close()
        if report and ctx.progress_file:
            try:
                os.unlink(ctx.progress_file)
            except OSError:
                pass
            ctx.progress_file = None
    return out  # type: ignore[return-value]


def _label_text(lab: dict) -> str:
    """A task label as the progress lines show it."""
    for k in ("variant", "mismatch"):
        if lab.get(k):
            return f"{lab['budget']} {k} {lab[k]}"
    for k in ("load", "batch"):
        if lab.get(k):
            return f"{lab['budget']} {k}"
    if lab.get("profile_set"):
        return f"{lab['budget']} {lab['profile_set']}"
    return lab["budget"]


def _row_metrics(points: list[dict], counts, rate) -> dict:
    for p in points:
        if list(p["counts"]) == list(counts) and p["rate"] == rate:
            return p["result"]
    return {}


def _prefix_columns(result: dict) -> dict:
    """Prefix-cache and extrapolation columns of a point result (none where the point ran
    without prefix caching and inside the measured range: those rows keep their columns)."""
    out = {}
    pc = result.get("prefix_cache")
    if pc:
        out["prefix_hit_rate"] = pc.get("block_hit_rate")
        out["prefix_request_hit_rate"] = pc.get("request_hit_rate")
        out["prefix_tokens_saved"] = pc.get("saved_tokens")
        out["prefix_saved_fraction"] = pc.get("saved_fraction")
    if result.get("extrapolated"):
        out["extrapolated"] = "; ".join(result["extrapolated"])
    return out


def assemble(cfg: dict, tasks: list[Task], results: list[dict]) -> dict:
    """Study tables (plain lists of dicts) from task results."""
    design_display = {k: (d.display or k) for k, d in cfg["designs"].items()}
    trace_display = {k: (t.display or k) for k, t in cfg["traces"].items()}
    budget_rows, thr_rows, heat_rows, point_rows = [], [], [], []
    variant_rows, mismatch_rows, load_rows, batch_rows = [], [], [], []
    for task, res in zip(tasks, results, strict=True):
        pools = [Pool(**p) for p in res["pools"]]
        for p in res.get("points", []):
            r = p["result"]
            c = list(p["counts"])
            point_rows.append(
                {
                    "task": task.kind,
                    "labels": "+".join(sorted({_label_text(lab) for lab in task.labels})),
                    "trace": task.trace_key,
                    "design": task.design_key,
                    **{k: task.labels[0][k] for k in SET_COLUMNS[:1] if k in task.labels[0]},
                    "prompt_machines": c[0] if len(c) == 2 else None,
                    "token_machines": c[1] if len(c) == 2 else None,
                    "machines": c[0] if len(c) == 1 else sum(c),
                    "rate": p["rate"],
                    "status": "failed" if r.get("error") else "ok",
                    "slo_met": None if r.get("error") else p["slo_met"],
                    "throughput_rps": r.get("throughput_rps"),
                    "slo_worst_ratio": r.get("slo_worst_ratio"),
                    "cost_per_hour": cost_of(pools, tuple(c)),
                    "power_w": power_of(pools, tuple(c)),
                    "error": r.get("error"),
                    "key": r.get("_key"),
                    **{f"slowdown_{k}": v for k, v in (r.get("slowdown") or {}).items()},
                    "trace_requests": r.get("trace_requests"),
                    **{f"context_{k}": v for k, v in (r.get("context") or {}).items()},
                    **_prefix_columns(r),
                }
            )
        base = {
            "trace": task.trace_key,
            "trace_display": trace_display[task.trace_key],
            "design": task.design_key,
            "design_display": task.design.display or design_display[task.design_key],
            "kind": task.design.kind,
            **{k: task.labels[0][k] for k in SET_COLUMNS if task.labels and k in task.labels[0]},
        }
        if task.kind in ("budget", "fixed"):
            best = res["best"]
            m = _row_metrics(res["points"], best, res["rate"]) if best else {}
            for lab in task.labels:
                dest = (
                    variant_rows
                    if lab.get("variant")
                    else mismatch_rows
                    if lab.get("mismatch")
                    else budget_rows
                )
                dest.append(
                    {
                        **base,
                        **lab,
                        "prompt_machines": best[0] if best and len(best) == 2 else None,
                        "token_machines": best[1] if best and len(best) == 2 else None,
                        "machines": sum(best) if best else None,
                        "max_rate": res["rate"],
                        "throughput_rps": m.get("throughput_rps"),
                        "cost_per_hour": cost_of(pools, tuple(best)) if best else None,
                        "power_w": power_of(pools, tuple(best)) if best else None,
                        "configs_on_frontier": res.get("candidates"),
                        "simulations": len(res["points"]),
                        "failed_points": sum(bool(p["result"].get("error")) for p in res["points"]),
                        **(
                            {
                                "source_trace": res["source_trace"],
                                "source_rate": res["source_rate"],
                                "same_configuration": bool(res.get("same_as_own")),
                            }
                            if task.kind == "fixed"
                            else {}
                        ),
                        **(
                            _variant_metrics(res, best, m)
                            if lab.get("variant") or lab.get("mismatch")
                            else {}
                        ),
                        **_prefix_columns(m),
                    }
                )
        elif task.kind == "load":
            for p in res["points"]:
                load_rows.append({**base, **_load_row(p, res["source_rate"], pools)})
        elif task.kind == "batch":
            for p in res["points"]:
                row = _batch_row(p, pools)
                row["slo_config"] = list(p["counts"]) == list(res["best"] or [])
                batch_rows.append({**base, "slo_max_rate": res["source_rate"], **row})
        elif task.kind == "throughput":
            for objective in ("cheapest", "lowest_power"):
                c = res[objective]
                thr_rows.append(
                    {
                        **base,
                        "rate": res["rate"],
                        "objective": objective,
                        "prompt_machines": c[0] if c and len(c) == 2 else None,
                        "token_machines": c[1] if c and len(c) == 2 else None,
                        "machines": sum(c) if c else None,
                        "cost_per_hour": cost_of(pools, tuple(c)) if c else None,
                        "power_w": power_of(pools, tuple(c)) if c else None,
                        "simulations": len(res["points"]),
                    }
                )
        elif task.kind == "heatmap":
            for cell in res["cells"]:
                heat_rows.append({**base, "rate": res["rate"], **cell})
    st = cfg["study"]
    order = {
        k: i
        for i, k in enumerate(
            dict.fromkeys(
                [*st.designs, *st.h200_designs, *(d for p in st.profile_sets for d in p.designs)]
            )
        )
    }
    t_order = {k: i for i, k in enumerate(st.traces)}
    b_order = {b.name: i for i, b in enumerate(st.budgets)}
    s_order = {p.name: i for i, p in enumerate(st.profile_sets, start=1)}  # own set: 0

    def sort_key(r):
        return (
            t_order.get(r["trace"], 99),
            b_order.get(r.get("budget"), 99),
            s_order.get(r.get("profile_set"), 0),
            str(r.get("objective", "")),
            order.get(r["design"], 99),
        )

    budget_rows.sort(key=sort_key)
    thr_rows.sort(key=sort_key)
    sets = ("profile_set",) if st.profile_sets else ()  # ratios within one set
    _add_ratios(budget_rows, key="max_rate", group=("trace", "budget", *sets))
    _add_ratios(budget_rows, key="throughput_rps", group=("trace", "budget", *sets))
    _add_ratios(thr_rows, key="cost_per_hour", group=("trace", "objective", *sets))
    _add_ratios(thr_rows, key="power_w", group=("trace", "objective", *sets))
    for rows in (variant_rows, mismatch_rows, load_rows, batch_rows):
        rows.sort(key=sort_key)
    _add_own_rate(mismatch_rows, budget_rows)
    _add_own_rate(variant_rows, budget_rows)
    _best_batch(batch_rows)
    return {
        "budget": budget_rows,
        "iso_throughput": thr_rows,
        "heatmap": heat_rows,
        "points": point_rows,
        "variants": variant_rows,
        "variant_ratios": variant_ratios(variant_rows, budget_rows, cfg["study"]),
        "mismatch": mismatch_rows,
        "load": load_rows,
        "batch": batch_rows,
    }


#: the columns that name a row's profile set (studies with ``study.profile_sets`` only)
SET_COLUMNS = (
    "profile_set", "profile_set_text", "model", "profile_kinds", "slo_reference", "profiles_path"
)  # fmt: skip
#: the study tables that only some studies fill (written when not empty)
OPTIONAL_TABLES = ("variants", "variant_ratios", "mismatch", "load", "batch")
#: the headline comparisons: Splitwise designs against these baselines
HEADLINE_BASELINES = ("baseline-a100", "baseline-h100")


def slo_attainment(result: dict) -> float | None:
    """Share of steady-state completions within the SLO's per-request limits: goodput over
    throughput (:func:`replay.metrics.summarize` defines both)."""
    thr, good = result.get("throughput_rps"), result.get("goodput_rps")
    return good / thr if thr and good is not None else None


def _variant_metrics(res: dict, best, m: dict) -> dict:
    """Latencies and prefix-cache counters of a variant at its max rate, and (a fixed
    configuration) at the default's max rate: the same offered load as the default."""
    out = {
        "ttft_p50_s": (m.get("ttft_s") or {}).get("p50"),
        "ttft_p99_s": (m.get("ttft_s") or {}).get("p99"),
    }
    src = res.get("source_rate")
    if best and src is not None:
        a = _row_metrics(res["points"], best, src)
        out.update(
            {
                "at_source_rate_slo_met": a.get("slo_met") if a else None,
                "at_source_rate_ttft_p50_s": (a.get("ttft_s") or {}).get("p50"),
                "at_source_rate_ttft_p99_s": (a.get("ttft_s") or {}).get("p99"),
                "at_source_rate_throughput_rps": a.get("throughput_rps"),
                **{f"at_source_rate_{k}": v for k, v in _prefix_columns(a).items()},
            }
        )
    return out


def _load_row(p: dict, max_rate: float, pools: list[Pool]) -> dict:
    r = p["result"]
    c = list(p["counts"])
    return {
        "prompt_machines": c[0] if len(c) == 2 else None,
        "token_machines": c[1] if len(c) == 2 else None,
        "machines": sum(c),
        "rate": p["rate"],
        "load_factor": p["rate"] / max_rate if max_rate else None,
        "status": "failed" if r.get("error") else "ok",
        "slo_met": None if r.get("error") else p["slo_met"],
        "slo_worst_ratio": r.get("slo_worst_ratio"),
        "slo_attainment": slo_attainment(r),
        "throughput_rps": r.get("throughput_rps"),
        "goodput_rps": r.get("goodput_rps"),
        **{f"{m}_p99_s": (r.get(f"{m}_s") or {}).get("p99") for m in ("ttft", "tbt", "e2e")},
        **{f"{m}_p50_s": (r.get(f"{m}_s") or {}).get("p50") for m in ("ttft", "tbt", "e2e")},
        "preemptions": r.get("preemptions"),
        "error": r.get("error"),
    }


def _batch_row(p: dict, pools: list[Pool]) -> dict:
    """Completion throughput of one configuration at a saturating offered rate, per $/h and per
    kW of provisioned power. ``saturated``: completions fell short of the offered rate by 5% or
    more (below that, the throughput is a lower bound of the capacity)."""
    r = p["result"]
    c = tuple(p["counts"])
    thr = r.get("throughput_rps")
    cost, power = cost_of(pools, c), power_of(pools, c)
    return {
        "prompt_machines": c[0] if len(c) == 2 else None,
        "token_machines": c[1] if len(c) == 2 else None,
        "machines": sum(c),
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


def _best_batch(rows: list[dict]) -> None:
    """Mark each (trace, design)'s best configuration per $ and per kW."""
    for key in ("requests_per_dollar", "rps_per_kw"):
        best: dict = {}
        for r in rows:
            g, v = (r["trace"], r["design"]), r.get(key)
            if v is not None and (g not in best or v > best[g].get(key)):
                best[g] = r
        for r in rows:
            r[f"best_{key}"] = best.get((r["trace"], r["design"])) is r


def _add_own_rate(rows: list[dict], budget_rows: list[dict]) -> None:
    """``own_rate``: the design's max rate in the study's own search of the row's trace and
    budget (the default settings); ``change``: the row's max rate over it, minus 1."""
    own = {(b["trace"], b["design"], b["budget"]): b["max_rate"] for b in budget_rows}
    for r in rows:
        o = own.get((r["trace"], r["design"], r["budget"]))
        r["own_rate"] = o
        r["change"] = r["max_rate"] / o - 1.0 if o and r.get("max_rate") is not None else None


def variant_ratios(variant_rows: list[dict], budget_rows: list[dict], st) -> list[dict]:
    """The headline ratios under each variant: every Splitwise design's max rate over each
    baseline design's (the headline ones first), beside the same ratio with the default settings (the study's own
    search at ``variant_budget``) and their relative change."""
    own = {
        (b["trace"], b["design"]): b["max_rate"]
        for b in budget_rows
        if b["budget"] == st.variant_budget
    }
    rate = {(r["variant"], r["trace"], r["design"]): r["max_rate"] for r in variant_rows}
    meta = {r["variant"]: (r["group"], r["variant_label"]) for r in variant_rows}
    # the headline baselines first, then any other baseline design of the study
    others = sorted({r["design"] for r in variant_rows if r["kind"] == "baseline"})
    baselines = [*HEADLINE_BASELINES, *(b for b in others if b not in HEADLINE_BASELINES)]
    out = []
    for v in dict.fromkeys(r["variant"] for r in variant_rows):
        for r in variant_rows:
            if r["variant"] != v or r["kind"] != "splitwise":
                continue
            for bl in baselines:
                if (v, r["trace"], bl) not in rate:
                    continue
                num, den = r["max_rate"], rate[(v, r["trace"], bl)]
                n0, d0 = own.get((r["trace"], r["design"])), own.get((r["trace"], bl))
                ratio = num / den if num is not None and den else None
                ratio0 = n0 / d0 if n0 is not None and d0 else None
                out.append(
                    {
                        "variant": v,
                        "group": meta[v][0],
                        "variant_label": meta[v][1],
                        "trace": r["trace"],
                        "trace_display": r["trace_display"],
                        "design": r["design"],
                        "design_display": r["design_display"],
                        "vs": bl,
                        "ratio": ratio,
                        "default_ratio": ratio0,
                        "change": ratio / ratio0 - 1.0 if ratio is not None and ratio0 else None,
                    }
                )
    return out


def _add_ratios(rows: list[dict], key: str, group: tuple[str, ...]) -> None:
    """``<key>_vs_<baseline>``: each row's value over the baseline's in the same group."""
    for bl in ("baseline-a100", "baseline-h100"):
        ref = {tuple(r[g] for g in group): r.get(key) for r in rows if r["design"] == bl}
        for r in rows:
            v, b = r.get(key), ref.get(tuple(r[g] for g in group))
            r[f"{key}_vs_{bl}"] = (v / b) if (v is not None and b) else None


def latency_rows(results: list[dict], tasks: list[Task]) -> list[dict]:
    """Long-format latency quantiles of each budget task's best configuration, every rate
    evaluated there (for CDFs and SLO-vs-rate figures)."""
    from experiments.runner import QUANTILE_LEVELS

    rows = []
    for task, res in zip(tasks, results, strict=True):
        if task.kind != "budget" or not res.get("best"):
            continue
        for p in res["points"]:
            if list(p["counts"]) != list(res["best"]):
                continue
            r = p["result"]
            for metric, vals in (r.get("quantiles") or {}).items():
                for q, v in zip(QUANTILE_LEVELS, vals, strict=True):
                    rows.append(
                        {
                            "trace": task.trace_key,
                            "design": task.design_key,
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
