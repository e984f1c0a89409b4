"""The doors' shared plumbing: one-line errors (exit 2) around a Hydra app.

:func:`launch` composes and checks the command line's overrides first
(:mod:`experiments.config.compose`), so a bad value is ONE line naming the key (``error:
design.prompt_machines: must be >= 1, got -3``) and exit status 2, not a Hydra traceback; then
it runs the app under Hydra with :func:`guarded` around it. Multirun (``-m``) and Hydra's own
flags (``--help``, ``--cfg``, ...) skip the pre-check; errors inside each job are still one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from common.errors import error_line
from experiments.config.compose import (
    check_run_dir,
    is_hydra_arg,
    precheck,
    precheck_base,
    user_errors,
)
from experiments.config.help import app_help
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError, Interrupted

__all__ = ["FailedJob", "Interrupted", "fail", "guarded", "launch", "precheck"]


def fail(msg: str) -> None:
    """Print ``error: msg`` to stderr and exit with status 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


class FailedJob:
    """What a multirun job that failed returns to Hydra (instead of raising, which would abort
    the sweep): its one-line error."""

    def __init__(self, error: str) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"FailedJob({self.error!r})"


def _user_error_line(e: BaseException) -> str | None:
    if isinstance(e, user_errors()) or (isinstance(e, OSError) and e.filename):
        return error_line(e)
    return None


def guarded(
    task: Callable[[DictConfig], object], interrupted: str = "interrupted"
) -> Callable[[DictConfig], object]:
    """Wrap an app task so user errors (and file errors naming a path) become one line and exit
    status 2, and Ctrl-C one line and exit status 130 (``interrupted``: the line to print unless
    the task raises :class:`Interrupted` with its own). Ctrl-C before and after the task
    (start-up, Hydra's bookkeeping) is :mod:`common.entry`'s: ``interrupted``, exit 130 at once.

    Inside a multirun job a failure is printed as one line, recorded in the job folder
    (``job.json``, :mod:`experiments.sweep`) and RETURNED as a :class:`FailedJob`, so the other
    jobs of the sweep still run; a job that succeeds records its headline metrics."""
    from common.entry import interruptible
    from experiments import sweep

    def wrapper(cfg: DictConfig):
        job = sweep.hydra_job()
        try:
            with interruptible():  # the task's work: Ctrl-C is a KeyboardInterrupt for it
                ret = task(cfg)
        except (KeyboardInterrupt, Interrupted) as e:
            msg = str(e) if isinstance(e, Interrupted) else interrupted
            print(
                f"interrupted: {msg}" if not msg.startswith("interrupted") else msg,
                file=sys.stderr,
                flush=True,
            )
            sys.exit(130)
        except Exception as e:  # noqa: BLE001
            line = _user_error_line(e)
            if job is None:
                if line is not None:
                    fail(line)
                raise
            if line is None:  # a crash: its type and message, the traceback in the job folder
                import traceback

                line = f"{type(e).__name__}: {error_line(e)}"
                try:
                    from common.atomic import write_text_atomic

                    write_text_atomic(Path(job["dir"]) / "error.txt", traceback.format_exc())
                except OSError:
                    pass
            print(
                f"error: job {job['num']} ({' '.join(job['overrides'])}): {line}",
                file=sys.stderr,
                flush=True,
            )
            _record(job, "failed", line, {})
            return FailedJob(line)
        if job is not None:
            status, error, metrics = sweep.headline(ret)
            _record(job, status, error, metrics)
        return ret

    return wrapper


def _record(job: dict, status: str, error: str | None, metrics: dict) -> None:
    from experiments import sweep

    try:
        sweep.write_job_record(job, status, error, metrics)
    except OSError as e:  # the job folder is Hydra's: report, do not mask the job's outcome
        print(f"error: {error_line(e)}", file=sys.stderr)


def launch(
    config_name: str,
    task: Callable[[DictConfig], object],
    check: Callable[[DictConfig], object],
    argv: list[str] | None = None,
    registers: Sequence[Callable[[], None]] = (register,),
    interrupted: str = "interrupted",
) -> None:
    """Run ``task`` as a Hydra app on ``argv`` (default sys.argv[1:]), errors as one line.

    ``check``: the app's config check (one-line ExperimentError), run on the composed command
    line first; ``registers``: the ConfigStore registrations the app's config needs;
    ``interrupted``: the line printed on Ctrl-C (exit 130) unless the task raises
    :class:`Interrupted`.
    A multirun in which every job failed exits with status 2."""
    import hydra

    from experiments import sweep

    for reg in registers:
        reg()
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(app_help(config_name, os.path.basename(sys.argv[0]) or config_name))
        sys.exit(0)
    flags = [a for a in args if a.startswith("-")]
    if not flags:
        try:
            overrides = [a for a in args if not is_hydra_arg(a)]
            precheck(config_name, overrides, check, registers)
            check_run_dir(config_name, args)
        except ExperimentError as e:
            fail(str(e))
    multirun = "-m" in args or "--multirun" in args
    if multirun:
        try:
            precheck_base(config_name, [a for a in args if not a.startswith("-")], registers)
        except ExperimentError as e:
            fail(str(e))
    if multirun and not any(a.lstrip("+~").startswith("hydra/callbacks") for a in args):
        args.append("hydra/callbacks=sweep_table")  # the sweep table at the end
    if argv is not None or multirun:
        sys.argv = [sys.argv[0], *args]
    app = hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")(
        guarded(task, interrupted)
    )
    sweep.LAST_SWEEP = None
    app()
    outcome = sweep.LAST_SWEEP
    if outcome is not None and outcome["jobs"] and outcome["failed"] == outcome["jobs"]:
        sys.exit(2)
