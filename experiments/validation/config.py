"""The typed config of ``splitbench-validate``: one dataclass per section, each checking itself.

These dataclasses are the schema Hydra composes ``conf/validate.yaml`` into
(``experiments.config.schemas.ValidateApp``), so a misspelt key or a wrongly typed value (a list where a
number goes, a number where a section goes) fails at composition, naming the key. What types
cannot say is checked by :meth:`ValidateConfig.check`, before anything starts: every value, every
cross-reference (ports differ, cores exist, loads fit the context), the model folder against the
model spec. Each failure is an :class:`~experiments.errors.ExperimentError` whose one line starts
with the dotted key (``loads[2].prompt_scale: must be > 0, got -1``).

Every default is written here once (the YAML sets only what differs from it): the ports of the
deployment, for example, are those of :class:`DeployConfig`. Model shape facts (layers, KV heads,
head size, KV bytes per token, vocabulary) come from the model spec ``model.name``
(``characterize/modeling/specs/models``), never from this config. No omegaconf or Hydra here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments.errors import ExperimentError

DESIGNS = ("baseline", "baseline2", "splitwise")
PROFILE_MODES = ("measure", "source", "skip")
DEVICES = ("cpu", "cuda")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
ON_BUSY = ("refuse", "flag")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ExperimentError(f"{key}: {msg}")


def _number(v, key: str, integer: bool = False) -> None:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    _need(ok and not isinstance(v, bool), key,
          f"must be {'an integer' if integer else 'a number'}, got {v!r}")  # fmt: skip


def _pos(v: float | None, key: str, *, null: bool = False) -> None:
    if v is None:
        _need(null, key, "must be set")
        return
    _number(v, key)
    _need(v > 0, key, f"must be > 0, got {v:g}")


def _at_least(v: int | None, lo: int, key: str, *, null: bool = False) -> None:
    if v is None:
        _need(null, key, "must be set")
        return
    _number(v, key, integer=True)
    _need(v >= lo, key, f"must be >= {lo}, got {v}")


def parse_cpus(spec: str | int | list[int] | None) -> list[int] | None:
    """``"0"``, ``"0-1"``, ``"0,2"``, ``1`` or ``[0, 1]`` -> sorted core ids; None/"" -> None.

    ValueError on anything else (``"abc"``, ``"3-1"``, a negative id)."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, bool):
        raise ValueError(f"bad core list {spec!r}")
    if isinstance(spec, int):
        spec = [spec]
    if not isinstance(spec, str):
        cores = {int(c) for c in spec}
    else:
        cores = set()
        for part in spec.split(","):
            part = part.strip()
            if not re.fullmatch(r"\d+(-\d+)?", part):
                raise ValueError(f"bad core list {spec!r}")
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
            if b < a:
                raise ValueError(f"bad core range '{part}'")
            cores.update(range(a, b + 1))
    if not cores or min(cores) < 0:
        raise ValueError(f"bad core list {spec!r}")
    return sorted(cores)


def check_cpus(spec: str | None, key: str, *, null: bool = True) -> list[int] | None:
    """The cores of ``spec``; ExperimentError unless each is one this process may run on."""
    try:
        cores = parse_cpus(spec)
    except ValueError as e:
        raise ExperimentError(f"{key}: {e}") from None
    if cores is None:
        _need(null, key, 'must name cores (e.g. "0" or "0-1")')
        return None
    have = sorted(os.sched_getaffinity(0))
    bad = [c for c in cores if c not in have]
    _need(not bad, key, f"core(s) {', '.join(map(str, bad))} do not exist here (usable: "
          f"{','.join(map(str, have))})")  # fmt: skip
    return cores


