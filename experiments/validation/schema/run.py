"""``simulate`` (the simulator as the deployment), ``loadgen`` (the real runs' client) and
``preflight`` (the machine must be quiet)."""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.validation.schema.checks import DESIGNS, at_least, check_cpus, need, pos

ON_BUSY = ("refuse", "flag")
SENTINEL_AS = ("overhead", "scale")  # simulate.speed_sentinel_as (experiments.validation.sentinel)
DECODE_LEG_AS = ("work", "latency")  # simulate.decode_leg_as
ARRIVAL_AS = ("latency", "work", "auto")  # simulate.arrival_as


@dataclass
class SimulateConf:
    enabled: bool = True
    gpu: str = "cpu"  # the replay's gpu group
    profile_gpu: str = "cpu"  # the profile rows' gpu key (slowdown reference)
    machine_policy: dict[str, str] = field(
        default_factory=lambda: {"baseline": "vllm", "baseline2": "vllm", "splitwise": "vllm"}
    )
    default_max_num_batched_tokens: int = 2048  # vLLM's OpenAI-server default on a CPU
    # each rung simulated with the engine's speed of the moment, as its speed sentinel measured
    # it before and after the rung (experiments.validation.sentinel)
    speed_sentinel: bool = True
    # how: overhead (the sentinel's excess gap added to serving.iteration_s, no engine time
    # scaled) | scale (every engine time times its factor): experiments.validation.sentinel
    speed_sentinel_as: str = "overhead"
    # the KV calibration's decode leg (splitwise, vllm policy): work on the decode instance
    # (serving.decode_work_*: its API server shares the decode engine's cores, as deployed on a
    # CPU) | latency (serving.decode_leg_*: a delay before the decode instance's queue)
    decode_leg_as: str = "work"
    # alpha's arrival terms (co-located designs): latency (serving.arrival_*) | work
    # (serving.arrival_work_*: the instance's work per request it admits) | auto (work where
    # the design's API servers run on their engines' cores: baseline2 on 2 cores; the baseline's
    # run on a free core; docs/serving.md says why auto is the default)
    arrival_as: str = "auto"
    overrides: list[str] = field(default_factory=list)
    designs: dict[str, list[str]] = field(default_factory=lambda: {"baseline": [],
                                                                   "splitwise": []})  # fmt: skip

    def check(self, designs: list[str], key: str = "simulate") -> None:
        for d in designs:
            need(d in self.machine_policy, f"{key}.machine_policy.{d}", "must be set")
        for d in self.designs:
            need(d in DESIGNS, f"{key}.designs.{d}", "unknown design (known: baseline, "
                 "splitwise)")  # fmt: skip
        at_least(self.default_max_num_batched_tokens, 1, f"{key}.default_max_num_batched_tokens")
        for name, allowed in (("speed_sentinel_as", SENTINEL_AS), ("decode_leg_as", DECODE_LEG_AS),
                              ("arrival_as", ARRIVAL_AS)):  # fmt: skip
            v = getattr(self, name)
            need(v in allowed, f"{key}.{name}", f"must be one of {', '.join(allowed)}, got {v!r}")


@dataclass
class LoadgenConf:
    overrides: list[str] = field(default_factory=list)  # extra splitbench-loadgen overrides
    # the load generator's cores (null: the cores no engine of the design computes on, else
    # the first engine's cores: deploy.client_cores)
    cpus: str | None = None
    timeout_s: float = 600.0  # bound on one load-generator run

    def check(self, key: str = "loadgen") -> None:
        check_cpus(self.cpus, f"{key}.cpus")
        pos(self.timeout_s, f"{key}.timeout_s")
        for i, o in enumerate(self.overrides):
            need("=" in o, f"{key}.overrides[{i}]", f"not a KEY=VALUE override: {o!r}")


@dataclass
class PreflightConf:
    """The machine must be quiet: a busy one makes the real side slow for reasons the
    simulator does not model."""

    max_loadavg: float = 0.5  # /proc/loadavg's 1-minute value at most, before each design
    on_busy: str = "refuse"  # refuse | flag (run anyway, marked in every record)
    # wait up to this long for the load to fall below max_loadavg before refusing (the previous
    # design's servers just stopped; the 1-minute average needs about 2 min to fall from 2 to 0.5)
    settle_s: float = 240.0

    def check(self, key: str = "preflight") -> None:
        need(self.max_loadavg >= 0, f"{key}.max_loadavg", f"must be >= 0, got {self.max_loadavg}")
        need(self.settle_s >= 0, f"{key}.settle_s", f"must be >= 0, got {self.settle_s}")
        need(self.on_busy in ON_BUSY, f"{key}.on_busy",
             f"must be refuse or flag, got '{self.on_busy}'")  # fmt: skip
