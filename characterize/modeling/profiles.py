"""Profile tables (DESIGN.md contract 2): read, validate, write, import the reference data.

A profile table is a long pandas DataFrame, one row per measured point, with the columns
``PROFILE_COLUMNS``. Units: seconds, watts, joules; ``power_w`` and ``energy_j`` are for the
whole TP instance (all its GPUs), per iteration. ``energy_j`` is the energy of one iteration
(``power_w x latency_s``); both are NaN where the power is unknown.

- prefill rows: ``tokens_per_request`` = prompt tokens of each request; ``latency_s`` = one
  prefill iteration of the whole batch (``batch_size`` requests);
- decode rows: ``tokens_per_request`` = context tokens each request already holds;
  ``latency_s`` = one decode step of the whole batch (one new token per request).

Errors are :class:`ProfileError` (a ``ValueError``) with a one-line message naming the file
(or data set), the 1-based data row and the column.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from characterize.modeling.specs import (
    GPUSpec,
    SpecError,
    list_specs,
    load_gpu,
    load_machine,
    load_model,
)
from common.atomic import write_json_atomic, write_text_atomic
from common.units import ms_to_s

PROFILE_COLUMNS = [
    "model",
    "gpu",
    "tp",
    "phase",
    "batch_size",
    "tokens_per_request",
    "latency_s",
    "power_w",
    "energy_j",
    "repeats",
    "latency_std_s",
    "source",
]
#: columns a profile CSV may omit: NaN (power, energy, std) or 1 (repeats) when absent;
#: ``energy_j`` is ``power_w x latency_s`` when only the power is given
OPTIONAL_COLUMNS = ("power_w", "energy_j", "latency_std_s", "repeats")
PROFILE_TABLE_NAME = "profiles.csv"
PHASES = ("prefill", "decode")
KEY_COLUMNS = ["model", "gpu", "tp", "phase", "batch_size", "tokens_per_request"]
_INT_COLUMNS = ["tp", "batch_size", "tokens_per_request", "repeats"]
_FLOAT_COLUMNS = ["latency_s", "power_w", "energy_j", "latency_std_s"]
_STR_COLUMNS = ["model", "gpu", "phase", "source"]

DATA_ROOT = Path(__file__).resolve().parent / "data"
REFERENCE_DIR = DATA_ROOT / "reference"
SPLITWISE_CSV = REFERENCE_DIR / "splitwise-sim" / "perf_model.csv"
REFERENCE_SOURCE = "splitwise-paper-dgx (splitwise-sim perf_model.csv @8f99e7d)"
REFERENCE_PCAP_SOURCE = (
    "splitwise-paper-dgx (splitwise-sim perf_model.csv @8f99e7d; "
    "derived: 1.3x h100 prompt, h100 token)"
)


class ProfileError(ValueError):
    """A profile table is malformed (one-line message naming file, row and column)."""


# ----------------------------------------------------------------------------- gpu names


def known_profile_gpus() -> list[str]:
    """GPU keys a profile table may use: GPU spec names and every machine's ``profile_gpu``."""
    names = set(list_specs("gpus"))
    for m in list_specs("machines"):
        try:
            names.add(load_machine(m).profile_gpu)
        except SpecError:
            continue
    return sorted(names)


def _profile_gpu(gpu: str) -> tuple[GPUSpec, float]:
    """(GPU spec, per-GPU power budget W) of a profile ``gpu`` key (see gpu_power_facts)."""
    for m in list_specs("machines"):
        try:
            spec = load_machine(m)
        except SpecError:
            continue
        if spec.profile_gpu == gpu:
            return spec.gpu, float(spec.gpu_power_w)
    try:
        g = load_gpu(gpu)
    except SpecError as e:
        raise ProfileError(f"unknown gpu '{gpu}' (known: {', '.join(known_profile_gpus())})") from e
    return g, float(g.power_limit_w)