# ---------------------------------------------------------------- model
@dataclass
class ModelConf:
    name: str = "tiny-llama-512"  # model spec (layers, heads, KV bytes, vocabulary ...)
    dir: str = ""  # the served folder (config.json + weights); built from the spec when build
    build: bool = True  # build a random-weight folder of the spec's shape (false: your own)
    seed: int = 0  # weight seed of a built folder

    def spec(self):
        from characterize.modeling.specs import SpecError, load_model

        try:
            return load_model(self.name)
        except SpecError as e:
            raise ExperimentError(f"model.name: {str(e).splitlines()[0]}") from None

    def check(self, dtype: str, key: str = "model") -> None:
        spec = self.spec()
        _need(bool(self.dir), f"{key}.dir", "must be set (a model folder)")
        _need(self.seed >= 0, f"{key}.seed", f"must be >= 0, got {self.seed}")
        _need(spec.family == "llama" or not self.build, f"{key}.build",
              f"can build only llama-family folders; spec '{spec.name}' is {spec.family}")  # fmt: skip
        _need(spec.hidden_size % spec.num_attention_heads == 0 or not self.build, f"{key}.name",
              "hidden_size must be a multiple of num_attention_heads to build the folder")  # fmt: skip
        if not self.build:
            check_model_dir(self.dir, spec, f"{key}.dir")
        nbytes = DTYPE_BYTES.get(dtype)
        if nbytes is not None and spec.kv_bytes_per_element != nbytes:
            raise ExperimentError(
                f"deploy.dtype: {dtype} ({nbytes} bytes) disagrees with model spec "
                f"'{spec.name}' (kv_bytes_per_element {spec.kv_bytes_per_element})"
            )


#: transformers config.json key -> ModelSpec field (the shape facts a served folder must share)
_HF_KEYS = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_kv_heads",
    "intermediate_size": "ffn_size",
    "vocab_size": "vocab_size",
}


