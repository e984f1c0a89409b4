"""Test helper: a named design from its one definition, experiments/conf/design/<name>.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from replay.designs import DesignConfig, make_design

CONF = Path(__file__).resolve().parent.parent / "experiments" / "conf" / "design"


def named_design(
    name: str,
    model: str,
    prompt_machines: int | None = None,
    token_machines: int | None = None,
    *,
    machines: int | None = None,
    tp: int = 8,
    kv_reserve_fraction: float = 0.1,
    mixed_pool: bool | None = None,
):
    """``make_design`` of the named design with its node counts replaced."""
    data = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    if data["kind"] == "baseline":
        data["machines"] = machines if machines is not None else prompt_machines
    else:
        data["prompt_machines"], data["token_machines"] = prompt_machines, token_machines
    if mixed_pool is not None:
        data["mixed_pool"] = mixed_pool
    return make_design(DesignConfig(**data), model, tp=tp, kv_reserve_fraction=kv_reserve_fraction)
