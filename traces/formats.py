"""Public trace file formats: read any of them into contract 1, write our own.

Formats (``fmt`` names):

=============  ===========================================================  ==========
name           columns (source -> contract)                                 arrival
=============  ===========================================================  ==========
``splitbench`` request_id, arrival_s, prompt_tokens, output_tokens (.csv     seconds
               or .parquet; what :func:`save` writes)
``azure``      TIMESTAMP, ContextTokens, GeneratedTokens (Azure LLM          timestamp
               inference traces 2023; ids are 0..n-1 in file order)          strings
``splitwise``  request_id, arrival_timestamp, prompt_size, token_size        seconds
               (splitwise-sim trace CSV; other columns ignored)
``vidur``      arrived_at, num_prefill_tokens, num_decode_tokens (Vidur      seconds
               trace CSV; ids 0..n-1)
``mooncake``   timestamp, input_length, output_length (Mooncake JSONL; ids   milliseconds
               0..n-1); optional ``hash_ids`` -> ``block_hashes`` (512-token
               blocks, ``attrs["block_tokens"] = 512``)
``generic``    any table with a ``mapping`` {contract column: source          ``time_unit``
               column} and a ``time_unit``
=============  ===========================================================  ==========

Files are read by extension: ``.parquet`` (pyarrow), ``.jsonl``/``.json`` (one JSON
object per line), anything else as CSV. With ``fmt=None`` the format is detected from the
columns (a ``mapping`` implies ``generic``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.atomic import atomic_path, write_parquet_atomic
from traces.errors import TraceError
from traces.schema import (
    BLOCK_HASHES,
    BLOCK_TOKENS,
    COLUMNS,
    DATETIME,
    IDENTITY,
    ColumnMap,
    build_table,
    check_table,
)

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per block of Mooncake's ``hash_ids`` (FAST25-release/README.md)."""
PARQUET_BLOCK_TOKENS = "splitbench.block_tokens"
"""Parquet schema-metadata key of the block size that :func:`save` writes with block_hashes."""


@dataclass(frozen=True)
class TraceFormat:
    """A named file format: its column map (source columns and arrival unit)."""

    name: str
    cmap: ColumnMap
    description: str


FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat("splitbench", IDENTITY, "splitbench trace table (CSV or Parquet)"),
        TraceFormat(
            "azure",
            ColumnMap(
                {
                    "arrival_s": "TIMESTAMP",
                    "prompt_tokens": "ContextTokens",
                    "output_tokens": "GeneratedTokens",
                },
                DATETIME,
            ),
            "Azure LLM inference trace 2023 CSV",
        ),
        TraceFormat(
            "splitwise",
            ColumnMap(
                {
                    "request_id": "request_id",
                    "arrival_s": "arrival_timestamp",
                    "prompt_tokens": "prompt_size",
                    "output_tokens": "token_size",
                },
                "s",
            ),
            "splitwise-sim trace CSV",
        ),
        TraceFormat(
            "vidur",
            ColumnMap(
                {
                    "arrival_s": "arrived_at",
                    "prompt_tokens": "num_prefill_tokens",
                    "output_tokens": "num_decode_tokens",
                },
                "s",
            ),
            "Vidur trace CSV",
        ),
        TraceFormat(
            "mooncake",
            ColumnMap(
                {
                    "arrival_s": "timestamp",
                    "prompt_tokens": "input_length",
                    "output_tokens": "output_length",
                    BLOCK_HASHES: "hash_ids",
                },
                "ms",
                optional=(BLOCK_HASHES,),
                block_tokens=MOONCAKE_BLOCK_TOKENS,
            ),
            "Mooncake trace JSONL",
        ),
    )
}
GENERIC = "generic"
FORMAT_NAMES: tuple[str, ...] = (*FORMATS, GENERIC)

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                if not records:  # the first line: most likely not a JSONL file at all
                    raise TraceError(_not_jsonl(path, text)) from None
                raise TraceError(
                    f"{path}: data row {len(records) + 1}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(rec, dict):
                raise TraceError(
                    f"{path}: data row {len(records) + 1}: expected a JSON object, "
                    f"got {type(rec).__name__}"
                )
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _not_jsonl(path: Path, first: str) -> str:
    """Why a file whose first line is not JSON is not a Mooncake (JSONL) trace, in one line."""
    what = "not Mooncake JSONL (one JSON object per line)"
    if "," in first and not first.lstrip().startswith(("{", "[")):
        head = first if len(first) <= 60 else first[:57] + "..."
        return (
            f"{path}: {what}: its first line looks like a CSV header ({head!r}); "
            "read it as CSV (leave out --format mooncake, or name its format)"
        )
    return f"{path}: {what}: line 1 is not JSON"


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    df = pd.read_parquet(path)
    block = (pq.read_schema(path).metadata or {}).get(PARQUET_BLOCK_TOKENS.encode())
    if block is not None:
        try:
            df.attrs[BLOCK_TOKENS] = int(block)
        except ValueError:
            raise TraceError(f"{path}: bad {PARQUET_BLOCK_TOKENS} metadata {block!r}") from None
    return df


def read_raw(path: str | os.PathLike, *, jsonl: bool | None = None) -> pd.DataFrame:
    """Read a trace file as-is (source columns; CSV cells as strings).

    Args:
        path: the file. ``.parquet`` is read with pyarrow, ``.jsonl``/``.json``/``.ndjson``
            as one JSON object per line, anything else as CSV with a header line.
        jsonl: force (True) or forbid (False) JSONL parsing regardless of the extension.
    """
    p = Path(path)
    if p.is_dir():
        raise TraceError(f"{p}: is a directory, not a trace file")
    if not p.is_file():
        raise TraceError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise TraceError(f"{p}: empty file")
    suffix = p.suffix.lower()
    try:
        if jsonl or (jsonl is None and suffix in JSONL_SUFFIXES):
            return _read_jsonl(p)
        if suffix in PARQUET_SUFFIXES:
            return _read_parquet(p)
        return pd.read_csv(p, dtype=str, skipinitialspace=True)
    except TraceError:
        raise
    except pd.errors.EmptyDataError:
        raise TraceError(f"{p}: empty file") from None
    except pd.errors.ParserError as exc:
        found = _FIELDS.search(str(exc))
        if found:  # pandas counts file lines (header = line 1); we count data rows
            want, line, saw = (int(g) for g in found.groups())
            raise TraceError(
                f"{p}: data row {line - 1}: expected {want} fields (the header's), saw {saw}"
            ) from None
        raise TraceError(f"{p}: cannot read CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{p}: not a text file ({exc.reason})") from None
    except Exception as exc:  # pandas/pyarrow parse errors: report them in one line
        raise TraceError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from None


def _required_sources(cmap: ColumnMap) -> list[str]:
    return [src for tgt, src in cmap.columns.items() if tgt not in cmap.optional]


def detect_format(columns, source: str = "<table>") -> str:
    """Name of the format whose source columns are all present in ``columns``."""
    have = {str(c) for c in columns}
    for fmt in FORMATS.values():
        if set(_required_sources(fmt.cmap)) <= have:
            return fmt.name
    best = max(FORMATS.values(), key=lambda f: len(set(_required_sources(f.cmap)) & have))
    want = _required_sources(best.cmap)
    if set(want) & have:  # one format nearly matches: name the column(s) it lacks
        missing = [c for c in want if c not in have]
        raise TraceError(
            f"{source}: missing column(s) {missing} of the {best.name} format "
            f"(found columns {sorted(have)})"
        )
    known = "; ".join(f"{f.name}: {', '.join(_required_sources(f.cmap))}" for f in FORMATS.values())
    raise TraceError(
        f"{source}: cannot detect the trace format from columns {sorted(have)} "
        f"(known formats: {known}; or pass fmt='generic' with a column mapping)"
    )


def resolve_cmap(
    fmt: str | None, mapping: Mapping[str, str] | None, time_unit: str
) -> tuple[str | None, ColumnMap | None]:
    """Check ``fmt``/``mapping``/``time_unit`` and return (format name, column map).

    Returns ``(None, None)`` when the format is to be detected from the columns.
    """
    if fmt is not None and fmt not in FORMAT_NAMES:
        raise TraceError(f"unknown trace format {fmt!r}; known formats: {list(FORMAT_NAMES)}")
    if mapping is not None or fmt == GENERIC:
        if fmt not in (None, GENERIC):
            raise TraceError(f"a column mapping goes with fmt='generic', not fmt={fmt!r}")
        if not mapping:
            raise TraceError(
                "fmt='generic' needs a column mapping, e.g. "
                "{'arrival_s': 'ts', 'prompt_tokens': 'in', 'output_tokens': 'out'}"
            )
        return GENERIC, ColumnMap(dict(mapping), time_unit)
    if time_unit != "s":
        raise TraceError("time_unit applies to fmt='generic' (with a column mapping) only")
    if fmt is None:
        return None, None
    return fmt, FORMATS[fmt].cmap


def read_trace(
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    sort: bool = False,
    mapping: Mapping[str, str] | None = None,
    time_unit: str = "s",
    source: str | None = None,
) -> pd.DataFrame:
    """Read a trace file of any known format into a contract-1 table.

    Args:
        path: trace file.
        fmt: one of :data:`FORMAT_NAMES`, or None to detect it from the columns.
        sort: sort by arrival (stable) instead of rejecting out-of-order arrivals.
        mapping: for ``generic``: {contract column: source column}; ``request_id`` optional.
        time_unit: for ``generic``: unit of the arrival column (``s``, ``ms``, ``us``, or
            ``datetime`` for timestamp strings, re-zeroed on the earliest request).
        source: label for error messages (default: the path).
    """
    name, cmap = resolve_cmap(fmt, mapping, time_unit)
    raw = read_raw(path, jsonl=True if name == "mooncake" else None)
    label = source or str(path)
    if cmap is None:
        cmap = FORMATS[detect_format(raw.columns, label)].cmap
    return build_table(raw, source=label, cmap=cmap, sort=sort)


def save(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a contract-1 table as ``.csv`` or ``.parquet`` (by extension), atomically.

    The table is validated first (contract columns only are written; a CSV float is written
    with the shortest repr that reads back exactly). Parent folders are created. The file is
    written to a temporary name in the same folder and then moved over ``path``. Parquet
    keeps ``block_hashes`` (and its block size, as schema metadata); CSV does not.

    Returns:
        The path written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", *PARQUET_SUFFIXES):
        raise TraceError(f"{p}: unsupported output extension {p.suffix!r}; use .csv or .parquet")
    table = check_table(df)
    if suffix != ".csv":
        if BLOCK_HASHES not in table.columns:
            return write_parquet_atomic(table[list(COLUMNS)], p)
        block = table.attrs.get(BLOCK_TOKENS)
        meta = {PARQUET_BLOCK_TOKENS: str(block)} if block else None
        return write_parquet_atomic(table[[*COLUMNS, BLOCK_HASHES]], p, metadata=meta)
    with atomic_path(p) as tmp:
        table.to_csv(tmp, index=False, columns=list(COLUMNS), lineterminator="\n")
    return p
