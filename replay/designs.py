"""Cluster designs (paper Sec. V): which machines, how many, in which pool.

A :class:`Design` is either a *baseline* (every machine runs both phases with mixed continuous
batching: ``machines=N`` of one spec) or a *split* design (Splitwise: ``prompt_machines`` of
``prompt_spec`` and ``token_machines`` of ``token_spec``; a mixed pool grows and shrinks with
load). Machines are 8-GPU DGX nodes running one TP instance (``tp``).

Named designs (:data:`DESIGNS`): ``baseline-a100``, ``baseline-h100``, ``baseline-h200``,
``splitwise-aa``, ``splitwise-hh``, ``splitwise-ha`` (H100 prompt, A100 token),
``splitwise-hhcap`` (token machines ``dgx-h100-cap``), plus the generic ``baseline`` and
``splitwise`` that take the machine spec names explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from characterize.modeling.specs import SpecError, load_machine, load_model
from common.units import bytes_to_gb
from replay.errors import DesignError

# name -> (kind, prompt (or baseline) machine spec, token machine spec)
DESIGNS: dict[str, tuple[str, str | None, str | None]] = {
    "baseline-a100": ("baseline", "dgx-a100", None),
    "baseline-h100": ("baseline", "dgx-h100", None),
    "baseline-h200": ("baseline", "dgx-h200", None),
    "splitwise-aa": ("split", "dgx-a100", "dgx-a100"),
    "splitwise-hh": ("split", "dgx-h100", "dgx-h100"),
    "splitwise-ha": ("split", "dgx-h100", "dgx-a100"),
    "splitwise-hhcap": ("split", "dgx-h100", "dgx-h100-cap"),
    "baseline": ("baseline", None, None),
    "splitwise": ("split", None, None),
}


@dataclass(frozen=True)
class Design:
    """A cluster: machine specs and counts per pool. Costs in $/hour, power in watts.

    For a baseline design ``token_machines == 0`` and ``token_spec is None``: the
    ``prompt_machines`` machines of ``prompt_spec`` run both phases.
    """

    name: str
    kind: str  # "baseline" | "split"
    model: str
    prompt_spec: str
    prompt_machines: int
    token_spec: str | None = None
    token_machines: int = 0
    tp: int = 8
    kv_reserve_fraction: float = 0.1

    @property
    def is_split(self) -> bool:
        return self.kind == "split"

    @property
    def machine_specs(self) -> list[str]:
        """Spec name of every machine, prompt (or baseline) machines first."""
        out = [self.prompt_spec] * self.prompt_machines
        if self.is_split:
            out += [self.token_spec] * self.token_machines
        return out

    @property
    def num_machines(self) -> int:
        return len(self.machine_specs)

    @property
    def cost_per_hour(self) -> float:
        """Sum of the machines' $/hour."""
        return float(sum(load_machine(s).cost_per_hour for s in self.machine_specs))

    @property
    def provisioned_power_w(self) -> float:
        """Sum of the machines' power budgets (caps applied), watts."""
        return float(sum(load_machine(s).power_budget_w for s in self.machine_specs))

    def describe(self) -> dict:
        """Plain dict for summary.json."""
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "tp": self.tp,
            "prompt_spec": self.prompt_spec,
            "prompt_machines": self.prompt_machines,
            "token_spec": self.token_spec,
            "token_machines": self.token_machines,
            "kv_reserve_fraction": self.kv_reserve_fraction,
            "cost_per_hour": self.cost_per_hour,
            "provisioned_power_w": self.provisioned_power_w,
        }

    def validate(self) -> None:
        """Raise a one-line DesignError when this design cannot run."""
        try:
            model = load_model(self.model)
            specs = (
                {s: load_machine(s) for s in set(self.machine_specs)} if self.num_machines else {}
            )
        except SpecError as e:
            raise DesignError(f"design '{self.name}': {e}") from None
        if self.is_split:
            if self.prompt_machines < 1:
                raise DesignError(f"design '{self.name}': needs at least one prompt machine")
            if self.token_machines < 1:
                raise DesignError(f"design '{self.name}': needs at least one token machine")
        elif self.prompt_machines < 1:
            raise DesignError(f"design '{self.name}': needs at least one machine (machines=N)")
        if not 0.0 <= self.kv_reserve_fraction < 1.0:
            raise DesignError(
                f"design '{self.name}': kv_reserve_fraction {self.kv_reserve_fraction} "
                "must be in [0, 1)"
            )
        for name, spec in specs.items():
            cap = spec.kv_capacity_tokens(model, self.kv_reserve_fraction)
            if cap <= 0:
                raise DesignError(
                    f"design '{self.name}': model '{self.model}' does not fit machine '{name}' "
                    f"(weights {bytes_to_gb(model.weight_bytes):.0f} GB, usable memory "
                    f"{bytes_to_gb(spec.memory_bytes * (1 - self.kv_reserve_fraction)):.0f} GB)"
                )


def make_design(
    name: str,
    model: str,
    prompt_machines: int = 0,
    token_machines: int = 0,
    *,
    machines: int | None = None,
    prompt_spec: str | None = None,
    token_spec: str | None = None,
    machine_spec: str | None = None,
    tp: int = 8,
    kv_reserve_fraction: float = 0.1,
) -> Design:
    """Build and validate a design.

    Baselines take ``machines=N`` (or ``prompt_machines``); split designs take
    ``prompt_machines`` and ``token_machines``. ``prompt_spec`` / ``token_spec`` (split) and
    ``machine_spec`` (baseline) override the named design's machine specs; the generic names
    ``baseline`` and ``splitwise`` require them. Raises :class:`DesignError` (one line).
    """
    if name not in DESIGNS:
        raise DesignError(f"unknown design '{name}' (known: {', '.join(DESIGNS)})")
    kind, p_default, t_default = DESIGNS[name]
    if kind == "baseline":
        if token_machines:
            raise DesignError(f"design '{name}': a baseline has no token pool (use machines=N)")
        n = machines if machines is not None else prompt_machines
        spec = machine_spec or prompt_spec or p_default
        if spec is None:
            raise DesignError(f"design '{name}': needs machine_spec (e.g. 'dgx-h100')")
        design = Design(name, kind, model, spec, int(n), None, 0, tp, kv_reserve_fraction)
    else:
        if machines is not None:
            raise DesignError(
                f"design '{name}': a split design takes prompt_machines and token_machines, "
                "not machines"
            )
        p_spec = prompt_spec or p_default
        t_spec = token_spec or t_default
        if p_spec is None or t_spec is None:
            raise DesignError(f"design '{name}': needs prompt_spec and token_spec")
        design = Design(
            name,
            kind,
            model,
            p_spec,
            int(prompt_machines),
            t_spec,
            int(token_machines),
            tp,
            kv_reserve_fraction,
        )
    design.validate()
    return design
