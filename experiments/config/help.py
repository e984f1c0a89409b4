"""``--help`` of the apps: what each does, the config groups its primary config takes with their
options (read from ``experiments/conf/``), the flags."""

from __future__ import annotations

import os

from experiments.config.schemas import CONF_DIR

#: what each app's ``--help`` says (the config groups are listed from its config)
APP_HELP = {
    "replay": "Replay one trace through one cluster design (simulated; no GPU).",
    "study": "The paper's design comparisons (iso-power, iso-cost, ...) over cached simulated "
    "points, then the report.",
    "report": "Write report.md and figures from run and study folders.",
    "characterize": "Profile prefill and decode of one model shard on one GPU.",
}


def _app_groups(config_name: str) -> list[str]:
    """The config groups the app's primary config takes (its defaults list, ``group@pkg``
    entries under their group), in order."""
    import yaml

    with open(os.path.join(CONF_DIR, f"{config_name}.yaml")) as f:
        doc = yaml.safe_load(f) or {}
    groups: list[str] = []
    for entry in doc.get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        for k in entry:
            k = k.replace("override ", "").strip().lstrip("/")
            g, _, pkg = k.partition("@")
            if pkg:  # e.g. design@designs.baseline-a100: set as design@designs.<key>=OPTION
                g = f"{g}@{pkg.rsplit('.', 1)[0]}.<key>" if "." in pkg else f"{g}@{pkg}"
            if g.startswith("hydra") or g in groups:
                continue
            if os.path.isdir(os.path.join(CONF_DIR, g.split("@", 1)[0])):
                groups.append(g)
    return groups


def _options(group: str) -> list[str]:
    d = os.path.join(CONF_DIR, group)
    return sorted(n[:-5] for n in os.listdir(d) if n.endswith(".yaml") and n != "schema.yaml")


def app_help(config_name: str, prog: str) -> str:
    """``--help`` text: what the app does, the groups it takes with their options, the flags."""
    import textwrap

    lines = [
        *textwrap.wrap(f"{prog}: {APP_HELP.get(config_name, '')}".rstrip(), 100),
        "",
        f"usage: {prog} [GROUP=OPTION ...] [KEY=VALUE ...]   (-m: one job per value of a,b,c)",
        "",
        "config groups (GROUP=OPTION):",
    ]
    groups = _app_groups(config_name)
    width = max([len(g) for g in groups] + [10]) + 2
    for g in groups:
        opts = ", ".join(_options(g.split("@", 1)[0]))
        lines += textwrap.wrap(
            opts, 98, initial_indent=f"  {g:<{width}}", subsequent_indent=" " * (width + 2)
        )
    lines += [
        "",
        "any key of the composed config can be set (KEY=VALUE); see them all with",
        f"  {prog} --cfg job",
        "flags: --cfg job|hydra|all, --info, -m/--multirun, --hydra-help",
    ]
    return "\n".join(lines)
