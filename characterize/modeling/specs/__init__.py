"""Model, GPU and machine specs: the facts written once, read by the profiler and the simulator.

Each spec is a TOML file under ``characterize/modeling/specs/{models,gpus,machines}/``; adding a GPU,
a machine or a model is adding a file. ``SPLITBENCH_SPEC_PATH`` (``os.pathsep``-separated
folders with the same three subfolders) adds user spec folders, searched first.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import MISSING, dataclass, fields
from functools import cache
from pathlib import Path

from common.units import gbps_to_bytes_per_s, tbps_to_bytes_per_s, tflops_to_flops

SPEC_ROOT = Path(__file__).resolve().parent


class SpecError(ValueError):
    """A spec is unknown or malformed (the message is one line, naming the file and field)."""


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer, as its architecture determines cost and memory."""

    name: str
    display_name: str
    family: str  # "llama" | "bloom": which transformers config builds it
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_context_tokens: int
    bytes_per_param: int
    kv_bytes_per_element: int
    tie_word_embeddings: bool = False
    gated_mlp: bool = False
    rms_norm_eps: float = 1e-5
    layer_norm_epsilon: float = 1e-5
    rope_theta: float = 10000.0
    # Phase models (contract 3) of this model come from the profiles of ``profile_model``
    # (a model with the same layer shapes); "" = its own profiles. ``profile_note`` says what
    # that borrowing assumes, or that no profile exists yet.
    profile_model: str = ""
    profile_note: str = ""

    @property
    def phase_profile_model(self) -> str:
        """Name under which this model's phase profiles are looked up (its own by default)."""
        return self.profile_model or self.name

    @property
    def layer_shapes(self) -> tuple:
        """What one decoder layer's cost depends on: layers, hidden, heads, KV heads,
        head_dim, FFN width, gated MLP, KV element bytes."""
        return (
            self.num_layers,
            self.hidden_size,
            self.num_attention_heads,
            self.num_kv_heads,
            self.head_dim,
            self.ffn_size,
            self.gated_mlp,
            self.kv_bytes_per_element,
        )

    @property
    def attention_params_per_layer(self) -> int:
        """Q, K, V and output projection weights of one layer (biases ignored)."""
        q_out = 2 * self.hidden_size * self.num_attention_heads * self.head_dim
        kv = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        return q_out + kv

    @property
    def mlp_params_per_layer(self) -> int:
        """MLP weights of one layer: 3 matrices when gated (SwiGLU), else 2."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.ffn_size

    @property
    def params_per_layer(self) -> int:
        return self.attention_params_per_layer + self.mlp_params_per_layer

    @property
    def embedding_params(self) -> int:
        """Input embedding plus (untied) LM head."""
        n = self.vocab_size * self.hidden_size
        return n if self.tie_word_embeddings else 2 * n

    @property
    def param_count(self) -> int:
        """Total weights (norms and biases ignored: under 0.1%)."""
        return self.num_layers * self.params_per_layer + self.embedding_params

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights."""
        return self.param_count * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token holds: 2 (K and V) x layers x kv_heads x head_dim x bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_bytes_per_element

    def flops_per_token(self) -> float:
        """Dense matmul FLOPs per token (2 x params touched), excluding attention scores."""
        return 2.0 * self.param_count

    def attention_flops(self, prompt_tokens: int) -> float:
        """Causal attention-score FLOPs of one prompt (QK^T and AV, half the square)."""
        return 2.0 * self.num_layers * self.num_attention_heads * self.head_dim * prompt_tokens**2


@dataclass(frozen=True)
class GPUSpec:
    """One GPU: memory, HBM bandwidth, dense bf16 rate, power."""

    name: str
    display_name: str
    memory_bytes: int
    hbm_bandwidth_tbps: float
    bf16_dense_tflops: float
    power_limit_w: float
    idle_power_w: float
    nvlink_gbps: float = 0.0
    nvml_names: tuple[str, ...] = ()

    @property
    def hbm_bandwidth_bytes_per_s(self) -> float:
        return tbps_to_bytes_per_s(self.hbm_bandwidth_tbps)

    @property
    def bf16_flops(self) -> float:
        return tflops_to_flops(self.bf16_dense_tflops)