def check_model_dir(path: str, spec, key: str = "model.dir") -> dict:
    """The folder's ``config.json``; ExperimentError when it is missing or its shape is not the
    spec's (the simulator and the calibration would price another model)."""
    import json

    f = Path(path) / "config.json"
    try:
        cfg = json.loads(f.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{key}: no config.json in {path}") from None
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{key}: {f}: not readable JSON ({e})") from None
    _need(isinstance(cfg, dict), key, f"{f}: not a JSON object")
    for hf, sf in _HF_KEYS.items():
        if hf in cfg and cfg[hf] != getattr(spec, sf):
            raise ExperimentError(
                f"{key}: {f}: {hf} = {cfg[hf]!r}, but model spec '{spec.name}' has {sf} = "
                f"{getattr(spec, sf)} (set model.name to this folder's spec)"
            )
    hd = cfg.get("head_dim") or (
        cfg["hidden_size"] // cfg["num_attention_heads"]
        if isinstance(cfg.get("hidden_size"), int) and cfg.get("num_attention_heads")
        else None
    )
    if hd is not None and hd != spec.head_dim:
        raise ExperimentError(f"{key}: {f}: head size {hd}, but model spec '{spec.name}' has "
                              f"head_dim = {spec.head_dim}")  # fmt: skip
    return cfg


# ---------------------------------------------------------------- loads
@dataclass
class LoadDefaults:
    """What every load takes unless it sets its own."""

    trace: str = "azure-conv-2023"
    duration_s: float = 60.0
    prompt_scale: float = 0.25  # tokens = max(1, round(tokens x scale)), capped, clipped
    output_scale: float = 0.25
    max_prompt_tokens: int | None = 2048
    max_output_tokens: int | None = 256
    max_context: int | None = None  # null: deploy.max_model_len
    arrival: str = "poisson"
    cv: float = 1.0

    def check(self, key: str, max_model_len: int) -> None:
        from traces.bundled import list_traces
        from traces.transforms import ARRIVALS

        for k in ("trace", "arrival"):
            _need(isinstance(getattr(self, k), str), f"{key}.{k}",
                  f"must be a string, got {getattr(self, k)!r}")  # fmt: skip
        known = list_traces()
        _need(self.trace in known or Path(self.trace).is_file(), f"{key}.trace",
              f"unknown trace '{self.trace}' (known: {', '.join(known)}, or a file)")  # fmt: skip
        _pos(self.duration_s, f"{key}.duration_s")
        _pos(self.prompt_scale, f"{key}.prompt_scale")
        _pos(self.output_scale, f"{key}.output_scale")
        _at_least(self.max_prompt_tokens, 1, f"{key}.max_prompt_tokens", null=True)
        _at_least(self.max_output_tokens, 1, f"{key}.max_output_tokens", null=True)
        if self.max_context is not None:
            _need(2 <= self.max_context <= max_model_len, f"{key}.max_context",
                  f"must be in 2..deploy.max_model_len ({max_model_len}), got "
                  f"{self.max_context}")  # fmt: skip
        _need(self.arrival in ARRIVALS, f"{key}.arrival",
              f"unknown arrival '{self.arrival}' (known: {', '.join(ARRIVALS)})")  # fmt: skip
        _pos(self.cv, f"{key}.cv")


@dataclass
class LoadConf:
    """One load level: ``name`` and ``rate`` (req/s); every other field null takes
    ``load_defaults``'s."""

    name: str = ""
    rate: float | None = None
    trace: str | None = None
    duration_s: float | None = None
    prompt_scale: float | None = None
    output_scale: float | None = None
    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    max_context: int | None = None
    arrival: str | None = None
    cv: float | None = None

    def resolved(self, d: LoadDefaults) -> LoadDefaults:
        vals = {f.name: getattr(d, f.name) for f in fields(LoadDefaults)}
        vals.update({k: getattr(self, k) for k in vals if getattr(self, k) is not None})
        return LoadDefaults(**vals)


# ---------------------------------------------------------------- deployment
@dataclass
class InstanceConfig:
    """One vLLM server. ``cpus``: cores its OpenMP threads are bound to (CPU) or CUDA device
    ids (GPU); ``kvcache_gib``: its KV cache (CPU; on a GPU ``gpu_memory_utilization``)."""

    port: int = 8100
    cpus: str = "0"
    kvcache_gib: float = 1.0
    gpu_memory_utilization: float = 0.8
    max_num_seqs: int = 32
    max_num_batched_tokens: int | None = None  # null: vLLM's default
    extra_args: list[str] = field(default_factory=list)

    def check(self, key: str, device: str) -> None:
        _need(1 <= self.port <= 65535, f"{key}.port", f"must be in 1..65535, got {self.port}")
        if device == "cpu":
            check_cpus(self.cpus, f"{key}.cpus", null=False)
        else:
            _need(bool(re.fullmatch(r"\d+(,\d+)*", str(self.cpus))), f"{key}.cpus",
                  f"CUDA device ids like \"0\" or \"0,1\", got {self.cpus!r}")  # fmt: skip
        _pos(self.kvcache_gib, f"{key}.kvcache_gib")
        _need(0 < self.gpu_memory_utilization <= 1, f"{key}.gpu_memory_utilization",
              f"must be in (0, 1], got {self.gpu_memory_utilization}")  # fmt: skip
        _at_least(self.max_num_seqs, 1, f"{key}.max_num_seqs")
        _at_least(self.max_num_batched_tokens, 1, f"{key}.max_num_batched_tokens", null=True)


@dataclass
class ConnectorConfig:
    """The KV connector of the disaggregated deployment. The prefill instance is its
    ``kv_producer`` and the decode instance its ``kv_consumer`` (fixed: a consumer never stores,
    a producer never loads)."""

    name: str = "ExampleConnector"
    storage_dir: str | None = None  # ExampleConnector: a fresh folder under it per deployment
    buffer_device: str | None = None  # NixlConnector: "cpu" for the host-buffer path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeployConfig:
    device: str = "cpu"  # cpu: OpenMP threads bound to `cpus`; cuda: `cpus` are device ids
    dtype: str = "float32"
    max_model_len: int = 4096
    health_timeout_s: float = 240.0
    # vLLM caches prompt blocks by default: repeats would hit the cache of the earlier ones;
    # off, as in the profile and the simulator (and checked on the engines' counters)
    prefix_caching: bool = False
    python: str | None = None  # the interpreter with vLLM (null: this one)
    colocated: InstanceConfig = field(default_factory=lambda: InstanceConfig(8100, "0"))
    # baseline2: a second co-located instance on the other core, behind the router (proxy_port)
    colocated2: InstanceConfig = field(default_factory=lambda: InstanceConfig(8101, "1"))
    prefill: InstanceConfig = field(default_factory=lambda: InstanceConfig(8110, "0"))
    decode: InstanceConfig = field(default_factory=lambda: InstanceConfig(8120, "1"))
    proxy_port: int = 8130  # the proxy (splitwise) or the router (baseline2)
    proxy_cpus: str | None = None
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)

    def check(self, designs: list[str], key: str = "deploy") -> None:
        _need(self.device in DEVICES, f"{key}.device", f"must be cpu or cuda, got {self.device!r}")
        _need(self.dtype in DTYPE_BYTES, f"{key}.dtype",
              f"unknown dtype '{self.dtype}' (known: {', '.join(DTYPE_BYTES)})")  # fmt: skip
        _at_least(self.max_model_len, 2, f"{key}.max_model_len")
        _pos(self.health_timeout_s, f"{key}.health_timeout_s")
        _need(not self.prefix_caching, f"{key}.prefix_caching",
              "must be false: repeated prompts would hit the cache (the simulator has none)")  # fmt: skip
        if self.python is not None:
            _need(Path(self.python).is_file() and os.access(self.python, os.X_OK),
                  f"{key}.python", f"not an executable file: {self.python}")  # fmt: skip
        for n in ("colocated", "colocated2", "prefill", "decode"):
            getattr(self, n).check(f"{key}.{n}", self.device)
        _need(1 <= self.proxy_port <= 65535, f"{key}.proxy_port",
              f"must be in 1..65535, got {self.proxy_port}")  # fmt: skip
        check_cpus(self.proxy_cpus, f"{key}.proxy_cpus")
        for design, (a, b) in (("splitwise", ("prefill", "decode")),
                               ("baseline2", ("colocated", "colocated2"))):  # fmt: skip
            if design not in designs:
                continue
            ia, ib = getattr(self, a), getattr(self, b)
            ports = {f"{a}.port": ia.port, f"{b}.port": ib.port, "proxy_port": self.proxy_port}
            seen: dict[int, str] = {}
            for n, p in ports.items():
                _need(p not in seen, f"{key}.{n}", f"port {p} is also deploy.{seen.get(p)}: "
                      f"{design} needs three different ports ({a}, {b}, proxy)")  # fmt: skip
                seen[p] = n
            if self.device == "cpu":
                both = set(parse_cpus(ia.cpus) or []) & set(parse_cpus(ib.cpus) or [])
                _need(not both, f"{key}.{b}.cpus", f"shares core(s) {sorted(both)} with "
                      f"deploy.{a}.cpus: each engine gets its own cores")  # fmt: skip
        if "splitwise" in designs:
            pre = self.prefill.max_num_batched_tokens
            _need(pre is None or pre >= self.max_model_len, f"{key}.prefill.max_num_batched_tokens",
                  f"must be >= deploy.max_model_len ({self.max_model_len}): the prefill instance "
                  "never splits a prompt (ExampleConnector stores only a prompt's first chunk)")  # fmt: skip
            _need(bool(self.connector.name), f"{key}.connector.name", "must be set")


