"""The report's inputs: study folders (``study.json`` + the study's CSV tables, from
``splitbench-study``) and run folders (``summary.json`` + ``requests.parquet``, from
``splitbench-replay``). The report reads results only from these (the study's tables, the run's
summary); what it computes itself is only what no summary holds (a run's full latency CDFs).

Every reader turns a bad file into one :class:`ExperimentError` line naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import ExperimentError
from experiments.report.labels import label_studies, study_overrides
from experiments.study.tables import (
    COLUMN_KINDS,
    LATENCY_TABLE,
    OPTIONAL_TABLES,
    TABLE_COLUMNS,
    TABLES,
)

#: sections of study.json the report reads (written by splitbench-study)
STUDY_KEYS = ("study", "model", "profiles", "slo")
#: the study's tables, in the order they are read: every study's, then the optional ones (read
#: when present, empty otherwise); their columns and kinds are the study-table contract's
#: (:mod:`experiments.study.tables`)
READ_ORDER = (*TABLES, LATENCY_TABLE, *OPTIONAL_TABLES)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot read JSON ({e})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ExperimentError(f"{path}: cannot read Parquet ({e})".splitlines()[0]) from None


def read_csv(path: Path) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot read CSV ({e})".splitlines()[0]) from None


def input_folders(given: Sequence[str], study_dir: Path, root: Path) -> list[str]:
    """The folders a report reads: ``given`` (relative ones under ``root``), or with none given
    every study folder under ``study_dir``."""
    inputs = list(given)
    if not inputs:
        inputs = sorted(str(p) for p in study_dir.glob("*") if (p / "study.json").exists())
        if not inputs:
            raise ExperimentError(f"inputs: none given and no study under {study_dir}")
    return [str(p if Path(p).is_absolute() else root / p) for p in inputs]


def load_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """(studies, runs) from folders; a folder holding several studies/runs is walked."""
    studies, runs = [], []
    for raw in inputs:
        d = Path(raw)
        if not d.exists():
            raise ExperimentError(f"inputs: no such folder '{raw}'")
        if not d.is_dir():
            raise ExperimentError(f"inputs: '{raw}' is a file, not a study or run folder")
        found = False
        for sj in sorted(d.rglob("study.json")):
            found = True
            studies.append(_load_study(sj))
        for sj in sorted(d.rglob("summary.json")):
            r = sj.parent
            if not (r / "requests.parquet").exists():
                continue
            found = True
            runs.append(_load_run(r))
        if not found:
            raise ExperimentError(
                f"inputs: '{raw}' holds no study.json or summary.json + requests.parquet"
            )
    label_studies(studies)
    return studies, runs


def _load_study(sj: Path) -> dict:
    s = sj.parent
    meta = read_json(sj)
    missing = [k for k in STUDY_KEYS if not isinstance(meta.get(k), dict)]
    if missing:
        raise ExperimentError(f"{sj}: not a splitbench study (no '{missing[0]}' section)")
    if not meta["study"].get("name"):
        raise ExperimentError(f"{sj}: not a splitbench study (no study.name)")
    names = READ_ORDER
    record = meta.get("tables")
    if record is not None and not isinstance(record, dict):
        raise ExperimentError(f"{sj}: 'tables' is not an object")
    # a study that records its tables is read by that record: a table it did not write (an
    # earlier study's of the same name) is not its own
    own = [k for k in names if record is None or k in record]
    for k in own:
        _check_whole(s / f"{k}.csv")
    tables = {k: read_csv(s / f"{k}.csv") if k in own else pd.DataFrame() for k in names}
    for k, need in TABLE_COLUMNS.items():
        t = tables[k]
        lack = [c for c in need if not t.empty and c not in t.columns]
        if lack:
            raise ExperimentError(f"{s / (k + '.csv')}: missing column '{lack[0]}'")
    check_tables(sj, meta, tables)
    config = (s / "config.yaml").read_text() if (s / "config.yaml").exists() else ""
    return {
        "dir": s,
        "meta": meta,
        **tables,
        "config": config,
        "overrides": study_overrides(s, meta),
    }


def check_tables(sj: Path, meta: dict, tables: dict[str, pd.DataFrame]) -> None:
    """Check the study's tables against its own record (``study.json``'s ``tables``: each
    table's row count and column kinds, written with them by splitbench-study): a truncated,
    emptied or edited table is one ExperimentError naming the file, and the row and column of a
    bad cell. A study from before that record is checked by its point count
    (``simulations.points``, which also counts the heatmap's simulated cells) and the kinds of
    the columns the report reads (:data:`COLUMN_KINDS`)."""
    s = sj.parent
    record = meta.get("tables")
    for k, t in tables.items():
        path = s / f"{k}.csv"
        rec = (record or {}).get(k)
        if record is not None and rec is None:
            continue  # not the study's (splitbench-study records every table it writes)
        if rec is not None and not (
            isinstance(rec, dict)
            and isinstance(rec.get("rows"), int)
            and isinstance(rec.get("columns", {}), dict)
        ):
            raise ExperimentError(f"{sj}: tables.{k}: expected {{'rows': N, 'columns': {{...}}}}")
        want = rec["rows"] if rec is not None else _legacy_rows(k, meta, tables)
        if want is not None and len(t) != want:
            what = "study.json records" if rec is not None else "study.json's point count says"
            raise ExperimentError(
                f"{path}: {len(t)} data rows, {what} {want} (a truncated or edited table)"
            )
        kinds = rec.get("columns", {}) if rec is not None else COLUMN_KINDS
        for col, kind in kinds.items():
            if col in t.columns:
                _check_column(path, t[col], kind)
            elif rec is not None and len(t):
                raise ExperimentError(f"{path}: missing column '{col}'")


def _check_whole(path: Path) -> None:
    """A study table ends with a line end (splitbench-study writes whole lines): one that does
    not was cut short."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ExperimentError(f"{path}: cannot read CSV ({e.strerror or e})") from None
    if last != b"\n":
        raise ExperimentError(f"{path}: ends inside a row (a truncated file)")


def _legacy_rows(name: str, meta: dict, tables: dict[str, pd.DataFrame]) -> int | None:
    """points.csv's row count from a study.json without a ``tables`` record: every point looked
    at, less the heatmap's simulated cells (splitbench-study's ``simulations.points``)."""
    sims = meta.get("simulations")
    if name != "points" or not isinstance(sims, dict) or not isinstance(sims.get("points"), int):
        return None
    heat = tables.get("heatmap", pd.DataFrame())
    cells = 0
    if "evaluated" in heat.columns:
        cells = int(heat["evaluated"].astype(str).str.lower().eq("true").sum())
    return sims["points"] - cells


def _check_column(path: Path, col: pd.Series, kind: str) -> None:
    """Every non-empty cell of ``col`` is of ``kind`` (``number``, ``bool``; ``text``: any)."""
    is_bool = pd.api.types.is_bool_dtype(col.dtype)
    if kind == "number":
        if pd.api.types.is_numeric_dtype(col.dtype) and not is_bool:
            return
        ok, what = col.map(_is_number), "not a number"
    elif kind == "bool":
        if is_bool:
            return
        ok, what = col.map(_is_bool), "not True or False"
    else:
        return
    bad = ~ok.to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ExperimentError(
            f"{path}: data row {i + 1}, column '{col.name}': {what}: {str(col.iloc[i])!r}"
        )


def _empty(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float | np.floating) and bool(np.isnan(v)))


