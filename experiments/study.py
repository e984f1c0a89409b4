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

from experiments import schemas
from experiments.cache import PointCache
from experiments.errors import ExperimentError
from experiments.provision import (
    Budget,
    Pool,
    RateGrid,
    affordable_frontier,
    cost_of,
    heatmap,
    max_rate_under_budget,
    min_machines,
    power_of,
)

H200_GPU = "h200-141gb"


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


@dataclass
class Task:
    kind: str  # "budget" | "throughput" | "heatmap"
    trace_key: str
    trace: schemas.TraceConf
    design_key: str
    design: schemas.DesignConf
    budget: dict | None = None  # {"power_w", "cost_per_hour"}
    rate: float | None = None
    grid: tuple[int, int] | None = None  # heatmap (prompt_max, token_max)
    profiles: dict | None = None  # overrides the context's (H200 designs)
    labels: list[dict] = field(default_factory=list)  # which study rows this task answers

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

    def evaluate(counts, rate):
        point = runner.make_point(
            model=ctx.model,
            design=runner.design_point(task.design, counts),
            trace=runner.trace_point(
                task.trace,
                rate,
                runner.point_duration(rate, ctx.search.duration_s, ctx.search.max_requests),
            ),
            scheduler=ctx.scheduler,
            slo=ctx.slo,
            profiles=profiles,
            seed=ctx.search.seed,
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
    else:
        raise ExperimentError(f"study: unknown task kind '{task.kind}'")
    out["pools"] = [asdict(p) for p in pools]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["evaluated"] = cache.stats.evaluated
    out["cache_hits"] = cache.stats.hits
    out["errors"] = cache.stats.errors
    return out


def measured_h200_profiles(measured_dir: str, model: str) -> list[str] | None:
    """The measured profile tables under ``measured_dir`` with H200 rows of ``model``
    (contract 2; every table found recursively), or None when there is none.

    Profiles of different engines are not interchangeable: when some tables were measured by
    the suite's own engine (``splitbench-native``), only those are taken. A table that is a
    profile table but invalid is an error (one line naming it), not skipped.
    """
    from characterize.modeling.profiles import ProfileError, find_profile_tables, read_profiles

    try:
        tables = find_profile_tables(measured_dir)
    except ProfileError:
        return None
    found: list[tuple[bool, str]] = []
    for path in tables:
        df = read_profiles(path)
        rows = df[(df["gpu"] == H200_GPU) & (df["model"] == model)]
        if len(rows):
            native = rows["source"].str.contains("splitbench-native", regex=False).all()
            found.append((bool(native), str(path)))
    if any(native for native, _ in found):
        found = [f for f in found if f[0]]
    return [path for _, path in found] or None


def h200_profile_set(measured, base_source: str, out_dir: str) -> str:
    """A profile CSV = the base set (e.g. the reference DGX profiles, which also hold the
    slowdown reference machine) plus the H200 rows of ``measured``: the measured tables (a path
    or a list of paths; a point in two tables is an error naming both), or a derived profile
    table (a DataFrame from characterize.modeling.derive, its ``source`` saying "derived
    from ..."); written once, named by content. Prints what it merged."""
    import hashlib

    import pandas as pd

    from characterize.modeling.profiles import (
        KEY_COLUMNS,
        ProfileError,
        read_profile_source,
        read_profiles,
        write_profiles,
    )

    derived = isinstance(measured, pd.DataFrame)
    paths = [] if derived else [measured] if isinstance(measured, str) else list(measured)
    base = read_profile_source(base_source)[0]
    frames = [measured[measured["gpu"] == H200_GPU]] if derived else []
    seen: dict[tuple, str] = {}
    for path in paths:
        df = read_profiles(path)
        df = df[df["gpu"] == H200_GPU]
        for key in df[KEY_COLUMNS].itertuples(index=False, name=None):
            if key in seen:
                raise ProfileError(
                    f"{path}: measures the same H200 point as {seen[key]} "
                    f"({', '.join(map(str, key))}): keep one table under profiles.measured_dir"
                )
            seen[key] = path
        frames.append(df)
    merged = pd.concat([base[base["gpu"] != H200_GPU], *frames], ignore_index=True)
    if derived:
        print(
            f"H200 profiles: {len(frames[0])} DERIVED rows (no measured H200 table) merged with "
            f"the '{base_source}' profiles: {frames[0]['source'].iloc[0]}"
        )
    else:
        print(
            f"H200 profiles: merged {len(paths)} measured table(s) ({sum(map(len, frames))} "
            f"rows) with the '{base_source}' profiles: {', '.join(paths)}"
        )
    text = merged.to_csv(index=False, lineterminator="\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(out_dir) / "profiles" / f"with-h200-{digest}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_profiles(merged, path)
    return str(path)


def _shown(path: str, root: str) -> str:
    """``path`` relative to the project root when inside it (reports stay portable)."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel


def plan(cfg: dict) -> tuple[list[Task], list[str]]:
    """The study's tasks (deduplicated) and notes for the report."""
    from experiments import runner

    st: schemas.StudySpec = cfg["study"]
    notes: list[str] = []
    designs = list(st.designs)
    h200_profiles = None
    if st.h200_designs:
        path = measured_h200_profiles(cfg["profiles"].measured_dir, cfg["model"].name)
        shown = _shown(cfg["profiles"].measured_dir, cfg["paths"].root)
        if path is None:
            # issue 15: no measured H200 profile -> derive one from the H200 spec and the
            # efficiencies the base profiles achieved on the closest measured GPU (the H100)
            from characterize.modeling.derive import derived_profile_table

            derived = derived_profile_table(
                cfg["model"].name, H200_GPU, cfg["model"].tp, source=cfg["profiles"].source
            )
            merged = h200_profile_set(derived, cfg["profiles"].source, cfg["paths"].cache_dir)
            h200_profiles = runner.profiles_identity(replace(cfg["profiles"], source=merged))
            designs += [d for d in st.h200_designs if d not in designs]
            for d in st.h200_designs:  # every table and figure shows them as derived
                dc = cfg["designs"][d]
                if "derived" not in (dc.display or d):
                    cfg["designs"][d] = replace(dc, display=f"{dc.display or d} (derived)")
            notes.append(
                f"H200 designs ({', '.join(st.h200_designs)}) run on DERIVED profiles, not "
                f"measurements: no measured H200 profile of {cfg['model'].name} under {shown}, so "
                "characterize.modeling.derive scaled the H100 reference profile by the H200 spec "
                "at the efficiencies the H100 achieved (held-out error of that method, A100<->H100 "
                "on the reference data: decode MAPE 2.6-12.1%, prefill 9.7-30.0%; "
                "`splitbench-profiles derive --check`); measured H200 profiles replace them "
                "automatically"
            )
        else:
            merged = h200_profile_set(path, cfg["profiles"].source, cfg["paths"].cache_dir)
            h200_profiles = runner.profiles_identity(replace(cfg["profiles"], source=merged))
            designs += [d for d in st.h200_designs if d not in designs]
            notes.append(
                "H200 designs use the measured H200 rows of "
                f"{', '.join(_shown(p, cfg['paths'].root) for p in path)} "
                f"(with the `{cfg['profiles'].source}` profiles for the other machines and the "
                "slowdown reference); another engine than the reference DGX profiles may have "
                "measured them: compare with care"
            )
    tasks: dict[str, Task] = {}

    def add(task: Task, label: dict) -> None:
        d = cfg["designs"][task.design_key]
        if h200_profiles and "h200" in f"{d.machine}{d.prompt_machine}{d.token_machine}":
            task.profiles = h200_profiles
        if task.kind == "budget":
            # tasks with the same affordable frontier are the same search
            pools = pools_of(task.design, cfg["search"])
            cands = affordable_frontier(pools, Budget(**task.budget))
            sig = json.dumps([task.trace_key, task.design_key, cands, task.profiles], default=str)
        else:
            sig = task.signature()
        if sig not in tasks:
            tasks[sig] = task
        tasks[sig].labels.append(label)

    for tk in st.traces:
        for dk in designs:
            for b in st.budgets:
                add(
                    Task(
                        "budget", tk, cfg["traces"][tk], dk, cfg["designs"][dk], budget=budget_of(b)
                    ),
                    {
                        "budget": b.name,
                        "budget_w": budget_of(b)["power_w"],
                        "budget_cost": budget_of(b)["cost_per_hour"],
                    },
                )
            if tk in st.iso_throughput_rates:
                add(
                    Task(
                        "throughput",
                        tk,
                        cfg["traces"][tk],
                        dk,
                        cfg["designs"][dk],
                        rate=float(st.iso_throughput_rates[tk]),
                    ),
                    {"budget": "iso-throughput"},
                )
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
            ),
            {"budget": "heatmap"},
        )
    # Largest searches first (A100 designs have the most machines) for load balance.
    order = sorted(tasks.values(), key=lambda t: (t.kind != "budget", t.design.kind == "baseline"))
    return order, notes


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
    """``(i, run_task(...))`` in a worker: Ctrl-C is the study process's to handle."""
    if ctx.main_pid and os.getpid() != ctx.main_pid:
        import signal

        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the worker's main thread
            pass
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


