"""What one GPU of a tensor-parallel instance runs: a TP-k shard of a model (torch-free).

A TP-k shard keeps the hidden size and divides attention heads, KV heads, the FFN and the
vocabulary (LM head) by k, as each GPU of a DGX runs it (Megatron-style column/row split).
A shard may also run only ``layers`` of the model's layers; its measured times are then
scaled to the whole model by ``num_layers / layers`` (``ShardSpec.layer_scale``).

Byte and FLOP counts here feed the achieved-bandwidth and achieved-TFLOP/s figures of the
GPU check. Units: bytes, FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from characterize.modeling.specs import ModelSpec, SpecError


@dataclass(frozen=True)
class ShardSpec:
    """One GPU's share of a model under tensor parallelism ``tp``, running ``layers`` layers."""

    model: ModelSpec
    tp: int = 1
    layers: int | None = None

    def __post_init__(self) -> None:
        m = self.model
        if self.tp < 1:
            raise SpecError(f"model '{m.name}': tp must be >= 1, got {self.tp}")
        for field_name, value in (
            ("num_attention_heads", m.num_attention_heads),
            ("num_kv_heads", m.num_kv_heads),
            ("ffn_size", m.ffn_size),
            ("vocab_size", m.vocab_size),
        ):
            if value % self.tp:
                raise SpecError(
                    f"model '{m.name}': {field_name}={value} is not divisible by tp={self.tp}"
                )
        if self.layers is not None and not 1 <= self.layers <= m.num_layers:
            raise SpecError(
                f"model '{m.name}': layers must be in 1..{m.num_layers}, got {self.layers}"
            )

    # ------------------------------------------------------------------ shapes
    @property
    def family(self) -> str:
        return self.model.family

    @property
    def num_layers(self) -> int:
        """Layers this shard runs."""
        return self.model.num_layers if self.layers is None else self.layers

    @property
    def layer_scale(self) -> float:
        """Factor from measured time to whole-model time (1.0 when every layer runs)."""
        return self.model.num_layers / self.num_layers

    @property
    def is_subset(self) -> bool:
        return self.num_layers != self.model.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    @property
    def head_dim(self) -> int:
        return self.model.head_dim

    @property
    def num_heads(self) -> int:
        return self.model.num_attention_heads // self.tp

    @property
    def num_kv_heads(self) -> int:
        return self.model.num_kv_heads // self.tp

    @property
    def ffn_size(self) -> int:
        return self.model.ffn_size // self.tp

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size // self.tp

    # ------------------------------------------------------------------ weights
    @property
    def layer_params(self) -> int:
        """Matmul weights of one layer of the shard (norms and biases ignored)."""
        h, d = self.hidden_size, self.head_dim
        attn = h * (self.num_heads + 2 * self.num_kv_heads) * d + self.num_heads * d * h
        mlp = (3 if self.model.gated_mlp else 2) * h * self.ffn_size
        return attn + mlp

    @property
    def lm_head_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        """Bytes of the weights one decode step reads: the layers run plus the LM head shard."""
        return (self.num_layers * self.layer_params + self.lm_head_params) * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token holds in this shard (K and V, layers run)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def kv_cache_bytes(self, batch: int, tokens: int, dtype_bytes: int = 2) -> int:
        """Bytes of a static KV cache for ``batch`` requests of ``tokens`` positions each."""
        return batch * tokens * self.kv_bytes_per_token(dtype_bytes)

    # ------------------------------------------------------------------ traffic and work
    def decode_bytes(self, batch: int, context: int, dtype_bytes: int = 2) -> int:
        """Bytes one decode step must move at least: weights read once, KV of ``context``
        tokens read per request, one new token's KV written per request."""
        kv = self.kv_bytes_per_token(dtype_bytes)
        return self.weight_bytes(dtype_bytes) + batch * (context + 1) * kv

    def prefill_flops(self, batch: int, prompt: int) -> float:
        """FLOPs of one prefill: matmuls (2 x params x tokens; LM head on the last token only)
        plus causal attention (QK^T and AV, half the square) of the heads in this shard."""
        tokens = batch * prompt
        dense = 2.0 * self.num_layers * self.layer_params * tokens
        head = 2.0 * self.lm_head_params * batch
        attn = 2.0 * self.num_layers * self.num_heads * self.head_dim * prompt * prompt * batch
        return dense + head + attn

    def describe(self) -> str:
        """Short text for profile sources, e.g. 'tp8 shard, layers 8/80 scaled'."""
        text = f"tp{self.tp} shard"
        if self.is_subset:
            text += f", layers {self.num_layers}/{self.model.num_layers} scaled"
        return text
