"""A study variant: the study's settings with a few dotted keys changed (``study.variants``).

The robustness, scheduler, sensitivity and seed studies each vary one thing at a time. A
variant names what it sets (``scheduler.mixed_batch: sequential``,
``profiles.adjust.overhead_scale: 2``, ``trace.prompt_scale: 0.5``, ``design.mixed_pool: false``,
``seed: 3``); :func:`apply_variant` returns the changed settings, each rebuilt through its own
dataclass, so a bad key or value fails with one line naming ``study.variants[i].set.<key>``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from experiments.config import schemas
from experiments.errors import ExperimentError

PREFIXES = ("scheduler", "profiles", "trace", "design", "seed")
APPLIES_TO = ("all", "baseline", "splitwise")


@dataclass
class Settings:
    """The settings a point depends on that a variant may change."""

    scheduler: schemas.SchedulerConf
    profiles: schemas.ProfilesConf
    trace: schemas.TraceConf
    design: schemas.DesignConf
    seed: int


def _set_dotted(d: dict, path: list[str], value: Any, key: str) -> None:
    for part in path[:-1]:
        if not isinstance(d.get(part), dict):
            raise ExperimentError(f"{key}: unknown key '{part}'")
        d = d[part]
    if path[-1] not in d:
        raise ExperimentError(f"{key}: unknown key '{path[-1]}'")
    d[path[-1]] = value


def _rebuild(obj, changes: list[tuple[list[str], Any]], key: str):
    """``obj`` (a config dataclass) with ``changes`` set, rebuilt by
    :func:`experiments.config.checks.to_object` so its checks run (nested dataclasses are rebuilt
    from their dicts by their parents' ``__post_init__``); errors name ``key``."""
    from experiments.config.checks import to_object

    d = asdict(obj)
    for path, value in changes:
        _set_dotted(d, path, value, f"{key}.{'.'.join(path)}")
    return to_object(d, key, type(obj))


def applies(variant: schemas.VariantConf, design: schemas.DesignConf) -> bool:
    """Whether ``variant`` changes ``design`` (its ``applies_to``)."""
    return variant.applies_to == "all" or variant.applies_to == design.kind


def apply_variant(variant: schemas.VariantConf, base: Settings, key: str) -> Settings:
    """``base`` with the variant's overrides (``key``: where the variant sits in the config,
    for errors). A design the variant does not apply to keeps its own settings."""
    if variant.applies_to not in APPLIES_TO:
        raise ExperimentError(
            f"{key}.applies_to: unknown value '{variant.applies_to}' "
            f"(known: {', '.join(APPLIES_TO)})"
        )
    if not applies(variant, base.design):
        return base
    groups: dict[str, list] = {p: [] for p in PREFIXES}
    seed = base.seed
    for dotted, value in variant.set.items():
        head, *rest = str(dotted).split(".")
        if head not in PREFIXES:
            raise ExperimentError(
                f"{key}.set.{dotted}: unknown setting (known: {', '.join(PREFIXES)})"
            )
        if head == "seed":
            if rest or isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ExperimentError(f"{key}.set.{dotted}: must be an integer >= 0")
            seed = int(value)
            continue
        if not rest:
            raise ExperimentError(f"{key}.set.{dotted}: name a key inside '{head}'")
        groups[head].append((rest, value))
    out = replace(base, seed=seed)
    for head in ("scheduler", "profiles", "trace", "design"):
        if groups[head]:
            out = replace(
                out, **{head: _rebuild(getattr(out, head), groups[head], f"{key}.set.{head}")}
            )
    return out
