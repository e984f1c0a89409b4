"""Server processes of a deployment: each in its own process group, health-checked, shut down.

- :func:`port_free` / :func:`check_port` / :func:`free_port`: 127.0.0.1 ports only;
- :func:`log_note`: a log file's last line for a one-line error (or that it is empty).
- :class:`ServerProcess`: one server command started in a new session (its own process group:
  vLLM's engine-core and worker children are in it too), output to a log file, parent-death
  signal set so that it is terminated if this process dies without cleaning up. ``stop`` sends
  SIGTERM to the whole group, waits (bounded), then SIGKILL.
- :class:`Supervisor`: the servers of one run, stopped in reverse order on exit, error, Ctrl-C
  and SIGTERM; a watchdog thread notices a server that dies mid-run and interrupts the main
  thread, which then raises :class:`~experiments.validation.errors.StepError` naming the step.

Every wait is bounded in time and every poll loop in count.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from experiments.validation.errors import StepError

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` (a bind test, SO_REUSEADDR as servers use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_port(step: str, name: str, port: int) -> None:
    """StepError when ``port`` is taken (before a server is started on it)."""
    if not 1 <= int(port) <= 65535:
        raise StepError(step, f"{name}: port {port} is out of range 1..65535")
    if not port_free(port):
        raise StepError(step, f"{name}: port {port} on {HOST} is already in use")


def free_port() -> int:
    """A port that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _child_setup(cpus: list[int] | None):
    """preexec_fn: die with the parent (PR_SET_PDEATHSIG) and run on ``cpus``."""

    def setup():
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)

    return setup


def _last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of a log file (for one-line errors), at most ``limit`` chars."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def log_note(path: Path) -> str:
    """``log: <path>: <its last line>``, or ``log: <path> is empty`` (one line for errors)."""
    last = _last_line(path)
    return f"log: {path}: {last}" if last else f"log: {path} is empty"


@dataclass
class ServerProcess:
    """One server: ``argv`` run with ``env`` in its own process group, logging to ``log``.

    ``health_url``: GET it until HTTP 200. ``cpus``: cores the process (and what it starts)
    may run on; vLLM's OpenMP threads are pinned separately (VLLM_CPU_OMP_THREADS_BIND).
    """

    name: str
    argv: list[str]
    log: Path
    health_url: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cpus: list[int] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _logf: object = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, step: str) -> None:
        check_port(step, self.name, self.port)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env}
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_child_setup(self.cpus),  # noqa: PLW1509 - no threads at this point
            )
        except OSError as e:
            self._logf.close()
            raise StepError(step, f"{self.name}: cannot start {self.argv[0]}: {e}") from None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def died_message(self, when: str = "") -> str:
        rc = self.returncode()
        last = _last_line(self.log)
        tail = f"; last log line: {last}" if last else ""
        when = f" {when}" if when else ""
        return f"{self.name} (pid {self.pid}, port {self.port}) exited with code {rc}{when}{tail}"

    def wait_healthy(self, step: str, timeout_s: float, poll_s: float = 0.5) -> float:
        """Poll ``health_url`` until 200; StepError if the process exits or time runs out.

        Returns the seconds it took."""
        t0 = time.monotonic()
        polls = max(1, int(timeout_s / poll_s) + 1)
        for _ in range(polls):
            if self.returncode() is not None:
                where = f"log: {self.log}" if _last_line(self.log) else log_note(self.log)
                raise StepError(step, f"{self.died_message()} ({where})")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2.0) as r:  # noqa: S310
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() - t0 > timeout_s:
                break
            time.sleep(poll_s)
        raise StepError(
            step,
            f"{self.name} (port {self.port}) not healthy after {timeout_s:g} s "
            f"({log_note(self.log)})",
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the process group, then SIGKILL after ``timeout_s``; reaps the leader."""
        p = self.proc
        if p is not None:
            pgid = p.pid  # start_new_session: the leader's pid is the group id
            for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=wait_s)
                if p.poll() is not None and not _group_alive(pgid):
                    break
            # the leader may be gone while children of its group linger: kill the group
            if _group_alive(pgid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                for _ in range(50):
                    if not _group_alive(pgid):
                        break
                    time.sleep(0.1)
        if self._logf is not None:
            with contextlib.suppress(OSError):
                self._logf.close()
            self._logf = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies count as gone: look for a live member
    for pid in _group_members(pgid):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return True
    return False


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="ascii") as f:
                fields_ = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields_[2]) == pgid:
            out.append(int(d))
    return out


class Supervisor:
    """The servers of one run. Use as a context manager: every started server is stopped on
    exit (normal, error, Ctrl-C, SIGTERM). :meth:`watch` starts a watchdog: a server that exits
    by itself interrupts the main thread (KeyboardInterrupt), and :meth:`raise_if_died` turns
    that into a StepError naming ``step``."""

    def __init__(self, poll_s: float = 0.5):
        self.servers: list[ServerProcess] = []
        self.poll_s = poll_s
        self.dead: ServerProcess | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_term = None

    def __enter__(self) -> Supervisor:
        if threading.current_thread() is threading.main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
            self._old_term = None

    def start(self, server: ServerProcess, step: str, health_timeout_s: float) -> float:
        """Start ``server`` and wait until healthy; returns its start-up seconds."""
        self.servers.append(server)
        server.start(step)
        return server.wait_healthy(step, health_timeout_s)

    def watch(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="server-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import _thread

        while not self._stop.wait(self.poll_s):
            for s in self.servers:
                if s.proc is not None and s.returncode() is not None:
                    self.dead = s
                    _thread.interrupt_main()
                    return

    def unwatch(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def check(self, step: str, grace_s: float = 0.0) -> None:
        """StepError if any server has exited. ``grace_s``: after a failed request, wait that
        long for a dying server's exit to show (a dropped connection comes first)."""
        deadline = time.monotonic() + grace_s
        for _ in range(int(grace_s / 0.1) + 1):
            for s in self.servers:
                if s.proc is not None and s.returncode() is not None:
                    self.dead = s
                    break
            if self.dead is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        self.raise_if_died(step)

    def raise_if_died(self, step: str) -> None:
        if self.dead is not None:
            raise StepError(step, self.dead.died_message("mid-run"))

    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid is not None]

    def stop_all(self) -> None:
        self.unwatch()
        for s in reversed(self.servers):
            s.stop()


def _sigterm_to_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")
