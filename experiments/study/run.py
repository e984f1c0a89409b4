"""A whole study, from its checked config to its tables on disk: :func:`run_study`.

The study app (``experiments/apps/study.py``) composes and checks the config and calls
:func:`run_study` (or :func:`run_point` for a multirun point job); this module plans the tasks
(:mod:`~experiments.study.plan`), runs them (:mod:`~experiments.study.execute`), assembles the
tables (:mod:`~experiments.study.assemble`) and writes them with study.json
(:mod:`~experiments.study.output`). While a study runs, ``<study_dir>/.<name>.lock`` names it
(:mod:`common.runlock`): a second study of the same name stops with one line naming the first.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from common import runlock
from experiments.errors import ExperimentError
from experiments.study.task import StudyContext


class StudyInterrupted(Exception):  # noqa: N818 - it is a stop, not an error
    """Ctrl-C during a study's searches, with the line to print (points cached so far)."""


def context_of(c: dict, evaluator=None) -> StudyContext:
    """The study context of a checked config ``c`` (``evaluator``: replaces the simulator)."""
    from experiments import point

    return StudyContext(
        model=c["model"],
        scheduler=c["scheduler"],
        serving=c["serving"],
        slo=c["slo"],
        profiles=point.profiles_identity(c["profiles"]),
        search=c["search"],
        cache_dir=c["paths"].cache_dir,
        cache_enabled=c["cache"].enabled,
        retry_errors=c["cache"].retry_errors,
        evaluator=evaluator,
        batch_configs=c["study"].batch_configs,
    )


def run_study(c: dict, name: str, *, evaluator=None, backend: str = "joblib", **record) -> dict:
    """Run the study of checked config ``c`` into ``<paths.study_dir>/<name>/``; returns
    ``{"dir", "tables", "meta"}``. ``record``: what study.json keeps of the run (``overrides``)
    and ``config_yaml``, the composed config written beside the tables.

    A study in which every point failed raises ExperimentError after writing its tables;
    Ctrl-C raises :class:`StudyInterrupted`."""
    from experiments.study.execute import check_backend
    from experiments.study.plan import plan

    check_backend(backend)
    clock = (time.perf_counter(), time.time())
    tasks, notes = plan(c)
    ctx = context_of(c, evaluator)
    if evaluator is None:
        check_phase_models(c, tasks, ctx.profiles)
    n_jobs = c["search"].n_jobs if evaluator is None else 1
    lock = _lock(Path(c["paths"].study_dir), name)
    try:
        results = _search(c, ctx, tasks, n_jobs, backend, name, clock[1])
        from experiments.study.output import write_study

        return write_study(c, name, tasks, notes, results, ctx, clock[0], **record)
    finally:
        runlock.release(*lock)