# ---------------------------------------------------------------- the other sections
@dataclass
class CalibrateConf:
    """KV transfer through the proxy (splitwise only); KV bytes per token from the model spec."""

    enabled: bool = True
    lengths: list[int] = field(default_factory=lambda: [129, 250, 384, 700, 1025, 1500])
    repeats: int = 3
    block_size: int = 128  # vLLM's CPU default (16 on a GPU): whole blocks are injected

    def check(self, max_model_len: int, key: str = "calibrate") -> None:
        for i, L in enumerate(self.lengths):
            _need(isinstance(L, int) and not isinstance(L, bool), f"{key}.lengths[{i}]",
                  f"must be an integer, got {L!r}")  # fmt: skip
        _need(len(set(self.lengths)) >= 2, f"{key}.lengths",
              "needs at least two distinct prompt lengths")  # fmt: skip
        for i, L in enumerate(self.lengths):
            _need(2 <= L < max_model_len - 2, f"{key}.lengths[{i}]",
                  f"must be in 2..deploy.max_model_len - 3 ({max_model_len - 3}), got {L}")  # fmt: skip
        _at_least(self.repeats, 1, f"{key}.repeats")
        _at_least(self.block_size, 1, f"{key}.block_size")


@dataclass
class ProbesConf:
    """The serving probes (:mod:`experiments.validation.probes`): the serving component's terms
    (docs/serving.md) measured on the running deployment, after the calibration and before the
    replays, on their own prompt ids; never fitted on the replays compared."""

    enabled: bool = True
    # alpha: one request at a time, one output token, at each prompt length
    alpha_lengths: list[int] = field(default_factory=lambda: [16, 128, 384, 768, 1536])
    alpha_repeats: int = 3
    # delta: N concurrent streams (N = 1: the one long stream), each of output_tokens tokens
    delta_streams: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    delta_prompt_tokens: int = 32
    delta_output_tokens: int = 64
    # hand-over stall (splitwise): prompts injected through the proxy into N running streams
    # on the decode instance
    stall_streams: int = 4
    stall_lengths: list[int] = field(default_factory=lambda: [250, 700, 1500])
    stall_repeats: int = 2
    timeout_s: float = 600.0  # bound on every probe of one design

    def check(self, max_model_len: int, max_num_seqs: int, key: str = "probes") -> None:
        for name in ("alpha_lengths", "delta_streams", "stall_lengths"):
            vals = getattr(self, name)
            _need(isinstance(vals, list) and len(vals) > 0, f"{key}.{name}",
                  "must be a non-empty list")  # fmt: skip
            for i, v in enumerate(vals):
                _at_least(v, 1, f"{key}.{name}[{i}]")
        _need(len(set(self.alpha_lengths)) >= 2, f"{key}.alpha_lengths",
              "needs at least two distinct prompt lengths (a line in L)")  # fmt: skip
        _need(len(set(self.delta_streams)) >= 2, f"{key}.delta_streams",
              "needs at least two distinct stream counts (a line in B)")  # fmt: skip
        for name in ("alpha_lengths", "stall_lengths"):
            for i, L in enumerate(getattr(self, name)):
                _need(L < max_model_len - 2, f"{key}.{name}[{i}]",
                      f"must be < deploy.max_model_len - 2 ({max_model_len - 2}), got {L}")  # fmt: skip
        # N above an engine's max_num_seqs would queue (B < N): those N are not run
        _need(len({n for n in self.delta_streams if n <= max_num_seqs}) >= 2,
              f"{key}.delta_streams", "needs two distinct stream counts <= the instances' "
              f"max_num_seqs ({max_num_seqs})")  # fmt: skip
        _at_least(self.alpha_repeats, 1, f"{key}.alpha_repeats")
        _at_least(self.stall_repeats, 1, f"{key}.stall_repeats")
        _at_least(self.stall_streams, 1, f"{key}.stall_streams")
        _at_least(self.delta_prompt_tokens, 1, f"{key}.delta_prompt_tokens")
        _at_least(self.delta_output_tokens, 4, f"{key}.delta_output_tokens")
        _need(self.delta_prompt_tokens + self.delta_output_tokens < max_model_len,
              f"{key}.delta_output_tokens", "prompt + output must fit deploy.max_model_len")  # fmt: skip
        _pos(self.timeout_s, f"{key}.timeout_s")