def profile_gpu_spec(gpu: str) -> GPUSpec:
    """The GPUSpec behind a profile ``gpu`` key (``h100-80gb-pcap`` -> the H100 spec)."""
    return _profile_gpu(gpu)[0]


def gpu_power_facts(gpu: str) -> tuple[float, float]:
    """(power budget per GPU, idle power per GPU) in W for a profile ``gpu`` key.

    A machine whose ``profile_gpu`` is ``gpu`` gives its per-GPU budget (caps applied, e.g.
    490 W for ``h100-80gb-pcap``) and its GPU's idle power; otherwise the GPU spec's power
    limit and idle power. Raises :class:`ProfileError` for an unknown key.
    """
    spec, budget = _profile_gpu(gpu)
    return budget, float(spec.idle_power_w)


# ----------------------------------------------------------------------------- validation


def _fail(source: str, row: int | None, column: str, msg: str) -> ProfileError:
    where = f"{source}: row {row}" if row is not None else source
    return ProfileError(f"{where}: column '{column}': {msg}")


def _plain(value):
    """A numpy scalar as the plain Python value (so messages read ``0``, not ``np.int64(0)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _first_duplicate_pair(df: pd.DataFrame, dup: pd.Series) -> tuple:
    """Index labels of the first duplicated row and the next row with the same key."""
    i = df.index[dup.to_numpy()][0]
    same = (df[KEY_COLUMNS] == df.loc[i, KEY_COLUMNS]).all(axis=1).to_numpy()
    return i, df.index[same][1]


def validate_profiles(df: pd.DataFrame, source: str = "<profiles>") -> pd.DataFrame:
    """Check a profile table against contract 2 and return a typed copy (columns in order).

    Checks: every column present (``OPTIONAL_COLUMNS`` may be absent: power, energy and std
    become NaN, repeats 1, energy ``power_w x latency_s`` when only the power is given); ``model`` is a known model spec; ``gpu`` is a GPU spec name or
    a machine's ``profile_gpu``; ``phase`` in prefill|decode; ``tp``, ``batch_size``,
    ``tokens_per_request``, ``repeats`` positive integers; ``latency_s`` finite and > 0;
    ``power_w``/``energy_j``/``latency_std_s`` NaN or >= 0; every (model, gpu, tp) has both
    phases; no two rows share a key (model, gpu, tp, phase, batch_size, tokens_per_request): a
    duplicate is an error naming both rows. Nothing is dropped. Rows are reported 1-based in table order (row 1 is the
    first data row, i.e. line 2 of a CSV file). Raises :class:`ProfileError`.
    """
    missing = [c for c in PROFILE_COLUMNS if c not in df.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        need = [c for c in PROFILE_COLUMNS if c not in OPTIONAL_COLUMNS]
        raise ProfileError(
            f"{source}: missing column '{missing[0]}' (need {need}; optional "
            f"{list(OPTIONAL_COLUMNS)})"
        )
    df = df.copy()
    if "power_w" not in df.columns:
        df["power_w"] = math.nan
    if "energy_j" not in df.columns:
        df["energy_j"] = pd.to_numeric(df["power_w"], errors="coerce") * pd.to_numeric(
            df["latency_s"], errors="coerce"
        )
    if "latency_std_s" not in df.columns:
        df["latency_std_s"] = math.nan
    if "repeats" not in df.columns:
        df["repeats"] = 1
    out = df[PROFILE_COLUMNS].reset_index(drop=True).copy()
    if len(out) == 0:
        raise ProfileError(f"{source}: no rows")
    for col in _STR_COLUMNS:
        vals = out[col]
        bad = vals.isna() | (vals.astype(str).str.strip() == "")
        if col == "source":
            out[col] = vals.where(~bad, "").astype(str)
            continue
        if bad.any():
            raise _fail(source, int(np.flatnonzero(bad.to_numpy())[0]) + 1, col, "empty")
        out[col] = vals.astype(str).str.strip()
    for col in _INT_COLUMNS:
        num = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(num) | (num < 1) | (num != np.round(num))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            got = _plain(out[col].iloc[i])
            raise _fail(source, i + 1, col, f"must be a positive integer (got {got!r})")
        out[col] = num.astype(np.int64)
    for col in _FLOAT_COLUMNS:
        num = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        raw = out[col]
        unparsable = np.isnan(num) & raw.notna().to_numpy() & (raw.astype(str) != "nan").to_numpy()
        if unparsable.any():
            i = int(np.flatnonzero(unparsable)[0])
            raise _fail(source, i + 1, col, f"not a number ({raw.iloc[i]!r})")
        if col == "latency_s":
            bad = ~np.isfinite(num) | (num <= 0)
            what = "must be finite and > 0"
        else:
            bad = np.isinf(num) | (num < 0)
            what = "must be NaN or finite and >= 0"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(source, i + 1, col, f"{what} (got {float(num[i])!r})")
        out[col] = num
    phases = out["phase"].to_numpy()
    bad_phase = ~np.isin(phases, PHASES)
    if bad_phase.any():
        i = int(np.flatnonzero(bad_phase)[0])
        raise _fail(source, i + 1, "phase", f"must be prefill or decode (got {phases[i]!r})")
    for i, name in enumerate(out["model"]):
        if i and name == out["model"].iat[i - 1]:
            continue
        try:
            load_model(name)
        except SpecError as e:
            raise _fail(source, i + 1, "model", str(e)) from None
    gpus = set(known_profile_gpus())
    bad_gpu = ~out["gpu"].isin(gpus).to_numpy()
    if bad_gpu.any():
        i = int(np.flatnonzero(bad_gpu)[0])
        raise _fail(
            source,
            i + 1,
            "gpu",
            f"unknown gpu '{out['gpu'].iat[i]}' (known: {', '.join(sorted(gpus))})",
        )
    for (model, gpu, tp), grp in out.groupby(["model", "gpu", "tp"], sort=True):
        have = set(grp["phase"])
        for ph in PHASES:
            if ph not in have:
                raise _fail(
                    source,
                    int(grp.index[0]) + 1,
                    "phase",
                    f"({model}, {gpu}, tp={tp}) has no {ph} rows",
                )
    dup = out.duplicated(KEY_COLUMNS, keep=False)
    if dup.any():
        first = _first_duplicate_pair(out, dup)
        a, b = (int(i) + 1 for i in first)
        key = ", ".join(f"{c}={_plain(out.at[first[0], c])}" for c in KEY_COLUMNS)
        n = int(out.duplicated(KEY_COLUMNS).sum())
        more = f" ({n} duplicate rows in all)" if n > 1 else ""
        raise ProfileError(
            f"{source}: rows {a} and {b}: duplicate point ({key}){more}: keep one row per point"
        )
    return out


# ----------------------------------------------------------------------------- files


def metadata_path(path: str | os.PathLike) -> Path:
    """The provenance sidecar of a profile CSV: ``NAME.meta.json`` next to ``NAME.csv``."""
    p = Path(path)
    return p.with_name(p.stem + ".meta.json")


def write_profiles(df: pd.DataFrame, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Validate ``df`` and write it as CSV (columns ``PROFILE_COLUMNS``), atomically.

    ``metadata`` (JSON-serializable: device, driver, software versions, command, ...) goes to
    the sidecar :func:`metadata_path` (also atomic, keys sorted). Returns the CSV path.
    """
    path = Path(path)
    table = validate_profiles(df, str(path))
    write_text_atomic(path, table.to_csv(index=False, lineterminator="\n"))
    if metadata is not None:
        write_json_atomic(metadata_path(path), metadata)
    return path


