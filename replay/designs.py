"""Cluster designs (paper Sec. V): which nodes, how many, in which pool, and their instances.

:class:`DesignConfig` is a design as configured: the schema of the ``design`` config group
(registered by ``experiments.config.schemas``; the named designs live only in
``experiments/conf/design/*.yaml``). Its ``__post_init__`` checks every option once (one-line
:class:`DesignError` starting with ``design.<key>``). :func:`make_design` turns it, with the
model, its tensor parallelism and the memory reserve, into a :class:`Design`, the object the
simulator runs.

The node/instance model (DESIGN.md "Cluster designs"): a machine spec is a node of
``num_gpus`` devices (a DGX: 8). An instance of the model uses ``tp`` devices, so a node runs
``num_gpus // tp`` instances, each with its own KV memory (``tp`` devices' memory, less the
reserve, less the weights), its own queue and scheduler, and ``tp`` devices' share of the node's
InfiniBand. Design counts (``machines``, ``prompt_machines``, ``token_machines``) are nodes;
cost and provisioned power are per node. With ``tp`` = the node's devices (the paper's TP8 on a
DGX) a node is one instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from characterize.modeling.specs import SpecError, list_specs, load_machine, load_model
from common.units import bytes_to_gb, gbps_to_bytes_per_s
from replay.errors import DesignError, need

KINDS = ("baseline", "splitwise")


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


@dataclass
class DesignConfig:
    """A cluster design as configured (counts are nodes; None: chosen by a study's search)."""

    name: str = _f("design", "design name (its file in conf/design)")
    display: str = _f("", "name shown in tables and figures (e.g. Splitwise-HH)")
    kind: str = _f("baseline", "'baseline' (every machine runs both phases) or 'splitwise'")
    machine: str | None = _f(None, "baseline: machine (node) spec name of every machine")
    prompt_machine: str | None = _f(None, "splitwise: machine spec name of the prompt pool")
    token_machine: str | None = _f(None, "splitwise: machine spec name of the token pool")
    machines: int | None = _f(None, "baseline: number of nodes (>= 1)")
    prompt_machines: int | None = _f(None, "splitwise: nodes in the prompt pool (>= 1)")
    token_machines: int | None = _f(None, "splitwise: nodes in the token pool (>= 1)")
    mixed_pool: bool = _f(True, "splitwise: let machines move through the mixed pool under load")
    machine_policy: str | None = _f(
        None,
        "machine-level policy of every machine of this design (every pool); null: "
        "scheduler.machine_policy. 'vllm': vLLM V1's scheduler (replay.vllm_policy; on a "
        "Splitwise design, vLLM's disaggregated serving)",
    )

    def __post_init__(self) -> None:
        k = "design"
        need(self.kind in KINDS, f"{k}.kind", f"unknown value '{self.kind}' (known: baseline, splitwise)", DesignError)  # fmt: skip
        known = list_specs("machines")
        if self.kind == "baseline":
            specs, counts = ("machine",), ("machines",)
            other = ("prompt_machine", "token_machine", "prompt_machines", "token_machines")
            why = "a baseline has no prompt/token pools (use machine and machines)"
        else:
            specs, counts = (
                ("prompt_machine", "token_machine"),
                ("prompt_machines", "token_machines"),
            )
            other = ("machine", "machines")
            why = "a Splitwise design has prompt/token pools (prompt_machine, token_machine)"
        for s in specs:
            v = getattr(self, s)
            need(v is not None, f"{k}.{s}", f"a {self.kind} design needs it", DesignError)
            need(v in known, f"{k}.{s}", f"unknown machine spec '{v}' (known: {', '.join(known)})", DesignError)  # fmt: skip
        for c in counts:
            v = getattr(self, c)
            ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
            need(ok, f"{k}.{c}", f"must be >= 1, got {v!r}", DesignError)
        for o in other:
            need(getattr(self, o) is None, f"{k}.{o}", why, DesignError)
        _check_policy(self.machine_policy, self.kind)

    @property
    def is_split(self) -> bool:
        """Whether its phases run on separate pools (a Splitwise design)."""
        return len(self.count_keys) > 1

    @property
    def count_keys(self) -> tuple[str, ...]:
        """The keys of its node counts, one per pool: ``("machines",)`` (a baseline) or
        ``("prompt_machines", "token_machines")`` (prompt pool first)."""
        return _SHAPES[self.kind][1]

    @property
    def pool_names(self) -> tuple[str, ...]:
        """Its pools, in :attr:`counts` order: ``("machines",)`` or ``("prompt", "token")``."""
        return _SHAPES[self.kind][2]

    @property
    def machine_specs(self) -> tuple[str, ...]:
        """The machine (node) spec of each pool, in :attr:`counts` order."""
        return tuple(getattr(self, k) for k in _SHAPES[self.kind][0])

    @property
    def counts(self) -> tuple[int | None, ...]:
        """The node counts: (machines,) or (prompt_machines, token_machines)."""
        return tuple(getattr(self, k) for k in self.count_keys)

    def with_counts(self, counts) -> DesignConfig:
        """A copy with other node counts (one per pool, in :attr:`counts` order)."""
        counts = tuple(counts)
        need(len(counts) == len(self.count_keys), "design.counts",
             f"a {self.kind} design has {len(self.count_keys)} pool(s), got {len(counts)} "
             "counts", DesignError)  # fmt: skip
        return replace(self, **{k: int(n) for k, n in zip(self.count_keys, counts, strict=True)})

    def count_fields(self, counts) -> dict[str, int]:
        """``counts`` (one per pool) by their keys: ``{"prompt_machines": 2, ...}``."""
        return dict(zip(self.count_keys, counts, strict=True))


#: per kind: the spec keys, count keys and pool names of its pools (in counts order)
_SHAPES = {
    "baseline": (("machine",), ("machines",), ("machines",)),
    "splitwise": (
        ("prompt_machine", "token_machine"),
        ("prompt_machines", "token_machines"),
        ("prompt", "token"),
    ),
}


@dataclass(frozen=True)
class Instance:
    """One model instance: its node, spec, home pool and per-instance resources."""

    node: int
    spec: str
    prompt_pool: bool  # splitwise: home pool is the prompt pool (else token); baseline: True
    kv_capacity_tokens: int
    network_bytes_per_s: float


@dataclass(frozen=True)
class Design:
    """A cluster: node specs and counts per pool. Costs in $/hour, power in watts (per node).

    For a baseline design ``token_machines == 0`` and ``token_spec is None``: the
    ``prompt_machines`` nodes of ``prompt_spec`` run both phases.
    """

    name: str
    kind: str  # "baseline" | "splitwise"
    model: str
    prompt_spec: str
    prompt_machines: int
    token_spec: str | None = None
    token_machines: int = 0
    tp: int = 8
    kv_reserve_fraction: float = 0.1
    mixed_pool: bool = True
    display: str = ""
    machine_policy: str | None = None  # every machine's policy; None: the scheduler's

    @property
    def is_split(self) -> bool:
        return self.kind == "splitwise"

    @property
    def machine_specs(self) -> list[str]:
        """Spec name of every node, prompt (or baseline) nodes first."""
        out = [self.prompt_spec] * self.prompt_machines
        if self.is_split:
            out += [self.token_spec] * self.token_machines
        return out

    @property
    def num_machines(self) -> int:
        return len(self.machine_specs)

    def instances_per_node(self, spec_name: str) -> int:
        return load_machine(spec_name).num_gpus // self.tp

    def instances(self) -> list[Instance]:
        """Every model instance, node by node (prompt / baseline nodes first)."""
        model = load_model(self.model)
        out = []
        for node, s in enumerate(self.machine_specs):
            spec = load_machine(s)
            cap = instance_kv_capacity(spec, model, self.tp, self.kv_reserve_fraction)
            bw = self.tp * gbps_to_bytes_per_s(spec.infiniband_gbps_per_gpu)
            prompt = node < self.prompt_machines
            out += [Instance(node, s, prompt, cap, bw)] * (spec.num_gpus // self.tp)
        return out

    @property
    def cost_per_hour(self) -> float:
        """Sum of the nodes' $/hour."""
        return float(sum(load_machine(s).cost_per_hour for s in self.machine_specs))

    @property
    def provisioned_power_w(self) -> float:
        """Sum of the nodes' power budgets (caps applied), watts."""
        return float(sum(load_machine(s).power_budget_w for s in self.machine_specs))

    def describe(self) -> dict:
        """Plain dict for summary.json."""
        per_node = {s: self.instances_per_node(s) for s in sorted(set(self.machine_specs))}
        return {
            "name": self.name,
            "display": self.display or self.name,
            "kind": self.kind,
            "model": self.model,
            "tp": self.tp,
            "prompt_spec": self.prompt_spec,
            "prompt_machines": self.prompt_machines,
            "token_spec": self.token_spec,
            "token_machines": self.token_machines,
            "instances_per_node": per_node,
            "mixed_pool": self.mixed_pool,
            "machine_policy": self.machine_policy,
            "kv_reserve_fraction": self.kv_reserve_fraction,
            "cost_per_hour": self.cost_per_hour,
            "provisioned_power_w": self.provisioned_power_w,
        }

    def validate(self) -> None:
        """Raise a one-line DesignError when this design cannot run."""
        try:
            model = load_model(self.model)
            specs = {s: load_machine(s) for s in set(self.machine_specs)}
        except SpecError as e:
            raise DesignError(f"design '{self.name}': {e}") from None
        if self.is_split:
            need(self.prompt_machines >= 1, "design.prompt_machines", "needs at least one prompt machine", DesignError)  # fmt: skip
            need(self.token_machines >= 1, "design.token_machines", "needs at least one token machine", DesignError)  # fmt: skip
        else:
            need(self.prompt_machines >= 1, "design.machines", "needs at least one machine (machines=N)", DesignError)  # fmt: skip
        need(0.0 <= self.kv_reserve_fraction < 1.0, "scheduler.kv_reserve_fraction",
             f"must be in [0, 1), got {self.kv_reserve_fraction}", DesignError)  # fmt: skip
        _check_policy(self.machine_policy, self.kind)
        need(isinstance(self.tp, int) and self.tp >= 1, "model.tp", f"must be >= 1, got {self.tp}", DesignError)  # fmt: skip
        for name in sorted(specs):
            spec = specs[name]
            need(spec.num_gpus % self.tp == 0, "model.tp",
                 f"{self.tp} does not divide the {spec.num_gpus} GPUs of a '{name}' node", DesignError)  # fmt: skip
            cap = instance_kv_capacity(spec, model, self.tp, self.kv_reserve_fraction)
            if cap <= 0:
                usable = self.tp * spec.gpu.memory_bytes * (1 - self.kv_reserve_fraction)
                raise DesignError(
                    f"model.tp: {self.model} weights ({bytes_to_gb(model.weight_bytes):.0f} GB) do "
                    f"not fit one tp={self.tp} instance of '{name}' ({self.tp} x "
                    f"{bytes_to_gb(spec.gpu.memory_bytes):.0f} GB x (1 - "
                    f"scheduler.kv_reserve_fraction {self.kv_reserve_fraction:g}) = "
                    f"{bytes_to_gb(usable):.0f} GB)"
                )


def _check_policy(policy, kind: str) -> None:
    from replay.machine import MACHINE_POLICIES

    if policy is None:
        return
    known = tuple(MACHINE_POLICIES)
    need(policy in known, "design.machine_policy",
         f"unknown value '{policy}' (known: {', '.join(known)})", DesignError)  # fmt: skip


def instance_kv_capacity(spec, model, tp: int, reserve_fraction: float) -> int:
    """KV tokens of one tp-device instance: tp x device memory x (1 - reserve) - weights, over
    KV bytes per token (<= 0: the model does not fit)."""
    free = tp * spec.gpu.memory_bytes * (1.0 - reserve_fraction) - model.weight_bytes
    return int(free // model.kv_bytes_per_token)


def make_design(
    config: DesignConfig, model: str, *, tp: int = 8, kv_reserve_fraction: float = 0.1
) -> Design:
    """The runnable :class:`Design` of a configured design (every count must be set)."""
    c = config
    for key, v in zip(c.count_keys, c.counts, strict=True):
        need(v is not None, f"design.{key}", "set the number of nodes", DesignError)
    if c.kind == "baseline":
        d = Design(c.name, c.kind, model, c.machine, int(c.machines), None, 0, tp,
                   kv_reserve_fraction, c.mixed_pool, c.display, c.machine_policy)  # fmt: skip
    else:
        d = Design(c.name, c.kind, model, c.prompt_machine, int(c.prompt_machines),
                   c.token_machine, int(c.token_machines), tp, kv_reserve_fraction,
                   c.mixed_pool, c.display, c.machine_policy)  # fmt: skip
    d.validate()
    return d


def baseline(
    machine: str, machines: int, model: str, *, name: str = "baseline",
    machine_policy: str | None = None, **kw,
) -> Design:  # fmt: skip
    """A baseline of ``machines`` nodes of spec ``machine`` (kw: tp, kv_reserve_fraction);
    ``machine_policy="vllm"``: vLLM V1 chunked prefill on every machine."""
    cfg = DesignConfig(name, kind="baseline", machine=machine, machines=machines,
                       machine_policy=machine_policy)  # fmt: skip
    return make_design(cfg, model, **kw)


def splitwise(
    prompt_machine: str,
    token_machine: str,
    prompt_machines: int,
    token_machines: int,
    model: str,
    *,
    name: str = "splitwise",
    mixed_pool: bool = True,
    machine_policy: str | None = None,
    **kw,
) -> Design:
    """A Splitwise design (kw: tp, kv_reserve_fraction); ``machine_policy="vllm"``: vLLM's
    disaggregated serving (replay.vllm_policy)."""
    cfg = DesignConfig(name, kind="splitwise", prompt_machine=prompt_machine,
                       token_machine=token_machine, prompt_machines=prompt_machines,
                       token_machines=token_machines, mixed_pool=mixed_pool,
                       machine_policy=machine_policy)  # fmt: skip
    return make_design(cfg, model, **kw)