@dataclass
class ProfileConf:
    mode: str = "measure"  # measure (splitbench-characterize engine=vllm) | source | skip
    source: str | None = None  # mode=source: an existing profile CSV or folder
    overrides: list[str] = field(default_factory=lambda: ["power=off", "sweep=vllm-validate"])

    def check(self, key: str = "profile") -> None:
        _need(self.mode in PROFILE_MODES, f"{key}.mode",
              f"must be measure, source or skip, got '{self.mode}'")  # fmt: skip
        if self.mode == "source":
            src = self.source
            _need(bool(src), f"{key}.source", "must be set when profile.mode=source")
            _need(src == "reference" or Path(src).exists(), f"{key}.source", f"{src}: not found")


@dataclass
class SimulateConf:
    enabled: bool = True
    gpu: str = "cpu"  # the replay's gpu group
    profile_gpu: str = "cpu"  # the profile rows' gpu key (slowdown reference)
    machine_policy: dict[str, str] = field(
        default_factory=lambda: {"baseline": "vllm", "baseline2": "vllm", "splitwise": "vllm"}
    )
    default_max_num_batched_tokens: int = 2048  # vLLM's OpenAI-server default on a CPU
    overrides: list[str] = field(default_factory=list)
    designs: dict[str, list[str]] = field(default_factory=lambda: {"baseline": [],
                                                                   "splitwise": []})  # fmt: skip

    def check(self, designs: list[str], key: str = "simulate") -> None:
        for d in designs:
            _need(d in self.machine_policy, f"{key}.machine_policy.{d}", "must be set")
        for d in self.designs:
            _need(d in DESIGNS, f"{key}.designs.{d}", "unknown design (known: baseline, "
                  "splitwise)")  # fmt: skip
        _at_least(self.default_max_num_batched_tokens, 1, f"{key}.default_max_num_batched_tokens")


