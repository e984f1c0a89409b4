"""The report's names for its inputs: each study's ``label`` (what sets it apart from the
others it is shown with: its name and the overrides that made it) and ``slug`` (a file-name form),
the report folder's name of an inputs set."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from experiments.errors import ExperimentError

#: overrides that say where things go, not what was computed (left out of labels)
_PLACE_KEYS = (
    "paths.", "hydra.", "study.report", "search.n_jobs", "progress", "profiles.measured_dir"
)  # fmt: skip


def _read_overrides(path: Path) -> list[str] | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ExperimentError(f"{path}: cannot read YAML ({e})".splitlines()[0]) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ExperimentError(f"{path}: expected a list of overrides, got {type(data).__name__}")
    return [str(x) for x in data]


def study_overrides(d: Path, meta: dict) -> list[str]:
    """The command-line overrides that made the study in ``d``: ``study.json``'s ``overrides``
    when it records them, else Hydra's ``overrides.yaml`` (the folder's own ``.hydra/``, or the
    newest ``hydra/<time>/.hydra/`` under it). Overrides of output places are left out."""
    raw = meta.get("overrides")
    if raw is None and isinstance(meta.get("study"), dict):
        raw = meta["study"].get("overrides")
    if raw is not None and not isinstance(raw, list):
        raise ExperimentError(f"{d / 'study.json'}: 'overrides' is not a list")
    if raw is None:
        files = [d / ".hydra" / "overrides.yaml"]
        files += sorted(d.glob("hydra/*/.hydra/overrides.yaml"), reverse=True)
        for f in files:
            if f.is_file():
                raw = _read_overrides(f)
                break
    return [
        str(o).lstrip("+~") for o in (raw or []) if not str(o).lstrip("+~").startswith(_PLACE_KEYS)
    ]


def _flatten(obj, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(obj, sort_keys=True)}


def _config_keys(text: str) -> dict[str, str]:
    import yaml

    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    flat = _flatten(data) if isinstance(data, dict) else {}
    return {k: v for k, v in flat.items() if not k.startswith(_PLACE_KEYS)}


def _named_by(override: str, name: str) -> bool:
    """Whether the study's name already says what ``override`` sets: its experiment or study
    name, or a model the name spells (``experiment=seeds model=bloom-176b`` makes
    ``seeds-bloom-176b``)."""
    key, _, value = override.partition("=")
    if key in ("experiment", "study.name"):
        return name == value or name.startswith(f"{value}-")
    if key == "model":
        return bool(value) and (name == value or name.endswith(f"-{value}") or f"-{value}-" in name)
    return False


def label_studies(studies: list[dict]) -> None:
    """Give each study ``label`` (what sets it apart from the others it is shown with: its name,
    the overrides the others do not share, else the config keys that differ) and ``slug`` (a
    unique file-name form of it)."""
    names = [s["meta"]["study"]["name"] for s in studies]
    sets = [set(s["overrides"]) for s in studies]
    common = set.intersection(*sets) if sets else set()
    diff_cfg: list[list[str]] = [[] for _ in studies]
    if len(studies) > 1:
        flats = [_config_keys(s["config"]) for s in studies]
        keys = sorted(set().union(*flats))
        differing = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        for i, f in enumerate(flats):
            diff_cfg[i] = [f"{k}={json.loads(f[k]) if k in f else 'unset'}" for k in differing]
    shared = common if len(studies) > 1 else set()
    owns = [
        [o for o in s["overrides"] if o not in shared and not _named_by(o, name)]
        for s, name in zip(studies, names, strict=True)
    ]
    for i, s in enumerate(studies):
        parts = owns[i]
        same_name = [j for j, n in enumerate(names) if n == names[i]]
        if not parts and len(same_name) > 1 and not any(owns[j] for j in same_name):
            # no overrides recorded to tell them apart: the config keys that differ
            parts = diff_cfg[i][:3] + (["..."] if len(diff_cfg[i]) > 3 else [])
        s["label"] = " ".join([names[i], *parts]) if parts else names[i]
    seen: dict[str, int] = {}
    for s in studies:
        base = slug(s["label"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        s["slug"] = base if n == 0 else f"{base}-{n + 1}"
    # a label must tell the studies apart; a duplicate gets its folder's name
    labels = [s["label"] for s in studies]
    for s in studies:
        if labels.count(s["label"]) > 1:
            s["label"] = f"{s['label']} ({s['dir'].name})"


def slug(text: str, limit: int = 80) -> str:
    """A file/folder-name form of ``text`` (deterministic; long ones end in a short hash)."""

    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text.strip()).strip("_") or "report"
    if len(s) > limit:
        s = s[: limit - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return s


def inputs_slug(studies: list[dict], runs: list[dict]) -> str:
    """The report folder name of an inputs set: the study's label, or the studies' and runs'
    names joined with ``+``."""
    parts = [s["slug"] for s in studies] + [slug(r["dir"].name) for r in runs]
    return slug("+".join(parts))
