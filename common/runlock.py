"""A lock file that names the run holding it (torch-free leaf module).

Two runs that would write the same output folder at once (two studies of one ``study.name``)
must not both go on: the second sees the first's lock and stops with one line naming it. The
lock is a small JSON file (``pid``, ``host``, ``started``, ``command``), made whole and then
linked into place, so a reader never sees half of one. A lock left by a process that is gone
(same host, no such pid: a crash, a kill -9) is taken over; a lock from another host is
believed (its process cannot be checked from here).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


def holder_info() -> dict:
    """What a lock records of this process."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
    }


def describe(holder: dict) -> str:
    """``pid 123 on host h since 2026-01-01T00:00:00Z``."""
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"since {holder.get('started', '?')}"
    )


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: cannot be checked, so believed
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False  # this process holds no lock it is asking for
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(path: str | os.PathLike, info: dict | None = None) -> dict | None:
    """Take the lock at ``path`` for this process. Returns None when taken, else the record of
    the live run that holds it (a stale lock, from a process that is gone, is taken over)."""
    path = Path(path)
    info = info or holder_info()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # named by the lock, not by its temporary file
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    try:
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(info, f, sort_keys=True)
                f.write("\n")
        except OSError as e:  # a full disk: named by the lock
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        for _ in range(10):
            try:
                os.link(tmp, path)  # fails if the lock exists: one winner
                return None
            except FileExistsError:
                pass
            holder = _read(path)
            if holder is None and _young(path):
                holder = {"pid": "?", "host": "?", "started": "just now (being written)"}
            if holder is not None and _alive(holder):
                return holder
            stale = path.with_name(f"{path.name}.stale.{os.getpid()}")
            try:  # one process moves a stale lock away; the others retry the link
                os.replace(path, stale)
            except FileNotFoundError:
                continue
            if _read(stale) != holder:  # another process's fresh lock moved meanwhile: back
                try:
                    os.link(stale, path)
                except FileExistsError:
                    pass
            stale.unlink(missing_ok=True)
        return _read(path) or {"pid": "?", "host": "?", "started": "?"}
    finally:
        Path(tmp).unlink(missing_ok=True)


def _young(path: Path, seconds: float = 5.0) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def release(path: str | os.PathLike, info: dict) -> None:
    """Remove the lock at ``path`` if it is still this run's (``info``, as acquired)."""
    path = Path(path)
    held = _read(path)
    if held is not None and all(held.get(k) == info.get(k) for k in ("pid", "host", "started")):
        path.unlink(missing_ok=True)
