"""Contract 1 (the trace table) and the one place that checks it.

A trace table is a pandas DataFrame, one row per request, sorted by arrival, with columns
``request_id`` (int64, unique), ``arrival_s`` (float64 seconds from trace start,
non-decreasing, finite, >= 0), ``prompt_tokens`` (int64 >= 1), ``output_tokens``
(int64 >= 1), and a fresh RangeIndex.

Optional column ``block_hashes`` (object dtype: one tuple of ints per request): the ids of
the prompt's KV blocks in order (Mooncake's ``hash_ids``; equal ids = a reusable prefix
block). An id names its whole prefix: equal ids sit at equal positions after equal
predecessors (the replay's prefix cache relies on it and stops with the request named where a
trace breaks it). The block size in tokens is stated with the trace, in ``df.attrs["block_tokens"]``
(:data:`BLOCK_TOKENS`); where it is known a request has at most ``ceil(prompt_tokens /
block_tokens)`` blocks. A table has the column for every request or not at all.

:func:`build_table` turns a raw table (source columns, strings or numbers) into a
contract table, raising :class:`~traces.errors.TraceError` at the first bad cell with the
file, data row (1-based, header not counted) and column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from common.units import MS_PER_S, US_PER_S
from traces.errors import TraceError

COLUMNS: tuple[str, ...] = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
"""Contract 1 columns, in order."""

BLOCK_HASHES = "block_hashes"
"""Optional contract-1 column: the prompt's prefix-block ids (tuple of ints per request)."""
OPTIONAL_COLUMNS: tuple[str, ...] = (BLOCK_HASHES,)
BLOCK_TOKENS = "block_tokens"
"""Key of ``df.attrs`` holding the block size (tokens) of ``block_hashes``."""
_INT64 = (-(2**63), 2**63 - 1)

DTYPES: dict[str, str] = {
    "request_id": "int64",
    "arrival_s": "float64",
    "prompt_tokens": "int64",
    "output_tokens": "int64",
}

TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": MS_PER_S, "us": US_PER_S}
"""Numeric time units a source may use: divisor to get seconds. ``"datetime"`` (timestamp
strings, re-zeroed on the earliest request) is accepted as well."""

DATETIME = "datetime"

MAX_INT = float(2**53)
"""Largest integer a token count or request id may hold (exact in float64; no int64 overflow)."""


@dataclass(frozen=True)
class ColumnMap:
    """Where the contract columns come from in a source table.

    ``columns`` maps contract column -> source column for ``arrival_s``, ``prompt_tokens``,
    ``output_tokens`` and optionally ``request_id`` (absent: requests are numbered 0..n-1 in
    file order). ``time_unit`` is the unit of the arrival column: ``"s"``, ``"ms"``,
    ``"us"``, or ``"datetime"`` (timestamp strings; arrivals become seconds after the
    earliest request). ``block_hashes`` may be mapped too; ``optional`` names the targets
    whose source column may be absent from a file, and ``block_tokens`` the block size of
    the hashes (None: unknown, or taken from the raw table's ``attrs``).
    """

    columns: Mapping[str, str]
    time_unit: str = "s"
    required: tuple[str, ...] = field(default=("arrival_s", "prompt_tokens", "output_tokens"))
    optional: tuple[str, ...] = ()
    block_tokens: int | None = None

    def __post_init__(self) -> None:
        targets = [*COLUMNS, *OPTIONAL_COLUMNS]
        unknown = sorted(set(self.columns) - set(targets))
        if unknown:
            raise TraceError(
                f"column mapping: unknown target column(s) {unknown}; targets are {targets}"
            )
        if self.block_tokens is not None and (
            isinstance(self.block_tokens, bool)
            or not isinstance(self.block_tokens, int)
            or self.block_tokens < 1
        ):
            raise TraceError(f"block_tokens must be a positive integer, got {self.block_tokens!r}")
        missing = [c for c in self.required if c not in self.columns]
        if missing:
            raise TraceError(f"column mapping: no source column given for {missing}")
        if self.time_unit != DATETIME and self.time_unit not in TIME_UNITS:
            raise TraceError(
                f"unknown time unit {self.time_unit!r}; use one of {[*TIME_UNITS, DATETIME]}"
            )


