"""Tiny model specs for tests and CPU runs (2 layers, hidden 64); not real models (torch-free).

They live here, not in ``characterize/modeling/specs``, so the simulator never sees them.
``resolve_model(name)`` returns a tiny spec by name or else the spec from ``load_model``.
"""

from __future__ import annotations

from characterize.modeling.specs import ModelSpec, load_model

TINY_MODELS: dict[str, ModelSpec] = {
    "tiny-llama": ModelSpec(
        name="tiny-llama",
        display_name="tiny Llama (test)",
        family="llama",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=16,
        ffn_size=128,
        vocab_size=128,
        max_context_tokens=256,
        bytes_per_param=2,
        kv_bytes_per_element=2,
        tie_word_embeddings=False,
        gated_mlp=True,
    ),
    # the model folder of characterize.measure.vllm_server (vLLM CPU server and profiles)
    "tiny-llama-512": ModelSpec(
        name="tiny-llama-512",
        display_name="tiny Llama 512 (vLLM CPU)",
        family="llama",
        num_layers=4,
        hidden_size=512,
        num_attention_heads=8,
        num_kv_heads=2,
        head_dim=64,
        ffn_size=1536,
        vocab_size=32000,
        max_context_tokens=4096,
        bytes_per_param=4,
        kv_bytes_per_element=4,
        tie_word_embeddings=False,
        gated_mlp=True,
    ),
    "tiny-bloom": ModelSpec(
        name="tiny-bloom",
        display_name="tiny BLOOM (test)",
        family="bloom",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=4,
        head_dim=16,
        ffn_size=256,
        vocab_size=128,
        max_context_tokens=256,
        bytes_per_param=2,
        kv_bytes_per_element=2,
        tie_word_embeddings=True,
        gated_mlp=False,
    ),
}


def resolve_model(name: str) -> ModelSpec:
    """The tiny test spec ``name`` or the real spec of that name (raises ``SpecError``)."""
    if name in TINY_MODELS:
        return TINY_MODELS[name]
    return load_model(name)
