"""The compiled core: which build of the engine's hot modules a replay runs.

The engine's hot modules (:data:`CORE_MODULES`: the event loop, routing, both machine policies,
the prefix cache, the KV links, the span solver) are plain Python, and that source is the reference. Where
Cython and a C compiler were there at install, ``setup.py`` also compiles each one from the same
file, with the types its ``.pxd`` beside it declares (C attributes, typed locals, C calls
between the engine's methods). Both builds run the same statements on the same IEEE doubles
(compiled with ``-ffp-contract=off``: no fused multiply-add) and Python's integer semantics, so
they give the same replay byte for byte (tests/test_core.py checks it on every machine policy
and with prefix caching). The compiled one is about 2x faster (``benchmarks/replay_speed.py``
prints which build ran, as ``core``).

The build records the sha256 of each source it compiled (``_core_build.json``). When
``replay`` is imported, :func:`choose` picks one build for all the modules (a compiled module
imports its neighbours' C types, so they go together):

- ``SPLITBENCH_PURE_PYTHON`` set (not ``0``): the source;
- every compiled module there, and every source as it was at the build: the compiled one;
- otherwise the source (never a stale extension: edit a module and the source runs until
  ``make core`` rebuilds).

Where the source is chosen while extensions exist, a finder first on ``sys.meta_path`` loads the
``.py`` files (the import system would otherwise prefer the extensions).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

__all__ = ["CORE_MODULES", "ENV", "choose", "status"]

#: the modules compiled by setup.py (names inside the replay package), in build order
CORE_MODULES = (
    "spans", "kv_transfer", "prefix_cache", "routing", "machine", "vllm_policy", "event_loop",
)
#: set (to anything but 0) to run the Python source even where the compiled core is built
ENV = "SPLITBENCH_PURE_PYTHON"
#: what setup.py writes beside the extensions: {module: sha256 of the source it compiled}
BUILD_RECORD = "_core_build.json"

_HERE = Path(__file__).resolve().parent
_status: dict[str, str] = {}


def source_digest(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _extension(here: Path, mod: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = here / f"{mod}{suffix}"
        if p.exists():
            return p
    return None


def choose(here: Path = _HERE, environ=os.environ) -> tuple[str, str]:
    """(``"compiled"`` or ``"source"``, why) for the package folder ``here``."""
    if environ.get(ENV, "") not in ("", "0"):
        return "source", f"{ENV} is set"
    rec = here / BUILD_RECORD
    if not rec.exists():
        return "source", "not compiled (setup.py found no Cython or no C compiler)"
    try:
        record = json.loads(rec.read_text())
    except (OSError, ValueError) as e:
        return "source", f"{rec.name}: unreadable ({e})"
    for mod in CORE_MODULES:
        if _extension(here, mod) is None:
            return "source", f"replay/{mod}: no compiled module"
        if record.get(mod) != source_digest(here / f"{mod}.py"):
            return "source", f"replay/{mod}.py changed since the build (make core rebuilds it)"
    return "compiled", "compiled from the current source"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads ``replay.<module>`` from its .py file, ahead of a compiled extension beside it."""

    def __init__(self, here: Path):
        self.here = here
        self.names = {f"replay.{m}" for m in CORE_MODULES}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.here / f"{fullname.rpartition('.')[2]}.py"
        )


def install() -> None:
    """Pick the build (once per process; replay/__init__ calls it before the engine loads)."""
    if _status:
        return
    kind, why = choose()
    if kind == "source" and any(_extension(_HERE, m) for m in CORE_MODULES):
        sys.meta_path.insert(0, _SourceFinder(_HERE))
    _status.update(core=kind, why=why)


def status() -> dict[str, str]:
    """{'core': 'compiled' or 'source', 'why': ...}: the build this process runs (read off the
    loaded event loop module where it is loaded)."""
    install()
    out = dict(_status)
    mod = sys.modules.get("replay.event_loop")
    if mod is not None:
        out["core"] = "source" if str(mod.__file__).endswith(".py") else "compiled"
    return out
