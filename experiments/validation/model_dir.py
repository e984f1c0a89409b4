"""The tiny random-weight Llama that the CPU validation serves (built from a config, no hub).

Defaults (issue 11's CPU facts): 4 layers, 512 wide, 8 heads, 2 KV heads, float32, a 32000-token
vocabulary, 4096-token context. Weights are drawn with ``torch.manual_seed(seed)``; the folder
holds transformers' ``config.json`` and ``model.safetensors`` (``save_pretrained``) and a
``splitbench-model.json`` stamp with the settings; a folder whose stamp matches is reused
(:func:`characterize.measure.vllm_server.build_model_dir` builds it). torch and transformers
are imported only when a folder is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyLlama:
    num_layers: int = 4
    hidden_size: int = 512
    num_heads: int = 8
    num_kv_heads: int = 2
    ffn_size: int = 1536
    vocab_size: int = 32000
    max_context_tokens: int = 4096
    dtype: str = "float32"
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) x layers x KV heads x head dim x bytes per element."""
        nbytes = {"float32": 4, "float16": 2, "bfloat16": 2}[self.dtype]
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * nbytes


def build_model_dir(path: str | Path, spec: TinyLlama = TinyLlama()) -> Path:
    """Build (or reuse) the model folder at ``path`` (the one builder,
    :func:`characterize.measure.vllm_server.build_model_dir`, with this spec); returns it."""
    from characterize.measure.vllm_server import build_model_dir as build

    return build(
        path,
        seed=spec.seed,
        dtype=spec.dtype,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        vocab_size=spec.vocab_size,
        max_position_embeddings=spec.max_context_tokens,
    )
