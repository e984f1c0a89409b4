"""What the report says about a loaded study (:func:`experiments.report.inputs.load_inputs`'s
dicts): the command that made it, its model, how its variants held each design, its variant
groups, the display names of its traces and baselines."""

from __future__ import annotations

import shlex
from functools import cache

from experiments.study.tables import HEADLINE_BASELINES

#: variant groups of each kind of section (the rest are modelling assumptions: sensitivity)
SEED_GROUPS = ("seed",)
TOKEN_GROUPS = ("prompt length", "output length")
SCHEDULER_GROUPS = ("mixed pool", "routing")
PREFIX_GROUPS = ("prefix caching",)

__all__ = ["HEADLINE_BASELINES"]


def study_command(s: dict) -> str:
    """The command that made study ``s``: ``splitbench-study`` and its recorded overrides (output
    places left out, as in the study's label)."""
    return " ".join(["splitbench-study", *(shlex.quote(o) for o in s["overrides"])])


def made_by(s: dict, *tables: str) -> str:
    names = ", ".join(f"`{t}.csv`" for t in tables)
    return f"Made by `{study_command(s)}` (study `{s['label']}`, {names})."


def model_name(s: dict) -> str:
    return str(s["meta"]["model"].get("name", "?"))


def model_display(s: dict) -> str:
    m = s["meta"]["model"]
    return str(m.get("display") or m.get("name", "?"))


def variant_budget(s: dict) -> str:
    """The budget whose configurations the study's variants hold (``study.variant_budget``)."""
    return s["meta"]["study"].get("variant_budget", "iso-power")


def held_text(s: dict) -> str:
    """How the study's variants held each design (re-provisioned or at its best configuration)."""
    bud = variant_budget(s)
    if s["meta"]["study"].get("reprovision"):
        return f"each design's configuration re-searched within the `{bud}` budget"
    return (
        f"each design held at its best `{bud}` configuration of the study's own (default) "
        "search, its max rate under the SLO re-searched"
    )


@cache
def design_display(key: str) -> str:
    """A named design's display name from its config (``conf/design/<key>.yaml``), else ``key``."""
    import os

    import yaml

    from experiments.config.schemas import CONF_DIR

    try:
        with open(os.path.join(CONF_DIR, "design", f"{key}.yaml")) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return key
    return str(data.get("display") or key) if isinstance(data, dict) else key


def vs_display(s: dict, key: str) -> str:
    """Baseline ``key``'s display name as the study shows it (its budget table), else its
    config's."""
    b = s["budget"]
    if not b.empty and key in set(b["design"]):
        return str(b.loc[b["design"] == key, "design_display"].iloc[0])
    return design_display(key)


def trace_names(s: dict) -> dict[str, str]:
    """{trace key: display name} over every table of the study that has both."""
    out: dict[str, str] = {}
    for k in ("budget", "variants", "mismatch", "load", "batch"):
        t = s[k]
        if not t.empty and "trace_display" in t.columns:
            out.update(zip(t["trace"], t["trace_display"], strict=False))
    return out


def variant_groups(s: dict) -> list[str]:
    v = s["variants"]
    return [] if v.empty else list(dict.fromkeys(v["group"].astype(str)))


def sensitivity_groups(s: dict) -> list[str]:
    skip = (*SEED_GROUPS, *TOKEN_GROUPS, *SCHEDULER_GROUPS, *PREFIX_GROUPS)
    return [g for g in variant_groups(s) if g not in skip]


def has_seeds(s: dict) -> bool:
    return any(g in SEED_GROUPS for g in variant_groups(s))