def _search(c: dict, ctx: StudyContext, tasks, n_jobs: int, backend: str, name, t_wall0):
    """Run the tasks (printing what runs and the progress); their results in task order."""
    from experiments.study.execute import run_tasks

    print(
        f"study {name}: {len(tasks)} searches, {len(c['study'].traces)} trace(s), "
        f"{n_jobs} worker(s) ({backend}), {c['search'].duration_s:g} s re-sampled traces",
        flush=True,
    )
    prof = ctx.profiles
    if prof["source"] != "reference":  # a measured (or CPU smoke) table never slips in unseen
        tables = prof.get("tables") or [prof["source"]]
        print(
            f"profiles: {len(tables)} measured table(s) from {prof['source']}: {', '.join(tables)}",
            flush=True,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_tasks(ctx, tasks, n_jobs, report=True, backend=backend,
                             work_dir=Path(c["paths"].results_dir) / "submitit")  # fmt: skip
    except KeyboardInterrupt:
        n = cached_since(ctx.cache_dir, t_wall0 - 1.0) if ctx.cache_enabled else 0
        raise StudyInterrupted(f"interrupted: {n} points cached, rerun to resume") from None


def run_point(c: dict, evaluator=None) -> dict:
    """Multirun point mode (``point.*``): evaluate (or fetch from the cache) one point; returns
    its record."""
    from experiments import point
    from experiments.cache import PointCache

    pt = c["point"]
    if pt.design not in c["designs"]:
        raise ExperimentError(
            f"point.design: unknown design '{pt.design}' (known: {', '.join(c['designs'])})"
        )
    if pt.trace not in c["traces"]:
        raise ExperimentError(
            f"point.trace: unknown trace '{pt.trace}' (known: {', '.join(c['traces'])})"
        )
    if pt.rate is None or pt.rate <= 0:
        raise ExperimentError(f"point.rate: must be > 0, got {pt.rate}")
    d = c["designs"][pt.design]
    counts = tuple(getattr(pt, k) for k in d.count_keys)
    for n, k in zip(counts, d.count_keys, strict=True):
        if n is None or n < 1:
            raise ExperimentError(f"point.{k}: must be >= 1, got {n}")
    ctx = context_of(c, evaluator)
    cache = PointCache(Path(ctx.cache_dir), ctx.cache_enabled, ctx.retry_errors)
    ev = point.PointEvaluator(ctx.model, d, c["traces"][pt.trace], ctx.scheduler, ctx.slo,
                              ctx.serving, ctx.profiles, ctx.search, None, cache, evaluator)  # fmt: skip
    rec = cache.evaluate(ev.point(counts, pt.rate), evaluator or point.evaluate_point)
    res = rec["result"] or {}
    print(
        f"{pt.design} {counts} on {pt.trace} at {pt.rate} req/s: "
        + (
            f"error: {rec['error']}"
            if rec["status"] != "ok"
            else f"SLO {'met' if res.get('slo_met') else 'missed'}, "
            f"throughput {res.get('throughput_rps', float('nan')):.2f} req/s"
        )
        + (" (cached)" if cache.stats.hits else "")
    )
    return rec


def check_phase_models(c: dict, tasks, profiles: dict) -> None:
    """Fail before simulating when a planned design's GPU has no phase model in its profiles
    (else every point of that design would be stored as an error and the study exit 0)."""
    from characterize.modeling.phase_model import PhaseModelError
    from characterize.modeling.specs import load_machine
    from experiments import point

    tp = c["model"].tp
    checked: set[tuple[str, str | None, str]] = set()
    for task in tasks:
        prof = task.profiles or profiles
        gpus = [load_machine(s).profile_gpu for s in task.design.machine_specs] + [None]
        model = (task.model or c["model"]).name  # a profile set may run another model
        for gpu in gpus:  # None: the slowdown reference
            if (prof["source"], gpu, model) in checked:
                continue
            checked.add((prof["source"], gpu, model))
            try:
                models = point.phase_models_of({**prof, "adjust": None})
                if gpu is None:
                    models.reference_model(model)
                else:
                    models.get(model, gpu, tp)
            except PhaseModelError as e:
                raise ExperimentError(
                    f"profiles.source: design {task.design_key}: {str(e).splitlines()[0]}"
                ) from None


def cached_since(cache_dir, t0: float) -> int:
    """Point records written into ``cache_dir`` since ``t0`` (epoch seconds)."""
    n = 0
    root = Path(cache_dir) if cache_dir else None
    if root is None or not root.is_dir():
        return 0
    for sub in root.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            try:
                if f.suffix == ".json" and f.stat().st_mtime >= t0:
                    n += 1
            except OSError:
                pass
    return n


def _lock(study_dir: Path, name: str) -> tuple[Path, dict]:
    """Take ``<study_dir>/.<name>.lock`` (:mod:`common.runlock`): a second study of the same
    name running at once would overwrite this one's tables. ExperimentError naming the run
    that holds it; a lock left by a process that is gone is taken over."""
    path = study_dir / f".{name}.lock"
    info = runlock.holder_info()
    holder = runlock.acquire(path, info)
    if holder is not None:
        raise ExperimentError(
            f"study.name: study '{name}' is being run by {runlock.describe(holder)} "
            f"({holder.get('command') or 'command unknown'}; lock {path}): wait for it, set "
            "another study.name, or delete the lock if that run is gone"
        )
    return path, info
