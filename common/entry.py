"""The console scripts' entry points: Ctrl-C is one line ``interrupted`` and exit status 130
from the first moment a command runs.

``pyproject.toml``'s ``[project.scripts]`` name the functions here, not the commands' modules:
importing this module imports nothing heavy, so the guard is in place before a command's own
modules (pandas, Hydra, torch) load. The command is found by name (``module:function``) and
imported only then; nothing here depends on another splitbench package at import time.

Two regimes:

- start-up (imports, config registration and composition, argument checks) and whatever runs
  outside a command's work: there is nothing to keep, so Ctrl-C prints ``interrupted`` and the
  process exits at once (``os._exit(130)``). No library gets a KeyboardInterrupt it could turn
  into another error (omegaconf once made one an ``AttributeError``) or a traceback;
- a command's work, inside :func:`interruptible`: Ctrl-C is Python's KeyboardInterrupt again,
  so temporary files are removed (:func:`common.atomic.atomic_path`), finished work is kept and
  the command says its own line (``interrupted: 3 points cached, rerun to resume``), exit 130.

A process started with SIGINT ignored (``nohup``, a background job of a script) keeps ignoring
it. Outside the main thread (where handlers cannot be set) both are no-ops.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130
#: the line printed on stderr when nothing more specific is said
LINE = "interrupted"


def _exit_now(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    for stream in (sys.stdout, sys.stderr):  # what was printed before still comes out
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed pipe or a write cut in half
            pass
    try:
        os.write(2, f"{LINE}\n".encode())
    finally:
        os._exit(EXIT_INTERRUPTED)


def _settable() -> bool:
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )


def startup() -> None:
    """From now on Ctrl-C prints ``interrupted`` and exits with status 130 at once."""
    if _settable():
        signal.signal(signal.SIGINT, _exit_now)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within: Ctrl-C raises KeyboardInterrupt (for the command's cleanup and its own line);
    the handler before is restored on leaving."""
    if not _settable():
        yield
        return
    hit: list[bool] = []

    def _raise(signum, frame):  # noqa: ARG001 - a signal handler's signature
        hit.append(True)
        raise KeyboardInterrupt

    hook = sys.unraisablehook

    def _quiet(u):  # a KeyboardInterrupt Python swallows is not a traceback on stderr
        if not (u.exc_type and issubclass(u.exc_type, KeyboardInterrupt)):
            hook(u)

    before = signal.signal(signal.SIGINT, _raise)
    sys.unraisablehook = _quiet
    try:
        yield
        if hit:  # raised where Python swallows it (a weakref callback, a __del__): the work
            raise KeyboardInterrupt  # went on to its end; the Ctrl-C still ends the command
    finally:
        signal.signal(signal.SIGINT, before)
        sys.unraisablehook = hook


def interrupted(line: str = LINE) -> int:
    """Print the one line on stderr; returns :data:`EXIT_INTERRUPTED` (for ``return``)."""
    print(line, file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def run(target: str) -> int | None:
    """Guard Ctrl-C (:func:`startup`), import ``target`` (``module:function``) and call it;
    its return value is the exit status. A KeyboardInterrupt the command let through is one
    line and status 130."""
    startup()
    try:
        module, _, name = target.partition(":")
        main = getattr(importlib.import_module(module), name)
        return main()
    except KeyboardInterrupt:
        return interrupted()


# one function per console script (pyproject.toml [project.scripts])
def traces() -> int | None:
    return run("traces.cli:main")


def profiles() -> int | None:
    return run("characterize.cli:main")


def characterize() -> int | None:
    return run("experiments.apps.characterize:main")


def replay() -> int | None:
    return run("experiments.apps.replay:main")


def study() -> int | None:
    return run("experiments.apps.study:main")


def report() -> int | None:
    return run("experiments.apps.report:main")


def loadgen() -> int | None:
    return run("experiments.apps.loadgen:main")


def validate() -> int | None:
    return run("experiments.apps.validate:main")


#: console script -> the function above (pyproject.toml must say the same; a test checks)
SCRIPTS = {
    "splitbench-traces": "traces",
    "splitbench-profiles": "profiles",
    "splitbench-characterize": "characterize",
    "splitbench-replay": "replay",
    "splitbench-study": "study",
    "splitbench-report": "report",
    "splitbench-loadgen": "loadgen",
    "splitbench-validate": "validate",
}
