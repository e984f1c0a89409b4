"""The typed config of ``splitbench-validate``: :class:`ValidateConfig`, its sections (one module
each under :mod:`experiments.validation.schema`), and the config from plain containers.

These dataclasses are the schema Hydra composes ``conf/validate.yaml`` into
(``experiments.config.schemas.ValidateApp``), so a misspelt key or a wrongly typed value (a list where a
number goes, a number where a section goes) fails at composition, naming the key. What types
cannot say is checked by :meth:`ValidateConfig.check`, before anything starts: every value, every
cross-reference (ports differ, cores exist, loads fit the context), the model folder against the
model spec. Each failure is an :class:`~experiments.errors.ExperimentError` whose one line starts
with the dotted key (``loads[2].prompt_scale: must be > 0, got -1``).

Every default is written once, in the section dataclasses (the YAML sets only what differs from
it): the ports of the deployment, for example, are those of :class:`DeployConfig`. Model shape
facts (layers, KV heads, head size, KV bytes per token, vocabulary) come from the model spec
``model.name`` (``characterize/modeling/specs/models``), never from this config. No omegaconf or
Hydra here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from experiments.errors import ExperimentError
from experiments.validation.schema.checks import (
    DESIGNS,
    NAME,
    at_least,
    check_cpus,
    need,
    parse_cpus,
    pos,
)
from experiments.validation.schema.deploy import ConnectorConfig, DeployConfig, InstanceConfig
from experiments.validation.schema.judging import CompareConf, LadderConf, SloConf
from experiments.validation.schema.loads import LoadConf, LoadDefaults
from experiments.validation.schema.measure import CalibrateConf, ProbesConf, ProfileConf
from experiments.validation.schema.model import ModelConf, check_model_dir
from experiments.validation.schema.run import LoadgenConf, PreflightConf, SimulateConf


@dataclass
class ValidateConfig:
    name: str = "tiny-cpu"  # the run dir's name
    # baseline: one co-located vLLM; baseline2: two, one per core, behind the router (the
    # disaggregated design's resources); splitwise: prefill + decode + proxy
    designs: list[str] = field(default_factory=lambda: ["baseline", "baseline2", "splitwise"])
    repeats: int = 3
    seed: int = 0
    model: ModelConf = field(default_factory=ModelConf)
    loads: list[LoadConf] = field(default_factory=list)  # (plain mappings: built by check())
    load_defaults: LoadDefaults = field(default_factory=LoadDefaults)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    calibrate: CalibrateConf = field(default_factory=CalibrateConf)
    probes: ProbesConf = field(default_factory=ProbesConf)
    profile: ProfileConf = field(default_factory=ProfileConf)
    simulate: SimulateConf = field(default_factory=SimulateConf)
    loadgen: LoadgenConf = field(default_factory=LoadgenConf)
    preflight: PreflightConf = field(default_factory=PreflightConf)
    ladder: LadderConf = field(default_factory=LadderConf)
    compare: CompareConf = field(default_factory=CompareConf)
    report_dir: str | None = None

    def check(self) -> ValidateConfig:
        """Every value and cross-reference (module doc); returns self."""
        need(len(self.designs) > 0, "designs", "must be a non-empty list")
        for i, d in enumerate(self.designs):
            need(d in DESIGNS, f"designs[{i}]",
                 f"unknown design '{d}' (known: baseline, splitwise)")  # fmt: skip
        need(len(set(self.designs)) == len(self.designs), "designs", "a design is listed twice")
        at_least(self.repeats, 1, "repeats")
        at_least(self.seed, 0, "seed")
        need(bool(NAME.match(self.name)), "name", f"must be a short name, got {self.name!r}")
        self.deploy.check(self.designs)
        self.model.check(self.deploy.dtype)
        mml = self.deploy.max_model_len
        spec = self.model.spec()
        need(mml <= spec.max_context_tokens, "deploy.max_model_len",
             f"must be <= the model's context ({spec.max_context_tokens}), got {mml}")  # fmt: skip
        self.load_defaults.check("load_defaults", mml)
        need(len(self.loads) > 0 or self.ladder.enabled, "loads",
             "must be a non-empty list (or ladder.enabled=true)")  # fmt: skip
        if self.ladder.enabled:
            need(self.profile.mode != "skip" and self.simulate.enabled, "ladder.enabled",
                 "the ladder is placed from the simulator: needs profile.mode measure or "
                 "source and simulate.enabled")  # fmt: skip
        self.loads = [
            ld if isinstance(ld, LoadConf) else _build(LoadConf, ld, f"loads[{i}]")
            for i, ld in enumerate(self.loads)
        ]
        names: set[str] = set()
        for i, ld in enumerate(self.loads):
            k = f"loads[{i}]"
            need(bool(NAME.match(ld.name or "")), f"{k}.name",
                 f"must be a short name (letters, digits, -_.), got {ld.name!r}")  # fmt: skip
            need(ld.name not in names, f"{k}.name", f"duplicate load name '{ld.name}'")
            names.add(ld.name)
            pos(ld.rate, f"{k}.rate")
            ld.resolved(self.load_defaults).check(k, mml)
        self.calibrate.check(mml)
        self.probes.check(mml, min(self.deploy.colocated.max_num_seqs,
                                   self.deploy.decode.max_num_seqs))
        self.profile.check()
        self.simulate.check(self.designs)
        self.loadgen.check()
        self.preflight.check()
        self.ladder.check()
        self.compare.check()
        return self

    def loads_resolved(self):
        """The :class:`~experiments.validation.workload.Load` of each entry of ``loads``."""
        from experiments.validation.workload import Load

        out = []
        for ld in self.loads:
            r = ld.resolved(self.load_defaults)
            vals = {f.name: getattr(r, f.name) for f in fields(LoadDefaults)}
            vals["max_context"] = int(r.max_context or self.deploy.max_model_len)
            out.append(Load(name=ld.name, rate=float(ld.rate), seed=int(self.seed), **vals))
        return out


def _build(cls, d, key: str):
    """``cls(**d)`` with nested sections built too; unknown keys named ``key.k``."""
    if not isinstance(d, dict):
        raise ExperimentError(f"{key}: must be a mapping, got {d!r}")
    names = {f.name for f in fields(cls)}
    kw = {}
    for k, v in d.items():
        sub_key = f"{key}.{k}" if key else k
        need(k in names, sub_key, "unknown key")
        sub = _NESTED.get((cls, k))
        kw[k] = _build(sub, v, sub_key) if sub is not None and v is not None else v
    return cls(**kw)


def from_plain(data: dict) -> ValidateConfig:
    """A ValidateConfig from plain containers (loads stay mappings until :meth:`check`)."""
    return _build(ValidateConfig, dict(data), "")


_NESTED = {
    (ValidateConfig, "model"): ModelConf,
    (ValidateConfig, "load_defaults"): LoadDefaults,
    (ValidateConfig, "deploy"): DeployConfig,
    (ValidateConfig, "calibrate"): CalibrateConf,
    (ValidateConfig, "probes"): ProbesConf,
    (ValidateConfig, "profile"): ProfileConf,
    (ValidateConfig, "simulate"): SimulateConf,
    (ValidateConfig, "loadgen"): LoadgenConf,
    (ValidateConfig, "preflight"): PreflightConf,
    (ValidateConfig, "ladder"): LadderConf,
    (ValidateConfig, "compare"): CompareConf,
    (DeployConfig, "colocated"): InstanceConfig,
    (DeployConfig, "colocated2"): InstanceConfig,
    (DeployConfig, "prefill"): InstanceConfig,
    (DeployConfig, "decode"): InstanceConfig,
    (DeployConfig, "connector"): ConnectorConfig,
    (LadderConf, "slo"): SloConf,
}


__all__ = [
    "ValidateConfig", "from_plain", "DESIGNS", "parse_cpus", "check_cpus", "check_model_dir",
    "ModelConf", "LoadDefaults", "LoadConf", "InstanceConfig", "ConnectorConfig", "DeployConfig",
    "CalibrateConf", "ProbesConf", "ProfileConf", "SimulateConf", "LoadgenConf", "PreflightConf",
    "SloConf", "LadderConf", "CompareConf",
]  # fmt: skip
