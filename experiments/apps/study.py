"""splitbench-study: the paper's design comparisons, then the report.

    splitbench-study                         # the default study (experiment=paper-default)
    splitbench-study experiment=paper-full   # + iso-throughput and the provisioning heatmap
    splitbench-study experiment=tiny         # seconds-long smoke study
    splitbench-study search.n_jobs=4 search.duration_s=600

Every simulated point is cached under ``paths.cache_dir`` (a rerun recomputes nothing). One
point per job of a Hydra multirun, all jobs writing into the same cache:

    splitbench-study -m hydra/launcher=joblib point.design=splitwise-hh \\
        point.trace=azure-conv-2023 point.prompt_machines=10,20 point.token_machines=8 \\
        point.rate=8,16

Outputs go to ``paths.study_dir/<study.name>/``: study.json, budget.csv (iso-power and
iso-cost), iso_throughput.csv, heatmap.csv, points.csv (every simulated point),
latency_quantiles.csv, config.yaml; then the report into ``paths.report_dir``. A job of a
whole-study multirun (``-m experiment=tiny slo=paper,strict``) writes
``<study.name>--<its overrides>/`` in both, and a point-mode job its ``record.json`` into its
job folder. Failed points are listed as failed (``status``), the first error and the count are
printed, and a study in which every point failed exits with status 2. study.json records each
table's row count and column kinds (``tables``; the report checks the files against it). While
a study runs, ``paths.study_dir/.<name>.lock`` names it (pid, host, start, command): a second
study of the same name stops with one line naming the first (exit 2); the lock of a process
that is gone is taken over (:mod:`common.runlock`).
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from common import runlock
from common.atomic import write_text_atomic
from common.units import w_to_kw
from experiments.apps._cli import launch


def _context(c: dict, evaluator=None):
    from experiments import runner
    from experiments.study import StudyContext

    return StudyContext(
        model=c["model"],
        scheduler=c["scheduler"],
        serving=c["serving"],
        slo=c["slo"],
        profiles=runner.profiles_identity(c["profiles"]),
        search=c["search"],
        cache_dir=c["paths"].cache_dir,
        cache_enabled=c["cache"].enabled,
        retry_errors=c["cache"].retry_errors,
        evaluator=evaluator,
        batch_configs=c["study"].batch_configs,
    )


def run_point(c: dict, evaluator=None) -> dict:
    """Multirun point mode: evaluate (or fetch from the cache) one point; returns its record."""
    from experiments import runner
    from experiments.cache import PointCache
    from experiments.errors import ExperimentError

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
    counts = (pt.machines,) if d.kind == "baseline" else (pt.prompt_machines, pt.token_machines)
    names = (
        ("point.machines",)
        if d.kind == "baseline"
        else ("point.prompt_machines", "point.token_machines")
    )
    for n, k in zip(counts, names, strict=True):
        if n is None or n < 1:
            raise ExperimentError(f"{k}: must be >= 1, got {n}")
    ctx = _context(c, evaluator)
    point = runner.make_point(
        model=ctx.model,
        design=runner.design_point(d, counts),
        trace=runner.trace_point(
            c["traces"][pt.trace],
            pt.rate,
            runner.point_duration(pt.rate, ctx.search.duration_s, ctx.search.max_requests),
        ),
        scheduler=ctx.scheduler,
        serving=ctx.serving,
        slo=ctx.slo,
        profiles=ctx.profiles,
        seed=ctx.search.seed,
    )
    cache = PointCache(Path(ctx.cache_dir), ctx.cache_enabled, ctx.retry_errors)
    rec = cache.evaluate(point, evaluator or runner.evaluate_point)
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


def _check_phase_models(c: dict, tasks, profiles: dict) -> None:
    """Fail before simulating when a planned design's GPU has no phase model in its profiles
    (else every point of that design would be stored as an error and the study exit 0)."""
    from characterize.modeling.phase_model import PhaseModelError, load_phase_models
    from characterize.modeling.specs import load_machine
    from experiments.errors import ExperimentError

    model, tp = c["model"].name, c["model"].tp
    checked: set[tuple[str, str, str]] = set()
    for task in tasks:
        source = (task.profiles or profiles)["source"]
        d = task.design
        specs = [d.machine] if d.kind == "baseline" else [d.prompt_machine, d.token_machine]
        gpus = [load_machine(s).profile_gpu for s in specs] + [None]  # None: the reference
        ref = (task.profiles or profiles).get("slo_reference") or {}
        for gpu in gpus:
            model = (task.model or c["model"]).name  # a profile set may run another model
            if (source, gpu, model) in checked:
                continue
            checked.add((source, gpu, model))
            try:
                models = load_phase_models(
                    source,
                    reference=ref.get("source", "reference"),
                    reference_gpu=ref.get("gpu", "a100-80gb"),
                    reference_tp=int(ref.get("tp", 8)),
                )
                if gpu is None:
                    models.reference_model(model)
                else:
                    models.get(model, gpu, tp)
            except PhaseModelError as e:
                raise ExperimentError(
                    f"profiles.source: design {task.design_key}: {str(e).splitlines()[0]}"
                ) from None


def _cached_since(cache_dir, t0: float) -> int:
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


def _study_label(st_name: str) -> tuple[str, list[str] | None]:
    """The study's folder name and the job's overrides: ``<name>`` alone, or inside a
    multirun ``<name>--<its overrides>`` (one folder per job, nothing overwritten)."""
    from experiments import sweep

    job = sweep.hydra_job()
    if job is None:  # a single run: its command-line overrides when Hydra runs the app
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return st_name, None  # called as a library: none recorded (the report falls back)
        return st_name, list(HydraConfig.get().overrides.task)
    label = sweep.label_of(job["overrides"])
    return (f"{st_name}--{label}" if label else f"{st_name}--job{job['num']}"), job["overrides"]


def context_summary(results: list[dict], tasks) -> dict:
    """Per trace, what the context-window policy did over every point simulated: requests
    clipped or rejected and the tokens removed (the ``context`` block of point results)."""
    out: dict[str, dict] = {}
    seen: set = set()
    for task, res in zip(tasks, results, strict=True):
        for p in res.get("points", []):
            r = p.get("result") or {}
            key = r.get("_key")
            if key in seen:
                continue
            seen.add(key)
            ctx = r.get("context")
            if not isinstance(ctx, dict):
                continue
            t = out.setdefault(
                task.trace_key,
                {
                    "policy": ctx.get("policy"),
                    "max_context": ctx.get("max_context"),
                    "points": 0,
                    "requests": 0,
                    "clipped": 0,
                    "clipped_tokens": 0,
                    "rejected": 0,
                    "rejected_tokens": 0,
                },
            )
            t["points"] += 1
            t["requests"] += int(r.get("trace_requests") or 0)
            for k in ("clipped", "clipped_tokens", "rejected", "rejected_tokens"):
                v = ctx.get(k)
                t[k] += int(v) if isinstance(v, int | float) and v == v else 0
    return out


def _context_lines(summary: dict) -> list[str]:
    lines = []
    for trace, t in summary.items():
        n = t["requests"] or 1
        lines.append(
            f"context ({t['policy']} at {t['max_context']} tokens), {trace}: "
            f"{t['clipped']} of {t['requests']} requests clipped ({100 * t['clipped'] / n:.1f}%, "
            f"{t['clipped_tokens']} tokens removed), {t['rejected']} rejected "
            f"({t['rejected_tokens']} tokens) over {t['points']} simulated points"
        )
    return lines


def run(cfg: DictConfig, evaluator=None) -> dict:
    """Run the study of ``cfg`` (a composed ``study`` config); returns its tables and paths.

    ``evaluator``: replaces the simulator (``fn(point) -> result dict``; tests). A study in
    which every point failed raises ExperimentError (exit 2) after writing its tables; Ctrl-C
    raises :class:`~experiments.apps._cli.Interrupted` (exit 130).
    """
    from experiments import sweep
    from experiments.cache import write_json_atomic
    from experiments.config.checks import study_config
    from experiments.study import check_backend, plan

    c = study_config(cfg)
    c["point"] = OmegaConf.to_object(cfg.point) if "point" in cfg else None
    if c["point"] is not None and c["point"].design is not None:
        rec = run_point(c, evaluator)
        jd = sweep.job_dir()
        if jd is not None:  # the job's (or run's) own folder keeps its record
            write_json_atomic(jd / "record.json", rec)
        return {"point": rec}
    st = c["study"]
    backend = _backend(cfg)
    check_backend(backend)
    clock = (time.perf_counter(), time.time())
    tasks, notes = plan(c)
    ctx = _context(c, evaluator)
    if evaluator is None:
        _check_phase_models(c, tasks, ctx.profiles)
    n_jobs = c["search"].n_jobs if evaluator is None else 1
    name, overrides = _study_label(st.name)
    lock = _lock(Path(c["paths"].study_dir), name)
    try:
        return _run_study(cfg, c, evaluator, (tasks, notes), ctx, n_jobs, (name, overrides), clock)
    finally:
        runlock.release(*lock)


def _lock(study_dir: Path, name: str) -> tuple[Path, dict]:
    """Take ``<study_dir>/.<name>.lock`` (:mod:`common.runlock`): a second study of the same
    name running at once would overwrite this one's tables. ExperimentError naming the run
    that holds it; a lock left by a process that is gone is taken over."""
    from experiments.errors import ExperimentError

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


def _run_study(cfg, c, evaluator, planned, ctx, n_jobs, label, clock) -> dict:
    """The study of :func:`run` once its folder's lock is held."""
    import pandas as pd

    from experiments import runner
    from experiments.apps._cli import Interrupted
    from experiments.cache import write_json_atomic
    from experiments.errors import ExperimentError
    from experiments.study import OPTIONAL_TABLES, assemble, latency_rows, run_tasks

    st = c["study"]
    tasks, notes = planned
    name, overrides = label
    t0, t_wall0 = clock
    backend = _backend(cfg)
    print(
        f"study {name}: {len(tasks)} searches, {len(st.traces)} trace(s), "
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
            results = run_tasks(
                ctx,
                tasks,
                n_jobs,
                report=True,
                backend=backend,
                work_dir=Path(c["paths"].results_dir) / "submitit",
            )
    except KeyboardInterrupt:
        n = _cached_since(ctx.cache_dir, t_wall0 - 1.0) if ctx.cache_enabled else 0
        raise Interrupted(f"interrupted: {n} points cached, rerun to resume") from None
    wall = time.perf_counter() - t0
    tables = assemble(c, tasks, results)
    out = Path(c["paths"].study_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    written = {}  # what each table holds, in study.json: the report checks the files by it
    for tname in ("budget", "iso_throughput", "heatmap", "points"):
        written[tname] = _write_csv(pd.DataFrame(tables[tname]), out / f"{tname}.csv")
    for tname in OPTIONAL_TABLES:
        if tables[tname]:
            written[tname] = _write_csv(pd.DataFrame(tables[tname]), out / f"{tname}.csv")
    written["latency_quantiles"] = _write_csv(
        pd.DataFrame(latency_rows(results, tasks)), out / "latency_quantiles.csv"
    )
    evaluated = sum(r["evaluated"] for r in results)
    hits = sum(r["cache_hits"] for r in results)
    errors = sum(r["errors"] for r in results)
    # every point looked at: the searches' points and the heatmap's simulated cells
    looked = [*tables["points"], *(h for h in tables["heatmap"] if h.get("evaluated"))]
    failed = [p for p in looked if p.get("status") == "failed"]
    context = context_summary(results, tasks)
    meta = {
        "study": asdict(st),
        "label": name,
        "overrides": overrides,
        "notes": notes,
        "model": asdict(c["model"]),
        "scheduler": asdict(c["scheduler"]),
        "slo": asdict(c["slo"]),
        "serving": asdict(c["serving"]),
        "profiles": ctx.profiles,
        "search": asdict(c["search"]),
        "designs": {k: asdict(c["designs"][k]) for k in {*st.designs, *st.h200_designs}},
        "traces": {k: asdict(c["traces"][k]) for k in st.traces},
        "code_version": runner.code_version(),
        "versions": _versions(),
        "tasks": [
            {k: v for k, v in r.items() if k not in ("points", "cells", "config_rates")}
            for r in results
        ],
        "simulations": {
            "evaluated": evaluated,
            "cache_hits": hits,
            "errors": errors,
            "failed_points": len(failed),
            "points": len(looked),
        },
        "context": context,
        "tables": written,
        "wall_s": round(wall, 1),
    }
    write_json_atomic(out / "study.json", meta)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    write_text_atomic(out / "config.yaml", text)
    print(
        f"study {name}: {evaluated} simulated, {hits} from cache, {len(failed)} of "
        f"{len(looked)} points failed, {wall:.0f} s -> {out}"
    )
    if failed:
        print(f"first failure: {failed[0]['error']} ({len(failed)} points failed)")
    for line in _context_lines(context):
        print(line)
    for note in notes:
        print(f"note: {note}")
    sys.stdout.flush()
    if looked and len(failed) == len(looked):
        raise ExperimentError(
            f"study {name}: all {len(failed)} points failed; first: {failed[0]['error']} "
            f"(tables in {out})"
        )
    _print_budget(tables["budget"])
    report_path = None
    if st.report:
        from experiments.report.manifest import write_report_folder

        report_dir = Path(c["paths"].report_dir)
        if name != st.name:  # a multirun job: its own report folder
            report_dir = report_dir / name
        report_path = write_report_folder(
            [out],
            report_dir,
            profiles_source=c["profiles"].source,
            model=c["model"].name,
        )
        print(f"report: {report_path}")
    return {"dir": out, "tables": tables, "meta": meta, "report": report_path}


def _backend(cfg: DictConfig) -> str:
    """``search.backend`` (joblib when the config has no such key)."""
    return str(OmegaConf.select(cfg, "search.backend", default="joblib") or "joblib")


def _write_csv(df, path: Path) -> dict:
    """Write a study table; returns its record for study.json: ``rows`` and each column's kind
    (:func:`column_kind`)."""
    write_text_atomic(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return {"rows": len(df), "columns": {str(c): column_kind(df[c]) for c in df.columns}}


def column_kind(col) -> str:
    """``number``, ``bool`` or ``text``: what every non-empty cell of a table column is."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(col.dtype):
        return "number"
    vals = [v for v in col if v is not None and not (isinstance(v, float) and v != v)]
    if vals and all(isinstance(v, bool) for v in vals):
        return "bool"
    if vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return "number"
    return "text"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "splitbench",
        "numpy",
        "pandas",
        "hydra-core",
        "omegaconf",
        "joblib",
        "seaborn",
        "matplotlib",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _print_budget(rows: list[dict]) -> None:
    if not rows:
        return
    print(
        f"{'trace':<16}{'budget':<11}{'design':<17}{'config':>10}{'req/s':>8}"
        f"{'$/h':>8}{'kW':>7}{'vs A100':>8}{'vs H100':>8}"
    )

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    for r in rows:
        cfg = (
            f"{r['prompt_machines']}+{r['token_machines']}"
            if r["prompt_machines"]
            else f(r["machines"], "d")
        )
        print(
            f"{r['trace']:<16}{r['budget']:<11}{r['design']:<17}{cfg:>10}"
            f"{f(r['max_rate'], '.1f'):>8}{f(r['cost_per_hour'], '.0f'):>8}"
            f"{f(r['power_w'] and w_to_kw(r['power_w']), '.0f'):>7}"
            f"{f(r['max_rate_vs_baseline-a100'], '.2f'):>8}"
            f"{f(r['max_rate_vs_baseline-h100'], '.2f'):>8}"
        )
    sys.stdout.flush()


def _validate(cfg: DictConfig) -> None:
    from experiments.config.checks import study_config
    from experiments.errors import ExperimentError
    from experiments.study import check_backend

    c = study_config(cfg)
    seed = c["search"].seed
    if seed < 0:  # numpy's generators take none: else every point fails
        raise ExperimentError(f"search.seed: must be >= 0, got {seed}")
    check_backend(_backend(cfg))


def main(argv: list[str] | None = None) -> None:
    launch("study", run, _validate, argv, interrupted="interrupted: rerun to resume")


if __name__ == "__main__":
    main()
