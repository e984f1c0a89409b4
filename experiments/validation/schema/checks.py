"""The checks every config section uses: each failure one
:class:`~experiments.errors.ExperimentError` line that starts with the dotted key
(``loads[2].prompt_scale: must be > 0, got -1``); and core lists (``"0-1"``, ``"0,2"``)."""

from __future__ import annotations

import os
import re

from experiments.errors import ExperimentError

#: the designs a run may list (each section names them)
DESIGNS = ("baseline", "baseline2", "splitwise")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ExperimentError(f"{key}: {msg}")


def number(v, key: str, integer: bool = False) -> None:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    need(ok and not isinstance(v, bool), key,
         f"must be {'an integer' if integer else 'a number'}, got {v!r}")  # fmt: skip


def pos(v: float | None, key: str, *, null: bool = False) -> None:
    if v is None:
        need(null, key, "must be set")
        return
    number(v, key)
    need(v > 0, key, f"must be > 0, got {v:g}")


def at_least(v: int | None, lo: int, key: str, *, null: bool = False) -> None:
    if v is None:
        need(null, key, "must be set")
        return
    number(v, key, integer=True)
    need(v >= lo, key, f"must be >= {lo}, got {v}")


def parse_cpus(spec: str | int | list[int] | None) -> list[int] | None:
    """``"0"``, ``"0-1"``, ``"0,2"``, ``1`` or ``[0, 1]`` -> sorted core ids; None/"" -> None.

    ValueError on anything else (``"abc"``, ``"3-1"``, a negative id)."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, bool):
        raise ValueError(f"bad core list {spec!r}")
    if isinstance(spec, int):
        spec = [spec]
    if not isinstance(spec, str):
        cores = {int(c) for c in spec}
    else:
        cores = set()
        for part in spec.split(","):
            part = part.strip()
            if not re.fullmatch(r"\d+(-\d+)?", part):
                raise ValueError(f"bad core list {spec!r}")
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
            if b < a:
                raise ValueError(f"bad core range '{part}'")
            cores.update(range(a, b + 1))
    if not cores or min(cores) < 0:
        raise ValueError(f"bad core list {spec!r}")
    return sorted(cores)


def check_cpus(spec: str | None, key: str, *, null: bool = True) -> list[int] | None:
    """The cores of ``spec``; ExperimentError unless each is one this process may run on."""
    try:
        cores = parse_cpus(spec)
    except ValueError as e:
        raise ExperimentError(f"{key}: {e}") from None
    if cores is None:
        need(null, key, 'must name cores (e.g. "0" or "0-1")')
        return None
    have = sorted(os.sched_getaffinity(0))
    bad = [c for c in cores if c not in have]
    need(not bad, key, f"core(s) {', '.join(map(str, bad))} do not exist here (usable: "
         f"{','.join(map(str, have))})")  # fmt: skip
    return cores