IDENTITY = ColumnMap({c: c for c in (*COLUMNS, *OPTIONAL_COLUMNS)}, "s", optional=OPTIONAL_COLUMNS)
"""Our own table: contract columns (``block_hashes`` if present), arrivals in seconds."""


def _label(src: str, role: str) -> str:
    return f"column '{src}'" if src == role else f"column '{src}' ({role})"


def _show(value: object) -> str:
    if isinstance(value, np.generic):  # np.float64(10.5) -> 10.5
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(source: str, row: int, src: str, role: str, what: str) -> TraceError:
    return TraceError(f"{source}: data row {row + 1}, {_label(src, role)}: {what}")


def _numeric(raw: pd.Series, source: str, src: str, role: str) -> np.ndarray:
    """Float values of a source column; first missing/non-numeric/non-finite cell raises."""
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = raw.iloc[i]
        if cell is None or (isinstance(cell, float) and np.isnan(cell)) or cell is pd.NA:
            what = "missing value"
        elif np.isinf(values[i]):
            what = f"infinite value {_show(cell)}"
        else:
            what = f"non-numeric value {_show(cell)}"
        raise _fail(source, i, src, role, what)
    return values


def _integers(raw: pd.Series, source: str, src: str, role: str, minimum: int | None) -> np.ndarray:
    values = _numeric(raw, source, src, role)
    big = np.abs(values) > MAX_INT
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise _fail(
            source, i, src, role, f"too large: {_show(raw.iloc[i])} (at most {MAX_INT:.0f})"
        )
    frac = values != np.floor(values)
    if frac.any():
        i = int(np.flatnonzero(frac)[0])
        raise _fail(source, i, src, role, f"not an integer: {_show(raw.iloc[i])}")
    if minimum is not None:
        low = values < minimum
        if low.any():
            i = int(np.flatnonzero(low)[0])
            raise _fail(source, i, src, role, f"must be >= {minimum}, got {values[i]:g}")
    return values.astype("int64")


def _block_tokens(raw: pd.DataFrame, cmap: ColumnMap, source: str) -> int | None:
    value = cmap.block_tokens if cmap.block_tokens is not None else raw.attrs.get(BLOCK_TOKENS)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise TraceError(
            f"{source}: attrs['{BLOCK_TOKENS}'] must be a positive integer, got {value!r}"
        )
    return int(value)


def _hash_list(cell: object) -> tuple[int, ...] | str:
    """The cell as a tuple of ints, or a description of what is wrong with it."""
    if isinstance(cell, tuple | list):
        items = cell
    elif isinstance(cell, np.ndarray) and cell.ndim == 1:
        items = cell.tolist()
    elif cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)):
        return "missing value (give block hashes for every request or for none)"
    else:
        return f"expected a list of integers, got {type(cell).__name__} {_show(cell)}"
    plain = type(items) is tuple
    for x in items:
        if type(x) is not int:
            if isinstance(x, bool) or not isinstance(x, np.integer):
                return f"expected a list of integers, found {type(x).__name__} {_show(x)}"
            plain = False
        if not _INT64[0] <= x <= _INT64[1]:
            return f"block hash {x} does not fit in 64 bits"
    return items if plain else tuple(int(x) for x in items)


