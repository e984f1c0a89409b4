"""Profile sets: where the phase profile of each GPU a study needs comes from (DESIGN.md,
"Profile sets").

A study names one set (``profiles=paper`` or ``profiles=aic`` with an engine, its version and a
dtype). For each GPU a design needs, the set gives, in this order:

1. the set's **base** rows where they cover the GPU: the paper's DGX-A100/H100 measurements
   (``reference``) for the paper set; the composed tables are the aic set's base (3.);
2. **measured**: a contract-2 table under ``measured_dir`` (``results/profiles``) with rows of
   that GPU and model (tables of the suite's own engine first, as before); in an aic set only
   tables whose ``source`` names the set's engine (another engine's measurement is not this
   engine's profile);
3. **composed**: the engine's table composed from measured operator latencies
   (AIConfigurator, Xu et al., arXiv 2601.06288) at
   ``characterize/modeling/data/composed/<engine>-<version>/<gpu>/<model>-<dtype>-tp<k>.csv``
   (aic sets only: the paper's 2023 engine has none);
4. **derived**: :func:`characterize.modeling.derive.derived_profile_table` from the GPU spec and
   the closest GPU the set has (its rows' ``source`` says "derived from").

:func:`resolve` returns a :class:`ProfileSet`: the profile source to simulate on (the base
itself when it covers every GPU asked for, so such points keep their cache keys; else one CSV
of the base plus the added rows, named by content) and, per GPU, which of the four it is.
The slowdown reference machine (an A100 at the study's tp) is one of the GPUs a set resolves
when the SLO is relative to the set (``slo_reference_source: set``); with
``slo_reference_source: reference`` every set is judged against the paper's DGX-A100 latencies:
fixed per-request targets, the same for every set.

Torch-free (pandas only).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from characterize.modeling.profiles import (
    DATA_ROOT,
    KEY_COLUMNS,
    ProfileError,
    find_profile_tables,
    read_profile_source,
    read_profiles,
    write_profiles,
)

#: the named sets: the Splitwise paper's DGX profiles, or AIConfigurator-composed ones
SETS = ("paper", "aic")
#: ``profiles=reference`` (the configs' old name) is the paper set
ALIASES = {"reference": "paper"}
#: where composed tables live: <engine>-<version>/<gpu>/<model>-<dtype>-tp<k>.csv
COMPOSED_DIR = DATA_ROOT / "composed"
#: the kinds a GPU's profile can have, best first
KINDS = ("reference", "measured", "composed", "derived")
#: ``slo_reference_source`` value naming the set itself (its own A100 is the reference)
SET_REFERENCE = "set"
#: what an engine's measured tables say in their ``source`` (lower case)
ENGINE_WORDS = {
    "trtllm": ("tensorrt", "trtllm", "trt-llm"),
    "sglang": ("sglang",),
    "vllm": ("vllm",),
}
_TABLE = re.compile(r"^(?P<model>.+)-(?P<dtype>[a-z0-9_]+)-tp(?P<tp>\d+)\.csv$")
_ENGINE_DIR = re.compile(r"^(?P<engine>[a-z0-9_]+?)-(?P<version>\d[\w.+-]*)$")


class ProfileSetError(ProfileError):
    """A profile set cannot be named or resolved: one line listing what exists."""


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v))


def composed_catalog(root: str | Path = COMPOSED_DIR) -> dict[str, dict[str, dict]]:
    """``{engine: {version: {(gpu, model, dtype, tp): path}}}`` of the composed tables."""
    out: dict[str, dict[str, dict]] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for edir in sorted(p for p in root.iterdir() if p.is_dir()):
        m = _ENGINE_DIR.match(edir.name)
        if not m:
            continue
        tables = out.setdefault(m["engine"], {}).setdefault(m["version"], {})
        for f in sorted(edir.glob("*/*.csv")):
            t = _TABLE.match(f.name)
            if t:
                tables[(f.parent.name, t["model"], t["dtype"], int(t["tp"]))] = str(f)
    return out


def _listing(items) -> str:
    return ", ".join(sorted(items)) or "none"


def check_aic(
    engine: str, version: str, dtype: str, root: str | Path = COMPOSED_DIR, key: str = "profiles"
) -> str:
    """The engine version an aic set uses (``latest``: the newest composed one; a GPU it lacks
    comes from the newest version that has it, see :func:`composed_tables`); a one-line
    :class:`ProfileSetError` naming the key and listing what exists for a bad engine, version
    or dtype."""
    cat = composed_catalog(root)
    if engine not in cat:
        raise ProfileSetError(
            f"{key}.engine: no composed profiles for engine '{engine}' under {root} "
            f"(have: {_listing(cat)})"
        )
    versions = cat[engine]
    latest = version in ("latest", "", None)
    if latest:
        version = max(versions, key=_version_key)
    if version not in versions:
        raise ProfileSetError(
            f"{key}.engine_version: no composed {engine} version '{version}' "
            f"(have: {_listing(versions)})"
        )
    dtypes = {k[2] for k in versions[version]}
    if latest:
        dtypes = {k[2] for v in versions.values() for k in v}
    if dtype not in dtypes:
        raise ProfileSetError(
            f"{key}.dtype: no composed {engine if latest else f'{engine}-{version}'} tables in "
            f"dtype '{dtype}' "
            f"(have: {_listing(dtypes)})"
        )
    return version


def composed_tables(
    engine: str, version: str, dtype: str, model: str, tp: int, root: str | Path = COMPOSED_DIR
) -> dict[str, tuple[str, str]]:
    """``{gpu: (version, path)}``: the composed tables of (model, dtype, tp). ``latest``: per GPU
    the newest version that has one (AIConfigurator measured older GPUs with older engine
    versions: vLLM's A100 data is 0.14.0, its H100/H200/B200 data 0.24.0); a named version:
    that version's tables only. ``model`` is the table's model or ``<model>-<dtype>`` (a spec
    of its own, e.g. llama3.1-70b-fp8)."""
    cat = composed_catalog(root).get(engine, {})
    names = _model_names(model)
    chosen = cat if version in ("latest", "", None) else {version: cat.get(version, {})}
    out: dict[str, tuple[str, str]] = {}
    for v in sorted(chosen, key=_version_key, reverse=True):
        for (gpu, m, d, t), path in sorted(chosen[v].items()):
            if d == dtype and t == int(tp) and (m in names or f"{m}-{d}" in names):
                out.setdefault(gpu, (v, path))
    return out


@dataclass(frozen=True)
class SetSpec:
    """Which set: ``paper`` (base: ``base``, 'reference' or a profile CSV/folder) or ``aic``
    (``engine``, ``engine_version``, ``dtype`` of the composed tables under ``composed_dir``)."""

    set: str = "paper"
    engine: str = ""
    engine_version: str = "latest"
    dtype: str = "bf16"
    base: str = "reference"
    measured_dir: str | None = None
    composed_dir: str = str(COMPOSED_DIR)

    @property
    def kind(self) -> str:
        return ALIASES.get(self.set, self.set)

    def label(self) -> str:
        """How tables and the report name the set."""
        if self.kind == "paper":
            return "paper" if self.base == "reference" else f"paper ({self.base})"
        version = check_aic(self.engine, self.engine_version, self.dtype, self.composed_dir)
        return f"aic {self.engine} {version} {self.dtype}"


@dataclass(frozen=True)
class GpuSource:
    """Where one GPU's rows of a set come from (a kind of :data:`KINDS`)."""

    gpu: str
    kind: str
    tables: tuple[str, ...] = ()
    source: str = ""  # the ``source`` text of its first row

    def text(self) -> str:
        return f"{self.gpu}: {self.kind}" + (f" ({self.source})" if self.source else "")


@dataclass
class ProfileSet:
    """A resolved set: ``path`` to simulate on, and per GPU where its rows come from."""

    label: str
    path: str
    model: str
    tp: int
    gpus: dict[str, GpuSource] = field(default_factory=dict)

    def kinds(self) -> dict[str, str]:
        return {g: s.kind for g, s in self.gpus.items()}

    def kind_texts(self) -> dict[str, str]:
        """Each GPU's kind, with the engine version where a composed table is of another version
        than the set's (``composed (vllm-0.14.0)``)."""
        parts = self.label.split()
        out = {}
        for g, src in self.gpus.items():
            m = (
                re.search(rf"\b{re.escape(parts[1])} ([\w.]+)", src.source)
                if parts[0] == "aic"
                else None
            )
            other = src.kind == "composed" and m and m.group(1) != parts[2]
            out[g] = f"{src.kind} ({parts[1]} {m.group(1)})" if other else src.kind
        return out

    def note(self) -> str:
        """One line: the set and each GPU's kind."""
        parts = "; ".join(s.text() for s in self.gpus.values())
        return f"profile set {self.label} ({self.model}, tp{self.tp}): {parts}"


def _model_names(model: str) -> set[str]:
    """The model and the model whose profiles it borrows (its spec's ``profile_model``)."""
    from characterize.modeling.specs import SpecError, load_model

    try:
        return {model, load_model(model).phase_profile_model}
    except SpecError:
        return {model}


def _rows(df: pd.DataFrame, model: str, gpu: str, tp: int) -> pd.DataFrame:
    return df[df["model"].isin(_model_names(model)) & (df["gpu"] == gpu) & (df["tp"] == int(tp))]


def _engine_matches(source: str, engine: str) -> bool:
    s = source.lower()
    return any(w in s for w in ENGINE_WORDS.get(engine, (engine,)))


def measured_tables(
    measured_dir: str | None, model: str, gpu: str, engine: str | None = None
) -> list[str] | None:
    """The measured profile tables under ``measured_dir`` with rows of ``gpu`` and ``model``
    (every table found recursively), or None when there is none. Tables of the suite's own
    engine (``splitbench-native``) are preferred when there are some; with ``engine`` only
    tables whose rows name that engine count. A table that is a profile table but invalid is an
    error (one line naming it), not skipped."""
    if not measured_dir:
        return None
    try:
        tables = find_profile_tables(measured_dir)
    except ProfileError:
        return None
    found: list[tuple[bool, str]] = []
    for path in tables:
        df = read_profiles(path)
        rows = df[(df["gpu"] == gpu) & (df["model"] == model)]
        if engine is not None:
            rows = rows[rows["source"].map(lambda s: _engine_matches(str(s), engine))]
        if len(rows):
            native = rows["source"].str.contains("splitbench-native", regex=False).all()
            found.append((bool(native), str(path)))
    if any(native for native, _ in found):
        found = [f for f in found if f[0]]
    return [path for _, path in found] or None


def _measured_rows(paths: list[str], gpu: str) -> pd.DataFrame:
    """The ``gpu`` rows of the measured tables; a point in two tables is an error naming both."""
    frames = []
    seen: dict[tuple, str] = {}
    for path in paths:
        df = read_profiles(path)
        df = df[df["gpu"] == gpu]
        for key in df[KEY_COLUMNS].itertuples(index=False, name=None):
            if key in seen:
                raise ProfileError(
                    f"{path}: measures the same {gpu} point as {seen[key]} "
                    f"({', '.join(map(str, key))}): keep one table under profiles.measured_dir"
                )
            seen[key] = path
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _has(rows: pd.DataFrame, paths: list[str]) -> bool:
    """Whether ``rows`` already are the measured rows of ``paths`` (a resolved base)."""
    return set(rows["source"]) <= {s for p in paths for s in read_profiles(p)["source"]}


def _write_named(df: pd.DataFrame, out_dir: str | Path, stem: str) -> str:
    """``df`` as ``<out_dir>/profiles/<stem>-<content digest>.csv`` (written once)."""
    text = df.to_csv(index=False, lineterminator="\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(out_dir) / "profiles" / f"{stem}-{digest}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_profiles(df, path)
    return str(path)


def kind_of(source: str, base_kind: str = "measured") -> str:
    """The kind of a row from its ``source`` text: derived, composed, the paper's reference
    data, else ``base_kind``."""
    s = str(source)
    if "derived from" in s:
        return "derived"
    if "composed from" in s:
        return "composed"
    if s.startswith("splitwise-paper-dgx"):
        return "reference"
    return base_kind


def _base(spec: SetSpec, model: str, tp: int, out_dir: str | Path):
    """(base table, the source to simulate it on, its files) of a set. An aic set whose
    ``base`` is a file is already resolved (its composed rows plus any added ones)."""
    if spec.kind == "paper":
        df, files = read_profile_source(spec.base)
        return df, spec.base, [str(f) for f in files]
    if spec.kind != "aic":
        raise ProfileSetError(f"profiles.set: unknown set '{spec.set}' (known: {', '.join(SETS)})")
    if spec.base and Path(spec.base).is_file():
        return read_profiles(spec.base), spec.base, [spec.base]
    version = check_aic(spec.engine, spec.engine_version, spec.dtype, spec.composed_dir)
    mine = composed_tables(
        spec.engine, spec.engine_version, spec.dtype, model, tp, spec.composed_dir
    )
    if not mine:
        tables = composed_catalog(spec.composed_dir)[spec.engine]
        have = {f"{m}-{d}-tp{t}" for v in tables.values() for (_, m, d, t) in v}
        raise ProfileSetError(
            f"profiles: no composed {spec.engine} table of {model} in {spec.dtype} at "
            f"tp{tp} (have: {_listing(have)})"
        )
    files = [mine[g][1] for g in sorted(mine)]
    df = pd.concat([read_profiles(p) for p in files], ignore_index=True)
    path = _write_named(df, out_dir, f"aic-{spec.engine}-{version}-{spec.dtype}-{model}-tp{tp}")
    return df, path, files


def resolve(
    spec: SetSpec, model: str, tp: int, gpus, out_dir: str | Path, *, quiet: bool = False
) -> ProfileSet:
    """The set's profile source covering ``gpus`` (profile gpu keys) for (model, tp).

    Where the base covers every GPU, ``path`` is the base itself (the paper set: 'reference');
    otherwise a CSV under ``<out_dir>/profiles/`` of the base rows and each added GPU's rows
    (measured, else derived; aic: composed are the base), named ``with-<gpus>-<digest>.csv``.
    Prints one line per added GPU unless ``quiet``."""
    from characterize.modeling.derive import DeriveError, derived_profile_table

    tp = int(tp)
    base, base_path, base_files = _base(spec, model, tp, out_dir)
    base_kind = "reference" if base_path == "reference" else "measured"
    label = spec.label()
    out = ProfileSet(label=label, path=base_path, model=model, tp=tp)
    added: dict[str, pd.DataFrame] = {}
    engine = spec.engine if spec.kind == "aic" else None
    for gpu in dict.fromkeys(gpus):
        rows = _rows(base, model, gpu, tp)
        paths = measured_tables(spec.measured_dir, model, gpu, engine)
        # the paper's own rows are its set; an engine's measured table beats its composed one
        if len(rows) and (spec.kind == "paper" or not paths or _has(rows, paths)):
            files = tuple(f for f in base_files if f"/{gpu}/" in f) or tuple(base_files)
            text = str(rows["source"].iloc[0])
            out.gpus[gpu] = GpuSource(gpu, kind_of(text, base_kind), files, text)
            continue
        if paths:
            df = _measured_rows(paths, gpu)
            out.gpus[gpu] = GpuSource(gpu, "measured", tuple(paths), str(df["source"].iloc[0]))
            if not quiet:
                print(
                    f"{gpu} profiles: merged {len(paths)} measured table(s) ({len(df)} rows) "
                    f"with the '{label}' profiles: {', '.join(paths)}"
                )
        else:
            src = base_path if spec.kind == "aic" else spec.base
            try:
                df = derived_profile_table(model, gpu, tp, source=src)
            except DeriveError as e:  # the source lacks this GPU and any GPU to derive it from
                raise ProfileSetError(
                    f"profiles.source: no phase model for {model}/{gpu}/tp{tp} in {src}, and "
                    f"none to derive it from ({e})"
                ) from None
            df = df[df["gpu"] == gpu]
            out.gpus[gpu] = GpuSource(gpu, "derived", (), str(df["source"].iloc[0]))
            if not quiet:
                print(
                    f"{gpu} profiles: {len(df)} DERIVED rows (no measured {gpu} table) merged "
                    f"with the '{label}' profiles: {df['source'].iloc[0]}"
                )
        added[gpu] = df
    if added:
        keep = base[~base["gpu"].isin(list(added))]
        merged = pd.concat([keep, *added.values()], ignore_index=True)
        short = "-".join(g.split("-")[0] for g in added)
        stem = f"with-{short}" if spec.kind == "paper" else f"{Path(base_path).stem[:-13]}-{short}"
        out.path = _write_named(merged, out_dir, stem)
    return out


__all__ = [
    "ALIASES",
    "COMPOSED_DIR",
    "KINDS",
    "SETS",
    "SET_REFERENCE",
    "GpuSource",
    "ProfileSet",
    "ProfileSetError",
    "SetSpec",
    "check_aic",
    "composed_catalog",
    "kind_of",
    "measured_tables",
    "resolve",
]
