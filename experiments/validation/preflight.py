"""The machine under the real runs: is it quiet, and how much did the engines wait for a core?

- :func:`loadavg`: ``/proc/loadavg`` (1, 5, 15 minutes, runnable/total tasks);
- :func:`check_quiet`: refuse a run on a busy machine (``preflight.on_busy=refuse``), or flag it
  (``flag``: the run goes on and every record says so);
- :func:`check_ports`: every port a design needs is free, before anything starts;
- :class:`RunDelay`: each server process group's CPU run-delay (time runnable but waiting for a
  core, ``/proc/<pid>/schedstat``'s second field) over a probe or replay, per process.
"""

from __future__ import annotations

import os
import time

from experiments.errors import ExperimentError
from experiments.validation.config import ValidateConfig
from experiments.validation.procs import HOST, port_free


def loadavg(path: str = "/proc/loadavg") -> dict:
    """{'load1', 'load5', 'load15', 'runnable', 'tasks', 'cores', 't'} (cores: this process's)."""
    with open(path, encoding="ascii") as f:
        parts = f.read().split()
    run, _, tasks = parts[3].partition("/")
    return {"load1": float(parts[0]), "load5": float(parts[1]), "load15": float(parts[2]),
            "runnable": int(run), "tasks": int(tasks), "cores": len(os.sched_getaffinity(0)),
            "t": time.time()}  # fmt: skip


def check_quiet(max_loadavg: float, on_busy: str, when: str, path: str = "/proc/loadavg",
                settle_s: float = 0.0, poll_s: float = 5.0, sleep=None) -> dict:  # fmt: skip
    """The load record; ExperimentError naming ``preflight.max_loadavg`` when the 1-minute load
    is above it after waiting up to ``settle_s`` seconds for it to fall (the previous design's
    servers just stopped: the 1-minute average decays with a one-minute time constant) and
    ``on_busy`` is ``refuse`` (``flag``: ``busy: true`` in the record). ``waited_s``: how long
    it waited."""
    import time

    sleep = sleep or time.sleep
    rec = loadavg(path)
    waited = 0.0
    while rec["load1"] > max_loadavg and waited < settle_s:
        step = min(poll_s, settle_s - waited)
        sleep(step)
        waited += step
        rec = loadavg(path)
    rec["when"] = when
    rec["max_loadavg"] = max_loadavg
    rec["waited_s"] = waited
    rec["busy"] = rec["load1"] > max_loadavg
    if rec["busy"] and on_busy == "refuse":
        raise ExperimentError(
            f"preflight.max_loadavg: the machine is busy {when} (1-minute load "
            f"{rec['load1']:.2f} > {max_loadavg:g} after {waited:.0f} s of "
            "preflight.settle_s); stop other jobs, or set preflight.on_busy=flag to run anyway "
            "(flagged in every record)"
        )
    return rec


def check_ports(c: ValidateConfig) -> None:
    """ExperimentError naming the key of the first port a requested design needs that is taken."""
    d = c.deploy
    need = []
    if "baseline" in c.designs:
        need.append(("deploy.colocated.port", d.colocated.port))
    if "baseline2" in c.designs:
        need += [("deploy.colocated.port", d.colocated.port),
                 ("deploy.colocated2.port", d.colocated2.port), ("deploy.proxy_port", d.proxy_port)]  # fmt: skip
    if "splitwise" in c.designs:
        need += [("deploy.prefill.port", d.prefill.port), ("deploy.decode.port", d.decode.port),
                 ("deploy.proxy_port", d.proxy_port)]  # fmt: skip
    for key, port in need:
        if not port_free(port):
            raise ExperimentError(f"{key}: port {port} on {HOST} is already in use")


def _group_pids(pgid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="ascii", errors="replace") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid:
            out.append(int(d))
    return out


def schedstat(pid: int) -> tuple[float, float, int] | None:
    """(on-CPU s, run-delay s, timeslices) of one process (all its threads); None if gone."""
    run = wait = 0.0
    slices = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                a, b, n = f.read().split()[:3]
        except (OSError, ValueError):
            continue
        run += int(a) / 1e9
        wait += int(b) / 1e9
        slices += int(n)
    return run, wait, slices


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


class RunDelay:
    """Run-delay of every process of some server groups between :meth:`start` and :meth:`stop`.

    ``groups``: name -> process-group id (each server is its group's leader). The record, per
    server: ``run_delay_s`` and ``cpu_s`` summed over its processes, and per process (pid, name,
    the same two); ``wall_s`` of the window. A process that started or ended inside the window
    counts from its first to its last reading."""

    def __init__(self, groups: dict[str, int]):
        self.groups = dict(groups)
        self.t0 = 0.0
        self.before: dict[int, tuple[float, float, int]] = {}

    def _read(self) -> dict[int, tuple[float, float, int]]:
        out = {}
        for pg in self.groups.values():
            for pid in _group_pids(pg):
                s = schedstat(pid)
                if s is not None:
                    out[pid] = s
        return out

    def start(self) -> RunDelay:
        self.t0 = time.monotonic()
        self.before = self._read()
        return self

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        after = self._read()
        out: dict = {"wall_s": wall, "servers": {}}
        for name, pg in self.groups.items():
            procs = []
            for pid in _group_pids(pg):
                if pid not in after:
                    continue
                b = self.before.get(pid, (0.0, 0.0, 0))
                a = after[pid]
                procs.append({"pid": pid, "name": _comm(pid), "cpu_s": a[0] - b[0],
                              "run_delay_s": a[1] - b[1]})  # fmt: skip
            out["servers"][name] = {
                "run_delay_s": sum(p["run_delay_s"] for p in procs),
                "cpu_s": sum(p["cpu_s"] for p in procs),
                "processes": procs,
            }
        return out