def _block_hashes(
    raw: pd.Series, source: str, src: str, prompt: np.ndarray, block_tokens: int | None
) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for i, cell in enumerate(raw.tolist()):
        hashes = _hash_list(cell)
        if isinstance(hashes, str):
            raise _fail(source, i, src, BLOCK_HASHES, hashes)
        if block_tokens is not None:
            most = -(-int(prompt[i]) // block_tokens)
            if len(hashes) > most:
                raise _fail(
                    source,
                    i,
                    src,
                    BLOCK_HASHES,
                    f"{len(hashes)} blocks of {block_tokens} tokens for a {prompt[i]}-token "
                    f"prompt (at most {most})",
                )
        out.append(hashes)
    return out


def _object_column(values: list) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are (tuples stay tuples)."""
    column = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        column[i] = v
    return column


def _arrivals(raw: pd.Series, source: str, src: str, time_unit: str) -> np.ndarray:
    if time_unit == DATETIME:
        stamps = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
        bad = stamps.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = raw.iloc[i]
            what = "missing value" if pd.isna(cell) else f"cannot parse timestamp {_show(cell)}"
            raise _fail(source, i, src, "arrival_s", what)
        return ((stamps - stamps.min()) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")
    values = _numeric(raw, source, src, "arrival_s") / TIME_UNITS[time_unit]
    neg = values < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise _fail(source, i, src, "arrival_s", f"negative arrival time {_show(raw.iloc[i])}")
    return values


def build_table(
    raw: pd.DataFrame, *, source: str, cmap: ColumnMap = IDENTITY, sort: bool = False
) -> pd.DataFrame:
    """Check a raw table and return the contract-1 table.

    Args:
        raw: source table (any dtypes; strings are parsed). Row positions give row numbers.
        source: file path or trace name, used in error messages.
        cmap: where each contract column comes from, and the arrival time unit.
        sort: sort rows by arrival (stable) instead of rejecting out-of-order arrivals.
            Request ids are kept as they are (they must be unique either way).

    Raises:
        TraceError: empty table, missing column, missing/non-numeric/non-finite value,
            non-integer or < 1 token count, negative arrival, duplicate request id, or (with
            ``sort=False``) an arrival earlier than the one before it.
    """
    if len(raw) == 0:
        raise TraceError(f"{source}: empty trace (no data rows)")
    missing = [
        src
        for tgt, src in cmap.columns.items()
        if src not in raw.columns and tgt not in cmap.optional
    ]
    if missing:
        found = [str(c) for c in raw.columns]
        raise TraceError(f"{source}: missing column(s) {missing}; found columns {found}")
    col = cmap.columns
    arrival = _arrivals(raw[col["arrival_s"]], source, col["arrival_s"], cmap.time_unit)
    prompt = _integers(raw[col["prompt_tokens"]], source, col["prompt_tokens"], "prompt_tokens", 1)
    output = _integers(raw[col["output_tokens"]], source, col["output_tokens"], "output_tokens", 1)
    if "request_id" in col:
        ids = _integers(raw[col["request_id"]], source, col["request_id"], "request_id", None)
        dup = pd.Series(ids).duplicated(keep="first").to_numpy()
        if dup.any():
            j = int(np.flatnonzero(dup)[0])
            first = int(np.flatnonzero(ids == ids[j])[0])
            raise _fail(
                source,
                j,
                col["request_id"],
                "request_id",
                f"duplicate request id {ids[j]} (first at data row {first + 1})",
            )
    else:
        ids = np.arange(len(raw), dtype="int64")
    hashes = None
    block_tokens = None
    hsrc = col.get(BLOCK_HASHES)
    if hsrc is not None and hsrc in raw.columns:
        block_tokens = _block_tokens(raw, cmap, source)
        hashes = _block_hashes(raw[hsrc], source, hsrc, prompt, block_tokens)
    back = np.flatnonzero(np.diff(arrival) < 0)
    if back.size:
        if not sort:
            j = int(back[0]) + 1
            raise _fail(
                source,
                j,
                col["arrival_s"],
                "arrival_s",
                f"arrival {arrival[j]:.9g} s is earlier than data row {j} ({arrival[j - 1]:.9g} s); "
                "arrivals must be non-decreasing (load with sort=True / --sort to sort them)",
            )
        order = np.argsort(arrival, kind="stable")
        ids, arrival, prompt, output = ids[order], arrival[order], prompt[order], output[order]
        if hashes is not None:
            hashes = [hashes[k] for k in order]
    out = pd.DataFrame(
        {"request_id": ids, "arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output}
    )
    if hashes is not None:
        out[BLOCK_HASHES] = _object_column(hashes)
        if block_tokens is not None:
            out.attrs[BLOCK_TOKENS] = block_tokens
    return out


def check_table(df: pd.DataFrame, source: str = "<DataFrame>") -> pd.DataFrame:
    """Validate an in-memory contract-1 table; return a clean copy.

    The copy has the contract columns, plus ``block_hashes`` (and ``attrs["block_tokens"]``)
    where the input has them; other columns are dropped.
    """
    if not isinstance(df, pd.DataFrame):
        raise TraceError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    return build_table(df, source=source, cmap=IDENTITY, sort=False)