@dataclass
class LoadgenConf:
    overrides: list[str] = field(default_factory=list)  # extra splitbench-loadgen overrides
    cpus: str | None = None  # the load generator's cores (null: not pinned)
    timeout_s: float = 600.0  # bound on one load-generator run

    def check(self, key: str = "loadgen") -> None:
        check_cpus(self.cpus, f"{key}.cpus")
        _pos(self.timeout_s, f"{key}.timeout_s")
        for i, o in enumerate(self.overrides):
            _need("=" in o, f"{key}.overrides[{i}]", f"not a KEY=VALUE override: {o!r}")


@dataclass
class PreflightConf:
    """The machine must be quiet: a busy one makes the real side slow for reasons the
    simulator does not model."""

    max_loadavg: float = 0.5  # /proc/loadavg's 1-minute value at most, before each design
    on_busy: str = "refuse"  # refuse | flag (run anyway, marked in every record)

    def check(self, key: str = "preflight") -> None:
        _need(self.max_loadavg >= 0, f"{key}.max_loadavg", f"must be >= 0, got {self.max_loadavg}")
        _need(self.on_busy in ON_BUSY, f"{key}.on_busy",
              f"must be refuse or flag, got '{self.on_busy}'")  # fmt: skip


@dataclass
class SloConf:
    """The SLO R* is measured against (absolute limits for this model and machine)."""

    ttft_p90_s: float = 2.0
    tbt_p90_s: float = 0.2

    def check(self, key: str) -> None:
        _pos(self.ttft_p90_s, f"{key}.ttft_p90_s")
        _pos(self.tbt_p90_s, f"{key}.tbt_p90_s")


@dataclass
class LadderConf:
    """The rate ladder placed from the simulator's predicted capacity C and R* (the highest
    rate meeting ``slo``): per trace, rates = fractions x R*, plus an overload run at
    ``overload_x_capacity`` x C."""

    enabled: bool = False  # true: the loads are this ladder (per design), not `loads`
    slo: SloConf = field(default_factory=SloConf)
    rstar_trace: str = "azure-conv-2023"  # the trace R* is predicted and measured on
    lo_rps: float = 0.05  # bisection bounds of the simulated R*, req/s
    hi_rps: float = 20.0  # also the overload rate of the simulated capacity run
    fractions: dict[str, list[float]] = field(default_factory=lambda: {
        "azure-conv-2023": [0.3, 0.6, 0.8, 0.9, 1.0, 1.15],
        "azure-code-2023": [0.5, 0.9, 1.2],
    })  # fmt: skip
    overload_x_capacity: dict[str, float] = field(default_factory=lambda: {"azure-conv-2023": 1.3})
    # per trace: a rung (x R*) run again at the end of each design's block (drift)
    sentinel: dict[str, float] = field(default_factory=lambda: {"azure-conv-2023": 0.8})
    min_requests: int = 200  # completed requests per load after warm-up (duration from rate)
    seed: int = 0  # a fresh arrival seed per rate, common across designs

    def check(self, key: str = "ladder") -> None:
        self.slo.check(f"{key}.slo")
        _pos(self.lo_rps, f"{key}.lo_rps")
        _need(self.hi_rps > self.lo_rps, f"{key}.hi_rps",
              f"must be > ladder.lo_rps ({self.lo_rps:g}), got {self.hi_rps:g}")  # fmt: skip
        for t, fr in self.fractions.items():
            _need(len(fr) > 0, f"{key}.fractions.{t}", "must not be empty")
            for i, f in enumerate(fr):
                _pos(f, f"{key}.fractions.{t}[{i}]")
        for t, x in self.sentinel.items():
            _pos(x, f"{key}.sentinel.{t}")
        for t, x in self.overload_x_capacity.items():
            _need(x > 1, f"{key}.overload_x_capacity.{t}", f"must be > 1, got {x:g}")
        _at_least(self.min_requests, 1, f"{key}.min_requests")