@dataclass(frozen=True)
class MachineSpec:
    """An 8-GPU DGX-style node running one TP instance across its GPUs."""

    name: str
    gpu: GPUSpec
    num_gpus: int
    gpu_power_w: float
    cost_per_hour: float
    infiniband_gbps_per_gpu: float
    profile_gpu: str
    kv_exposed_transfer_s: float
    power_cap_w: float | None = None

    @property
    def power_budget_w(self) -> float:
        """Provisioned power of the machine: GPUs x per-GPU budget (caps applied)."""
        return self.num_gpus * self.gpu_power_w

    @property
    def memory_bytes(self) -> int:
        return self.num_gpus * self.gpu.memory_bytes

    @property
    def network_bytes_per_s(self) -> float:
        """InfiniBand bandwidth of the whole machine (every GPU sends its KV shard)."""
        return self.num_gpus * gbps_to_bytes_per_s(self.infiniband_gbps_per_gpu)

    def kv_capacity_tokens(self, model: ModelSpec, reserve_fraction: float = 0.1) -> int:
        """Tokens of KV cache that fit: memory x (1 - reserve) - weights, over KV bytes/token.

        ``reserve_fraction`` keeps room for activations, CUDA graphs and fragmentation.
        Returns 0 (or less) when the model does not fit.
        """
        free = self.memory_bytes * (1.0 - reserve_fraction) - model.weight_bytes
        return int(free // model.kv_bytes_per_token)


def _spec_dirs(kind: str) -> list[Path]:
    extra = [
        Path(p) / kind for p in os.environ.get("SPLITBENCH_SPEC_PATH", "").split(os.pathsep) if p
    ]
    return [*extra, SPEC_ROOT / kind]


def _read(kind: str, name: str) -> tuple[Path, dict]:
    for d in _spec_dirs(kind):
        path = d / f"{name}.toml"
        if path.is_file():
            try:
                with path.open("rb") as f:
                    return path, tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise SpecError(f"{path}: not valid TOML: {e}") from None
    known = ", ".join(list_specs(kind)) or "none"
    raise SpecError(f"unknown {kind[:-1]} '{name}' (known: {known})")


def _build(cls, path: Path, data: dict, **extra):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpecError(f"{path}: unknown field '{unknown[0]}'")
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [n for n in required if n not in data and n not in extra]
    if missing:
        raise SpecError(f"{path}: missing field '{missing[0]}'")
    kwargs = {**data, **extra}
    if "nvml_names" in kwargs:
        kwargs["nvml_names"] = tuple(kwargs["nvml_names"])
    return cls(**kwargs)


def list_specs(kind: str) -> list[str]:
    """Names of the specs of one kind: 'models', 'gpus' or 'machines'."""
    out: set[str] = set()
    for d in _spec_dirs(kind):
        if d.is_dir():
            out.update(p.stem for p in d.glob("*.toml"))
    return sorted(out)


@cache
def load_model(name: str) -> ModelSpec:
    """The ModelSpec named ``name`` (e.g. 'llama2-70b', 'bloom-176b')."""
    path, data = _read("models", name)
    spec = _build(ModelSpec, path, data)
    if spec.profile_model and spec.profile_model != spec.name:
        other = load_model(spec.profile_model)
        if other.profile_model not in ("", other.name):
            raise SpecError(
                f"{path}: field 'profile_model': '{other.name}' borrows its profiles from "
                f"'{other.profile_model}' itself; name that model directly"
            )
        if other.layer_shapes != spec.layer_shapes:
            raise SpecError(
                f"{path}: field 'profile_model': '{other.name}' has other layer shapes "
                f"{other.layer_shapes} than {spec.layer_shapes} (layers, hidden, heads, KV "
                "heads, head_dim, ffn, gated, KV bytes)"
            )
    return spec


@cache
def load_gpu(name: str) -> GPUSpec:
    """The GPUSpec named ``name`` (e.g. 'a100-80gb', 'h100-80gb', 'h200-141gb')."""
    path, data = _read("gpus", name)
    return _build(GPUSpec, path, data)


@cache
def load_machine(name: str) -> MachineSpec:
    """The MachineSpec named ``name`` (e.g. 'dgx-a100', 'dgx-h100', 'dgx-h100-cap', 'dgx-h200')."""
    path, data = _read("machines", name)
    gpu_name = data.pop("gpu", None)
    if gpu_name is None:
        raise SpecError(f"{path}: missing field 'gpu'")
    return _build(MachineSpec, path, data, gpu=load_gpu(gpu_name))


__all__ = [
    "GPUSpec",
    "MachineSpec",
    "ModelSpec",
    "SpecError",
    "list_specs",
    "load_gpu",
    "load_machine",
    "load_model",
]