def _is_number(v) -> bool:
    if _empty(v):
        return True
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | float | np.number):
        return True
    try:
        float(str(v))
    except ValueError:
        return False
    return True


def _is_bool(v) -> bool:
    return _empty(v) or isinstance(v, bool | np.bool_) or str(v) in ("True", "False")


def _load_run(r: Path) -> dict:
    summary = read_json(r / "summary.json")
    if not isinstance(summary.get("requests", {}), dict):
        raise ExperimentError(f"{r / 'summary.json'}: 'requests' is not an object")
    req = read_parquet(r / "requests.parquet")
    lack = [c for c in ("ttft_s", "e2e_s") if c not in req.columns]
    if lack:
        raise ExperimentError(f"{r / 'requests.parquet'}: missing column '{lack[0]}'")
    return {
        "dir": r,
        "summary": summary,
        "requests": req,
        "point": read_json(r / "point.json") if (r / "point.json").exists() else None,
    }


# ---------------------------------------------------------------------------------------------
# a run's latency distributions (the study's definitions: replay.metrics)


def run_tbt(run: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """(values, weights, definition) of a run's TBT: every token gap (token-weighted, as the
    study's) from ``iterations.parquet`` + ``request_gaps.parquet``; a run without them falls back
    to each request's mean gap weighted by its gaps (output tokens - 1), and says so."""
    from replay.metrics import span_gaps

    d = run["dir"]
    it_p, gap_p = d / "iterations.parquet", d / "request_gaps.parquet"
    if it_p.exists() and gap_p.exists():
        it = read_parquet(it_p)
        gaps = read_parquet(gap_p)
        need = ("first_s", "increment_s", "iterations", "batch_size", "first_excluded")
        lack = [c for c in need if c not in it.columns]
        if lack:
            raise ExperimentError(f"{it_p}: missing column '{lack[0]}'")
        if "gap_s" not in gaps.columns:
            raise ExperimentError(f"{gap_p}: missing column 'gap_s'")
        v, w = span_gaps(*(it[c] for c in need))
        g = gaps["gap_s"].to_numpy(dtype=float)
        return np.concatenate([v, g]), np.concatenate([w, np.ones_like(g)]), "token-weighted"
    req = run["requests"]
    if "tbt_mean_s" not in req.columns or "output_tokens" not in req.columns:
        return np.zeros(0), np.zeros(0), "token-weighted"
    done = req["e2e_s"].notna().to_numpy()
    v = req["tbt_mean_s"].to_numpy(dtype=float)[done]
    w = np.maximum(req["output_tokens"].to_numpy(dtype=float)[done] - 1, 0)
    return v, w, "per-request mean, weighted by gaps (no iterations.parquet)"
