"""The model folder a validation serves, built from a model spec (random weights, no hub).

Every shape fact comes from the spec named by ``model.name``
(``characterize/modeling/specs/models``; ``SPLITBENCH_SPEC_PATH`` adds your own): layers,
width, heads, KV heads, head size, FFN width, vocabulary, context. Weights are drawn with
``torch.manual_seed(seed)``; the folder holds transformers' ``config.json`` and
``model.safetensors`` and a ``splitbench-model.json`` stamp with the settings; a folder whose
stamp matches is reused (:func:`characterize.measure.vllm_server.build_model_dir` builds it).
Your own folder (``model.build=false``) is checked against the spec instead
(:func:`experiments.validation.config.check_model_dir`). torch and transformers are imported
only when a folder is built.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_SPEC = "tiny-llama-512"


def hf_shape(spec) -> dict:
    """The transformers LlamaConfig keys of a model spec's shape."""
    out = {
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.ffn_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_context_tokens,
    }
    if spec.hidden_size // spec.num_attention_heads != spec.head_dim:
        out["head_dim"] = spec.head_dim
    return out


def build_model_dir(path: str | Path, spec=None, seed: int = 0, dtype: str = "float32") -> Path:
    """Build (or reuse) the folder of ``spec`` (a ModelSpec; default: the tiny Llama) at
    ``path``; returns it."""
    from characterize.measure.vllm_server import build_model_dir as build
    from characterize.modeling.specs import load_model

    spec = spec if spec is not None else load_model(DEFAULT_SPEC)
    return build(path, seed=seed, dtype=dtype, **hf_shape(spec))
