"""The scheduler options: one dataclass, the schema of the ``scheduler`` config group.

:class:`SchedulerConfig` is what the cluster scheduler (:mod:`replay.routing`), the machine
scheduler (:mod:`replay.machine`) and the KV transfer model (``kv_transfer``, a nested
:class:`replay.kv_transfer.KVTransferConfig`) read. It is also the structured-config schema of
the Hydra group ``scheduler`` (registered by ``experiments.config.schemas``; this module does not
import Hydra). Each option is checked once, here, in ``__post_init__``: a bad value raises a
one-line :class:`ReplayError` that starts with the dotted config key.

Adding an option: one field here (with its default and help text) plus its default in
``experiments/conf/scheduler/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from replay.errors import need
from replay.kv_transfer import KVTransferConfig
from replay.machine import MACHINE_POLICIES
from replay.vllm_policy import VLLMConfig

POLICIES = ("jsq", "round-robin", "random")
MIXED_BATCH = ("fused", "sequential")


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


@dataclass
class SchedulerConfig:
    """Reference scheduler options (paper Sec. IV); tokens, seconds, fractions."""

    name: str = _f("jsq", "display name of this scheduler setting")
    policy: str = _f("jsq", "cluster-level machine choice: 'jsq', 'round-robin' or 'random'")
    machine_policy: str = _f(
        "reference",
        "machine-level batching policy of every pool (replay.machine.MACHINE_POLICIES): "
        "'reference' (paper Sec. IV: FCFS prompts, prompts first on mixed machines) or 'vllm' "
        "(vLLM V1's scheduler, chunked prefill; on a Splitwise design vLLM's disaggregated "
        "serving); design.machine_policy overrides it for every machine of that design",
    )
    prompt_batch_tokens: int = _f(2048, "prompt machines: max tokens in one prefill batch")
    max_batch_size: int | None = _f(None, "decode batch cap (None: only KV memory limits it)")
    kv_reserve_fraction: float = _f(
        0.1, "memory of an instance kept free of weights and KV cache (activations, ...)"
    )
    kv_watermark_fraction: float = _f(0.02, "free KV kept at admission, fraction of capacity")
    max_preemptions: int = _f(3, "cap on preemptions of one request (victim choice)")
    prompt_queue_threshold_tokens: int = _f(
        8192, "pending prompt tokens on the chosen prompt machine that trigger the mixed pool"
    )
    token_kv_threshold_fraction: float = _f(
        0.9, "token machine KV fill (of capacity) that triggers the mixed pool"
    )
    enforce_max_context: bool = _f(True, "reject requests longer than the model's context")
    mixed_batch: str = _f(
        "fused",
        "mixed iteration time: 'fused' (one pass: the decode tokens are more prefill tokens, "
        "plus their attention) or 'sequential' (prefill then a whole decode step: an upper bound)",
    )
    prefix_caching: bool = _f(
        False,
        "keep an LRU cache of prefix KV blocks per instance (replay.prefix_cache); needs the "
        "trace column block_hashes",
    )
    cache_aware_routing: bool = _f(
        False,
        "jsq: pick the prompt machine with the least pending prompt tokens minus the prompt's "
        "cached prefix tokens there (needs prefix_caching)",
    )
    kv_transfer: KVTransferConfig = field(
        default_factory=KVTransferConfig,
        metadata={"help": "KV transfer model between prompt and token machines"},
    )
    vllm: VLLMConfig = field(
        default_factory=VLLMConfig,
        metadata={"help": "options of the 'vllm' machine policy (replay.vllm_policy)"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.kv_transfer, dict):
            self.kv_transfer = KVTransferConfig(**self.kv_transfer)
        if isinstance(self.vllm, dict):
            self.vllm = VLLMConfig(**self.vllm)
        k = "scheduler"
        need(self.policy in POLICIES, f"{k}.policy", _unknown(self.policy, POLICIES))
        need(
            self.machine_policy in MACHINE_POLICIES,
            f"{k}.machine_policy",
            _unknown(self.machine_policy, tuple(MACHINE_POLICIES)),
        )
        need(
            self.mixed_batch in MIXED_BATCH,
            f"{k}.mixed_batch",
            _unknown(self.mixed_batch, MIXED_BATCH),
        )
        need(_int(self.prompt_batch_tokens) and self.prompt_batch_tokens >= 1,
             f"{k}.prompt_batch_tokens", f"must be an integer >= 1, got {self.prompt_batch_tokens!r}")  # fmt: skip
        need(
            self.max_batch_size is None or (_int(self.max_batch_size) and self.max_batch_size >= 1),
            f"{k}.max_batch_size",
            f"must be an integer >= 1 or null, got {self.max_batch_size!r}",
        )
        for name in ("kv_reserve_fraction", "kv_watermark_fraction"):
            v = getattr(self, name)
            need(0.0 <= v < 1.0, f"{k}.{name}", f"must be in [0, 1), got {v!r}")
        need(_int(self.max_preemptions) and self.max_preemptions >= 0, f"{k}.max_preemptions",
             f"must be >= 0, got {self.max_preemptions!r}")  # fmt: skip
        need(
            _int(self.prompt_queue_threshold_tokens) and self.prompt_queue_threshold_tokens >= 1,
            f"{k}.prompt_queue_threshold_tokens",
            f"must be >= 1, got {self.prompt_queue_threshold_tokens!r}",
        )
        for name in ("prefix_caching", "cache_aware_routing"):
            v = getattr(self, name)
            need(isinstance(v, bool), f"{k}.{name}", f"must be true or false, got {v!r}")
        if self.cache_aware_routing:
            need(self.prefix_caching, f"{k}.cache_aware_routing", "needs scheduler.prefix_caching")
            need(self.policy == "jsq", f"{k}.cache_aware_routing",
                 f"needs scheduler.policy jsq, got '{self.policy}'")  # fmt: skip
        if self.kv_transfer.uncached_only:
            need(self.prefix_caching, f"{k}.kv_transfer.uncached_only",
                 "needs scheduler.prefix_caching")  # fmt: skip
        v = self.token_kv_threshold_fraction
        need(v > 0 and v == v and v != float("inf"), f"{k}.token_kv_threshold_fraction",
             f"must be a finite number > 0, got {v!r}")  # fmt: skip


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _unknown(value, known) -> str:
    return f"unknown value '{value}' (known: {', '.join(known)})"


__all__ = ["MIXED_BATCH", "POLICIES", "SchedulerConfig"]
