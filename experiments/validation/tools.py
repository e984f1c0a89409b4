"""Our console scripts (``splitbench-characterize``, ``-profiles``, ``-replay``, ``-loadgen``) run
as validation steps: each from this interpreter's environment, its output in a log, bounded in
time; a failure is one :class:`~experiments.validation.errors.StepError` line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from experiments.validation.errors import StepError


def script(name: str) -> str:
    """The console script ``name`` beside this interpreter."""
    return str(Path(sys.executable).parent / name)


def run_tool(step: str, argv: list[str], log: Path, timeout_s: float, cpus=None) -> None:
    """Run a console script (one of ours) with its output in ``log``; StepError on failure."""
    from experiments.validation.procs import log_note

    if not Path(argv[0]).exists() and shutil.which(argv[0]) is None:
        raise StepError(step, f"{Path(argv[0]).name} is not installed in this environment")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    with open(log, "wb") as f:
        p = subprocess.Popen(  # noqa: S603 - our own console scripts
            argv, stdout=f, stderr=subprocess.STDOUT, env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )  # fmt: skip
        try:
            rc = p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(timeout=30)
            raise StepError(
                step, f"{Path(argv[0]).name} ran past {timeout_s:g} s (log: {log})"
            ) from None
        except BaseException:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            raise
    if rc != 0:
        raise StepError(step, f"{Path(argv[0]).name} exited {rc} ({log_note(log)})")



def folder_command(module: str, argv: list[str] | None, work,
                   usage: str = "<published folder>", nargs: tuple[int, int | None] = (1, 1)
                   ) -> int:  # fmt: skip
    """A ``python -m <module> <published folder> [...]`` command: ``work(folder, *rest)`` returns
    its exit code (``rest``: the further arguments, as strings; ``nargs``: the fewest and most
    arguments, None: no most); a wrong argument count prints the usage and a missing or
    unreadable file or a bad argument one ``error:`` line (exit 2, no traceback); Ctrl-C is the
    one-line interrupt (exit 130)."""
    from common.entry import interrupted
    from experiments.errors import ExperimentError

    args = sys.argv[1:] if argv is None else argv
    lo, hi = nargs
    if len(args) < lo or (hi is not None and len(args) > hi):
        print(f"usage: python -m {module} {usage}", file=sys.stderr)
        return 2
    try:
        return work(Path(args[0]), *args[1:])
    except (ExperimentError, StepError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