@dataclass
class CompareConf:
    trim: float = 0.1  # steady-state window for throughput (arrival quantiles)
    bootstrap: int = 2000  # resamples of the paired per-request bootstrap
    confidence: float = 0.95
    p99_min_requests: int = 1000  # P99 reported, not scored, below this
    seed: int = 0  # of the bootstrap (deterministic)
    fit_traces: list[str] = field(default_factory=list)  # traces any fit used (not held out)

    def check(self, key: str = "compare") -> None:
        _need(0 <= self.trim < 0.5, f"{key}.trim", f"must be in [0, 0.5), got {self.trim}")
        _at_least(self.bootstrap, 100, f"{key}.bootstrap")
        _need(0.5 < self.confidence < 1, f"{key}.confidence",
              f"must be in (0.5, 1), got {self.confidence}")  # fmt: skip
        _at_least(self.p99_min_requests, 1, f"{key}.p99_min_requests")


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
        _need(len(self.designs) > 0, "designs", "must be a non-empty list")
        for i, d in enumerate(self.designs):
            _need(d in DESIGNS, f"designs[{i}]",
                  f"unknown design '{d}' (known: baseline, splitwise)")  # fmt: skip
        _need(len(set(self.designs)) == len(self.designs), "designs", "a design is listed twice")
        _at_least(self.repeats, 1, "repeats")
        _at_least(self.seed, 0, "seed")
        _need(bool(_NAME.match(self.name)), "name", f"must be a short name, got {self.name!r}")
        self.deploy.check(self.designs)
        self.model.check(self.deploy.dtype)
        mml = self.deploy.max_model_len
        spec = self.model.spec()
        _need(mml <= spec.max_context_tokens, "deploy.max_model_len",
              f"must be <= the model's context ({spec.max_context_tokens}), got {mml}")  # fmt: skip
        self.load_defaults.check("load_defaults", mml)
        _need(len(self.loads) > 0 or self.ladder.enabled, "loads",
              "must be a non-empty list (or ladder.enabled=true)")  # fmt: skip
        if self.ladder.enabled:
            _need(self.profile.mode != "skip" and self.simulate.enabled, "ladder.enabled",
                  "the ladder is placed from the simulator: needs profile.mode measure or "
                  "source and simulate.enabled")  # fmt: skip
        self.loads = [
            ld if isinstance(ld, LoadConf) else _build(LoadConf, ld, f"loads[{i}]")
            for i, ld in enumerate(self.loads)
        ]
        names: set[str] = set()
        for i, ld in enumerate(self.loads):
            k = f"loads[{i}]"
            _need(bool(_NAME.match(ld.name or "")), f"{k}.name",
                  f"must be a short name (letters, digits, -_.), got {ld.name!r}")  # fmt: skip
            _need(ld.name not in names, f"{k}.name", f"duplicate load name '{ld.name}'")
            names.add(ld.name)
            _pos(ld.rate, f"{k}.rate")
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
        _need(k in names, sub_key, "unknown key")
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
