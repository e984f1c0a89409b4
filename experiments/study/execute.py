"""Where a study's searches run, and its progress: joblib processes on this machine, Ray tasks,
or submitit jobs (:data:`BACKENDS`); two waves (the searches, then the tasks that start from a
search's best configuration); a progress bar over searches with the points looked at so far.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from experiments.errors import ExperimentError
from experiments.study.kinds import kind_of
from experiments.study.search import answer_of, run_task
from experiments.study.task import StudyContext, Task, labels_text

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
    searches, then the tasks that start from a search's best configuration (dependent kinds),
    which get that result instead of asking the cache again."""
    dependent = [kind_of(t).dependent for t in tasks]
    first = [i for i, t in enumerate(tasks) if not dependent[i]]
    second = [i for i, t in enumerate(tasks) if dependent[i]]
    out: list[dict | None] = [None] * len(tasks)
    results = _run_wave(ctx, [tasks[i] for i in first], n_jobs, **opts)
    for i, res in zip(first, results, strict=True):
        out[i] = res
    if second:
        done = {id(tasks[i]): out[i] for i in first}
        for i in second:
            src = done.get(id(tasks[i].source))
            if src is not None:
                tasks[i].source_result = answer_of(src)
            peer = done.get(id(tasks[i].peer)) if tasks[i].peer is not None else None
            if peer is not None:
                tasks[i].peer_result = answer_of(peer)
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
    check_backend(backend)
    if report and ctx.progress_file is None:
        ctx.progress_file = _progress_file(ctx, backend)
    ctx.main_pid = os.getpid()
    results_iter = _results(ctx, tasks, n_jobs, backend, work_dir)
    shown = _Progress(ctx, len(tasks), report, progress)
    out: list[dict | None] = [None] * len(tasks)
    try:
        for done, (i, res) in enumerate(results_iter, start=1):
            out[i] = res
            shown.finished(done, tasks[i], res)
    finally:
        close = getattr(results_iter, "close", None)
        if close is not None:  # stop the workers (joblib aborts its pool) before counting
            close()
        shown.close()
        if report and ctx.progress_file:
            try:
                os.unlink(ctx.progress_file)
            except OSError:
                pass
            ctx.progress_file = None
    return out  # type: ignore[return-value]


def _progress_file(ctx: StudyContext, backend: str) -> str:
    """A new progress file: in the temporary folder, or (remote workers write it) in the
    shared cache folder."""
    import tempfile

    shared = ctx.cache_dir if backend != "joblib" and ctx.cache_dir else None
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="progress-", suffix=".log", dir=shared)
    os.close(fd)
    return path


def _results(ctx, tasks, n_jobs: int, backend: str, work_dir: Path | None):
    """``(i, result)`` of each task as they finish, on ``backend``."""
    if backend == "joblib" and (n_jobs <= 1 or len(tasks) <= 1):
        return (_indexed(ctx, i, t) for i, t in enumerate(tasks))
    if backend == "submitit":
        return _submitit_results(ctx, tasks, n_jobs, work_dir or Path("submitit"))
    if backend == "ray":
        return _ray_results(ctx, tasks, n_jobs)
    return _joblib_results(ctx, tasks, n_jobs)


class _Progress:
    """The progress bar over searches, its count of points looked at (the progress file's
    marks, read once a second by a thread) and one line per finished search."""

    def __init__(self, ctx: StudyContext, total: int, report: bool, progress: bool | None):
        import threading

        from tqdm import tqdm

        self.ctx, self.total, self.report = ctx, total, report
        self.bar = tqdm(
            total=total,
            unit="search",
            disable=(not report) or (None if progress is None else not progress),
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.stop = threading.Event()
        self.t_start = time.perf_counter()
        self.watcher = threading.Thread(target=self.watch, daemon=True) if report else None
        if self.watcher:
            self.watcher.start()

    def points_text(self) -> str:
        from experiments.point import MARK_CACHED, MARK_FAILED, MARK_SIMULATED

        try:
            with open(self.ctx.progress_file, "rb") as f:
                marks = f.read()
        except (OSError, TypeError):
            return ""
        s, c, e = (marks.count(m.encode()) for m in (MARK_SIMULATED, MARK_CACHED, MARK_FAILED))
        return f"{s + c + e} points: {s} simulated, {c} cached" + (f", {e} failed" if e else "")

    def watch(self) -> None:
        last, last_print = "", time.perf_counter()
        while not self.stop.wait(1.0):
            text = self.points_text()
            if not text or text == last:
                continue
            last = text
            if not self.bar.disable:
                self.bar.set_postfix_str(text, refresh=True)
            elif time.perf_counter() - last_print >= 30:  # a log, not a terminal: a line
                last_print = time.perf_counter()
                print(f"  ... {text} ({time.perf_counter() - self.t_start:.0f} s)", flush=True)

    def finished(self, done: int, task: Task, res: dict) -> None:
        from tqdm import tqdm

        self.bar.update(1)
        if not self.report:
            return
        what = kind_of(task).describe(res)
        failed = f", {res['errors']} failed" if res.get("errors") else ""
        tqdm.write(
            f"  [{done}/{self.total}] {task.trace_key} {task.design_key} {labels_text(task)}: "
            f"{what} ({res['evaluated']} simulated, {res['cache_hits']} cached{failed}, "
            f"{res['seconds']} s)",
            file=sys.stdout,
        )
        sys.stdout.flush()

    def close(self) -> None:
        self.stop.set()
        if self.watcher:
            self.watcher.join()
        self.bar.close()