def read_profiles(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a profile CSV written by :func:`write_profiles` (or by hand)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ProfileError(f"{path}: not a readable CSV: {msg}") from None
    return validate_profiles(df, str(path))


def read_metadata(path: str | os.PathLike) -> dict | None:
    """The provenance sidecar of a profile CSV, or None when there is none."""
    meta = metadata_path(path)
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ProfileError(f"{meta}: not valid JSON: {e}") from None


def is_profile_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a CSV whose header has the required profile columns (contract 2).

    Only the header is read; the profiler's ``infeasible.csv`` / ``details.csv`` are not tables.
    """
    need = {c for c in PROFILE_COLUMNS if c not in OPTIONAL_COLUMNS}
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return need <= {c.strip().strip('"') for c in header.strip().split(",")}


def find_profile_tables(source: str | os.PathLike) -> list[Path]:
    """Every measured profile table of ``source``: the file itself, or, for a folder, every CSV
    under it (recursively, sorted by path) whose header has the profile columns
    (:func:`is_profile_table`). Raises :class:`ProfileError` when there is none."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ProfileError(f"{path}: no such profile file or folder")
    found = sorted(p for p in path.rglob("*.csv") if p.is_file() and is_profile_table(p))
    if not found:
        raise ProfileError(
            f"{path}: no profile table under this folder (a CSV with the columns "
            f"{[c for c in PROFILE_COLUMNS if c not in OPTIONAL_COLUMNS]}; "
            "splitbench-characterize writes <run>/profiles.csv)"
        )
    return found


def read_profile_source(source: str | os.PathLike) -> tuple[pd.DataFrame, list[Path]]:
    """The profile table of a source and the files it came from.

    ``source``: ``'reference'`` (the bundled Splitwise data, no files), a profile CSV, or a
    folder: every table under it (:func:`find_profile_tables`) read, validated and merged in
    path order. Tables of one folder must not measure the same point twice: a point in two files
    is a :class:`ProfileError` naming both files and rows (profiles of different engines or
    runs are not interchangeable; point the source at one of them).
    """
    if str(source) == "reference":
        return reference_profiles(), []
    files = find_profile_tables(source)
    if len(files) == 1:
        return read_profiles(files[0]), files
    frames = []
    for f in files:
        df = read_profiles(f)
        frames.append(df.assign(_file=str(f), _row=np.arange(1, len(df) + 1)))
    merged = pd.concat(frames, ignore_index=True)
    dup = merged.duplicated(KEY_COLUMNS, keep=False)
    if dup.any():
        i, j = _first_duplicate_pair(merged, dup)
        (f1, r1), (f2, r2) = merged.loc[[i, j], ["_file", "_row"]].itertuples(index=False)
        key = ", ".join(f"{c}={_plain(merged.at[i, c])}" for c in KEY_COLUMNS)
        raise ProfileError(
            f"{source}: {f1} row {r1} and {f2} row {r2} measure the same point ({key}): "
            "point profiles.source at one of the tables"
        )
    merged = merged.drop(columns=["_file", "_row"])
    return validate_profiles(merged, str(source)), files


# ----------------------------------------------------------------------------- reference


@cache
def _reference_table() -> pd.DataFrame:
    raw = pd.read_csv(SPLITWISE_CSV)
    raw = raw.rename(columns={"hardware": "gpu", "tensor_parallel": "tp"})
    rows: list[dict] = []

    def power_scale(gpu: str, tp: int) -> float:
        # normalized-to-TDP -> whole-instance watts: x the GPU's power limit x tp GPUs
        return load_gpu(gpu).power_limit_w * tp if gpu in list_specs("gpus") else math.nan

    def fold(vals_ms: np.ndarray) -> tuple[float, float, int]:
        secs = np.array([ms_to_s(float(v)) for v in vals_ms])
        std = float(secs.std(ddof=1)) if len(secs) > 1 else math.nan
        return float(secs.mean()), std, len(secs)

    def mean_power(vals: np.ndarray, scale: float) -> float:
        vals = vals[vals > 0]  # 0 means "not recorded" in the source
        return float(vals.mean()) * scale if len(vals) else math.nan

    for (model, gpu, tp), grp in raw.groupby(["model", "gpu", "tp"], sort=True):
        tp = int(tp)
        source = REFERENCE_PCAP_SOURCE if gpu.endswith("-pcap") else REFERENCE_SOURCE
        scale = power_scale(gpu, tp)
        # per phase: the rows, their tokens-per-request column, latency column, power column
        ctx = grp["prompt_size"] + grp["token_size"] // 2
        phases = (
            ("prefill", grp, "prompt_size", "prompt_time", "peak_power"),
            ("decode", grp.assign(ctx=ctx), "ctx", "token_time", "average_power"),
        )
        for phase, data, tokens_col, time_col, power_col in phases:
            for (tokens, batch), g in data.groupby([tokens_col, "batch_size"], sort=True):
                lat, std, n = fold(g[time_col].to_numpy())
                pw = mean_power(g[power_col].to_numpy(dtype=float), scale)
                rows.append(
                    dict(model=model, gpu=gpu, tp=tp, phase=phase, batch_size=int(batch),
                         tokens_per_request=int(tokens), latency_s=lat, power_w=pw,
                         energy_j=pw * lat, repeats=n, latency_std_s=std, source=source)
                )  # fmt: skip
    df = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    return validate_profiles(df, str(SPLITWISE_CSV))


def reference_profiles() -> pd.DataFrame:
    """The Splitwise paper's DGX-A100/DGX-H100 measurements as a contract-2 profile table.

    Source: ``characterize/modeling/data/reference/splitwise-sim/perf_model.csv`` (splitwise-sim @8f99e7d,
    MIT, Pratyush Patel). Conversions, one source row = one repeat of one request batch:

    - units: prompt_time and token_time are ms -> s (``units.ms_to_s``);
    - ``gpu`` = the file's ``hardware`` (a100-80gb, h100-80gb, h100-80gb-pcap); ``tp`` = its
      ``tensor_parallel`` (2, 4, 8) as measured;
    - prefill row per (prompt_size, batch_size): ``tokens_per_request`` = prompt_size,
      ``latency_s`` = prompt_time (time to first token of the batch); the token_size sweep's
      rows at the same prompt and batch are repeats of the same prefill and fold in;
    - decode row per (prompt_size + token_size/2, batch_size): the token phase's context is the
      prompt plus about half the generated tokens, ``tokens_per_request`` = prompt_size +
      token_size // 2; ``latency_s`` = token_time (ms per output token = one decode step of the
      batch);
    - repeats (~5, 15 for the point shared by the sweeps) are folded into the mean
      (``latency_s``), the sample standard deviation (``latency_std_s``, ddof=1) and the count
      (``repeats``);
    - power: the A100 power columns are normalized to TDP; instance watts = value x the GPU's
      power limit (400 W) x tp. Prefill rows take ``peak_power`` (the request's peak, reached in
      the compute-bound prompt phase); decode rows take ``average_power`` (the request's mean,
      dominated by its 127+ decode steps). Zeros mean "not recorded" (all H100 rows, the A100
      token_size sweep and batch 32/64 rows) and are excluded from the mean; with none left,
      ``power_w`` is NaN. ``energy_j`` = ``power_w`` x ``latency_s`` (NaN with the power);
    - the ``h100-80gb-pcap`` rows are derived in the source (prompt_time exactly 1.3x the
      h100-80gb rows, token_time identical); their ``source`` says so.

    Returns a fresh copy (the parsed table is cached in-process).
    """
    return _reference_table().copy()


SHARD_SOURCE = re.compile(r"\btp(\d+) shard\b")
ALLREDUCE_NOTE = "nccl allreduce"


def is_shard_measurement(source: str) -> bool:
    """Whether a row was measured on ONE GPU for a TP shard and still lacks the all-reduce.

    The suite's profiler writes ``tpK shard`` into ``source``; :func:`shard_to_machine`
    appends ``nccl allreduce (...)``. Reference rows (whole DGX machines) have neither.
    """
    return bool(SHARD_SOURCE.search(source or "")) and ALLREDUCE_NOTE not in (source or "")


def machine_profiles(df: pd.DataFrame) -> pd.DataFrame:
    """Every row as a machine (whole TP instance) profile, as the simulator needs it.

    Rows that are one-GPU shard measurements (:func:`is_shard_measurement`) with tp > 1 get the
    tensor-parallel all-reduce time of their GPU's DGX (:func:`shard_to_machine`); every other
    row is kept as it is. Row order is kept.
    """
    table = validate_profiles(df, "machine_profiles input")
    todo = table["source"].map(is_shard_measurement) & (table["tp"] > 1)
    if not todo.any():
        return table
    out = table.copy()
    for (gpu, tp), idx in out[todo].groupby(["gpu", "tp"]).groups.items():
        out.loc[idx] = shard_to_machine(out.loc[idx], int(tp), str(gpu)).set_index(idx)
    return validate_profiles(out, "machine_profiles output")


def shard_to_machine(
    df: pd.DataFrame,
    tp: int,
    allreduce: str | Callable[[int], float],
    *,
    source_note: str | None = None,
) -> pd.DataFrame:
    """A profile measured on ONE GPU running a TP-``tp`` shard -> the TP-``tp`` machine profile.

    Per iteration, each transformer layer adds 2 NCCL all-reduces (after attention and after the
    MLP) of ``batch tokens x hidden_size x 2 bytes`` (fp16/bf16 activations): prefill batch
    tokens = ``batch_size x tokens_per_request`` (the prompts), decode batch tokens =
    ``batch_size`` (one new token per request). ``latency_s`` += ``2 x num_layers x
    allreduce(nbytes)``. ``power_w`` is the power of the row's own instance (contract 2): a
    tp-1 row's (one GPU) is scaled x ``tp`` GPUs, a tp-``tp`` row's (the profiler already wrote
    one GPU x tp) is kept; ``energy_j`` = ``power_w x latency_s`` of the new latency (the
    all-reduce time is assumed to draw the same power). ``tp`` is set on every row; input rows
    must have tp 1 or ``tp``.

    ``allreduce`` is a GPU name or family (``a100*`` -> the vidur ``a100_dgx`` table, ``h100*``
    and ``h200*`` -> ``h100_dgx``, see :mod:`characterize.modeling.network`) or a callable
    ``nbytes -> seconds``. ``source`` gets ``+ nccl allreduce (...)`` appended.
    """
    from characterize.modeling.network import allreduce_time, network_family

    table = validate_profiles(df, "shard_to_machine input")
    if int(tp) < 1:
        raise ProfileError(f"shard_to_machine: tp must be >= 1 (got {tp})")
    bad = ~table["tp"].isin([1, int(tp)])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _fail("shard_to_machine input", i + 1, "tp", f"must be 1 or {tp}")
    if callable(allreduce):
        ar: Callable[[int], float] = allreduce
        note = source_note or "nccl allreduce (user function)"
    else:
        family = network_family(str(allreduce))
        note = source_note or f"nccl allreduce (vidur {family}_dgx, tp={tp})"

        def ar(nbytes: int) -> float:
            return allreduce_time(family, int(tp), nbytes)

    out = table.copy()
    lat = out["latency_s"].to_numpy(dtype=float).copy()
    for i, row in enumerate(out.itertuples(index=False)):
        spec = load_model(row.model)
        tokens = row.batch_size * (row.tokens_per_request if row.phase == "prefill" else 1)
        nbytes = int(tokens * spec.hidden_size * 2)
        if int(tp) > 1:
            lat[i] += 2 * spec.num_layers * float(ar(nbytes))
    out["latency_s"] = lat
    out["power_w"] = out["power_w"] * (int(tp) / out["tp"].astype(float))
    out["tp"] = int(tp)
    out["energy_j"] = out["power_w"] * out["latency_s"]
    out["source"] = [f"{s} + {note}" if s else note for s in out["source"]]
    return validate_profiles(out, "shard_to_machine output")
