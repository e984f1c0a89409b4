"""A design's pools in a study's searches (per-machine power and cost from the machine specs,
count bounds from the search config) and a budget in W and $/h."""

from __future__ import annotations

from experiments.config import schemas
from experiments.provision import Pool

#: a pool's bounds in the search config, by pool name (replay.designs.DesignConfig.pool_names)
_POOL_BOUNDS = {
    "machines": ("machines_min", "machines_max"),
    "prompt": ("prompt_min", "prompt_max"),
    "token": ("token_min", "token_max"),
}


def pools_of(
    design: schemas.DesignConf, search: schemas.SearchConf, grid: tuple[int, ...] | None = None
) -> list[Pool]:
    """The design's pools with per-machine power (W) and cost ($/h) from the machine specs,
    and the search's bounds (``grid``: 1..n machines per pool: the heatmap's)."""
    from characterize.modeling.specs import load_machine

    bounds = (
        [(1, n) for n in grid]
        if grid
        else [tuple(getattr(search, k) for k in _POOL_BOUNDS[p]) for p in design.pool_names]
    )
    out = []
    for name, spec, (lo, hi) in zip(design.pool_names, design.machine_specs, bounds, strict=True):
        m = load_machine(spec)
        out.append(Pool(name, m.power_budget_w, m.cost_per_hour, lo, hi))
    return out


def budget_of(b: schemas.BudgetConf) -> dict:
    """A budget in W and $/h: ``reference_count`` x the reference machine's (from its spec)."""
    from characterize.modeling.specs import load_machine

    m = load_machine(b.reference_machine)
    return {
        "power_w": m.power_budget_w * b.reference_count if b.power else None,
        "cost_per_hour": m.cost_per_hour * b.reference_count if b.cost else None,
    }
