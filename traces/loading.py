"""``traces.load``: one entry point for bundled trace names and trace files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from traces.bundled import BUNDLED, load_bundled
from traces.errors import TraceError
from traces.formats import read_trace, resolve_cmap


def load(
    name_or_path: str | os.PathLike,
    fmt: str | None = None,
    *,
    sort: bool = False,
    mapping: Mapping[str, str] | None = None,
    time_unit: str = "s",
) -> pd.DataFrame:
    """Load a trace as a contract-1 table (request_id, arrival_s, prompt_tokens, output_tokens).

    Args:
        name_or_path: a bundled trace name (``azure-code-2023``, ``azure-conv-2023``,
            ``mooncake-conversation``, ``mooncake-synthetic``) or the path of a trace file.
        fmt: file format (``splitbench``, ``azure``, ``splitwise``, ``vidur``, ``mooncake``,
            ``generic``); None detects it from the columns (and the ``.jsonl`` extension).
        sort: sort rows by arrival (stable; ids kept) instead of raising on out-of-order
            arrivals.
        mapping: ``generic`` format only: {contract column: source column}, e.g.
            ``{"arrival_s": "ts", "prompt_tokens": "in", "output_tokens": "out"}``;
            ``request_id`` is optional (default 0..n-1 in file order).
        time_unit: ``generic`` format only: unit of the arrival column, ``s``, ``ms``,
            ``us`` or ``datetime`` (timestamp strings, re-zeroed on the earliest request).

    Returns:
        A new DataFrame (callers may modify it).

    Raises:
        TraceError: unknown name (the message lists the known names), missing file, or any
            bad content (one line naming file, data row and column).
    """
    key = os.fspath(name_or_path)
    if key in BUNDLED:
        resolve_cmap(fmt, mapping, time_unit)  # still reject nonsense arguments
        if fmt not in (None, BUNDLED[key].fmt):
            raise TraceError(f"{key}: bundled trace is in format {BUNDLED[key].fmt!r}, not {fmt!r}")
        return load_bundled(key)
    path = Path(key)
    if not path.exists() and not path.suffix and os.sep not in key and "/" not in key:
        raise TraceError(
            f"unknown trace name {key!r}; known traces: {', '.join(BUNDLED)} "
            "(or give a path to a trace file)"
        )
    return read_trace(path, fmt, sort=sort, mapping=mapping, time_unit=time_unit)