def run_tasks(
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
                    if task.kind == "budget"
                    else f"cheapest {res.get('cheapest')}"
                    if task.kind == "throughput"
                    else f"{len(res.get('cells', []))} cells"
                )
                labels = "+".join(lab["budget"] for lab in task.labels)
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
    for task, res in zip(tasks, results, strict=True):
        pools = [Pool(**p) for p in res["pools"]]
        for p in res.get("points", []):
            r = p["result"]
            c = list(p["counts"])
            point_rows.append(
                {
                    "task": task.kind,
                    "trace": task.trace_key,
                    "design": task.design_key,
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
            "design_display": design_display[task.design_key],
            "kind": task.design.kind,
        }
        if task.kind == "budget":
            best = res["best"]
            m = _row_metrics(res["points"], best, res["rate"]) if best else {}
            for lab in task.labels:
                budget_rows.append(
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
                        "configs_on_frontier": res["candidates"],
                        "simulations": len(res["points"]),
                        "failed_points": sum(bool(p["result"].get("error")) for p in res["points"]),
                        **_prefix_columns(m),
                    }
                )
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
    order = {k: i for i, k in enumerate([*cfg["study"].designs, *cfg["study"].h200_designs])}
    t_order = {k: i for i, k in enumerate(cfg["study"].traces)}
    b_order = {b.name: i for i, b in enumerate(cfg["study"].budgets)}

    def sort_key(r):
        return (
            t_order.get(r["trace"], 99),
            b_order.get(r.get("budget"), 99),
            str(r.get("objective", "")),
            order.get(r["design"], 99),
        )

    budget_rows.sort(key=sort_key)
    thr_rows.sort(key=sort_key)
    _add_ratios(budget_rows, key="max_rate", group=("trace", "budget"))
    _add_ratios(budget_rows, key="throughput_rps", group=("trace", "budget"))
    _add_ratios(thr_rows, key="cost_per_hour", group=("trace", "objective"))
    _add_ratios(thr_rows, key="power_w", group=("trace", "objective"))
    return {
        "budget": budget_rows,
        "iso_throughput": thr_rows,
        "heatmap": heat_rows,
        "points": point_rows,
    }


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
