"""transformers' own modeling code (LlamaForCausalLM / BloomForCausalLM) as a profiled engine.

The model is built from a :class:`ShardSpec` with random weights and no download: constructed
on the ``meta`` device, shrunk to the TP shard where the config cannot say it (BLOOM ties its
head size and FFN to the hidden size), materialized with ``to_empty`` on the target device and
filled there with ``normal_`` (fast even for a 70B shard).

Cache API differences across transformers versions are detected, not assumed:

- the cache keyword is ``cache=`` in the newest 5.x and ``past_key_values=`` before
  (:func:`cache_kwarg` reads ``inspect.signature(model.forward)``);
- versions whose forward takes ``cache_position`` get it explicitly; versions without it
  (5.17, 5.24: ``StaticLayer.cumulative_length``, a tensor advanced in place by every update)
  get that counter set to the step's position before each forward, inside a captured graph
  too, so a replayed CUDA graph writes the KV at the same position each time.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from characterize.measure.models.shard import ShardSpec


def hf_config(shard: ShardSpec, dtype: torch.dtype):
    """The transformers config of the shard (BLOOM: the unsharded head layout, see module doc)."""
    from transformers import BloomConfig, LlamaConfig

    m = shard.model
    if shard.family == "llama":
        cfg = LlamaConfig(
            vocab_size=shard.vocab_size,
            hidden_size=m.hidden_size,
            intermediate_size=shard.ffn_size,
            num_hidden_layers=shard.num_layers,
            num_attention_heads=shard.num_heads,
            num_key_value_heads=shard.num_kv_heads,
            head_dim=m.head_dim,
            max_position_embeddings=m.max_context_tokens,
            rms_norm_eps=m.rms_norm_eps,
            tie_word_embeddings=m.tie_word_embeddings,
        )
    elif shard.family == "bloom":
        cfg = BloomConfig(
            vocab_size=shard.vocab_size,
            hidden_size=m.hidden_size,
            n_layer=shard.num_layers,
            n_head=m.num_attention_heads,
            layer_norm_epsilon=m.layer_norm_epsilon,
            tie_word_embeddings=m.tie_word_embeddings,
        )
        if m.ffn_size != 4 * m.hidden_size:
            raise ValueError(f"model '{m.name}': BloomConfig needs ffn_size = 4 x hidden_size")
    else:
        raise ValueError(f"model '{m.name}': unknown family '{shard.family}'")
    cfg._attn_implementation = "sdpa" if shard.family == "llama" else "eager"
    cfg.use_cache = True
    try:
        cfg.dtype = dtype
    except AttributeError:  # pragma: no cover - older configs
        cfg.torch_dtype = dtype
    return cfg


def _shrink_bloom(model, shard: ShardSpec) -> None:
    """Cut a full-width BLOOM (built on meta) down to one TP shard: heads/k, FFN/k."""
    nh, d, h, f = shard.num_heads, shard.head_dim, shard.hidden_size, shard.ffn_size
    model.transformer.num_heads = nh
    for block in model.transformer.h:
        a, m = block.self_attention, block.mlp
        a.num_heads = nh
        a.query_key_value = nn.Linear(h, 3 * nh * d, bias=True, device="meta")
        a.dense = nn.Linear(nh * d, h, bias=True, device="meta")
        m.dense_h_to_4h = nn.Linear(h, f, bias=True, device="meta")
        m.dense_4h_to_h = nn.Linear(f, h, bias=True, device="meta")


@torch.no_grad()
def build_hf_model(
    shard: ShardSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    std: float = 0.02,
):
    """A transformers model of the shard with random N(0, std) weights on ``device``."""
    from transformers import BloomForCausalLM, LlamaForCausalLM

    cfg = hf_config(shard, dtype)
    cls = LlamaForCausalLM if shard.family == "llama" else BloomForCausalLM
    # Built on meta in the target dtype: to_empty then allocates bf16 directly (an fp32
    # detour would need twice the memory, more than an H100 has for BLOOM's shard).
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = cls(cfg)
            if shard.family == "bloom" and shard.tp > 1:
                _shrink_bloom(model, shard)
    finally:
        torch.set_default_dtype(previous)
    device = torch.device(device)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_norm = "norm" in name or "ln_" in name or "layernorm" in name
        if is_norm and leaf == "weight":
            p.fill_(1.0)
        elif is_norm:
            p.zero_()
        else:
            p.normal_(0.0, std, generator=gen)
    if shard.family == "llama":  # non-persistent inv_freq buffer was left on meta: rebuild it
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        with torch.device("cpu"):
            rotary = LlamaRotaryEmbedding(cfg)
        model.model.rotary_emb = rotary.to(device)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def cache_kwarg(model) -> str:
    """The forward keyword that takes a KV cache in this transformers version."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def takes_cache_position(model) -> bool:
    """Whether the model's forward takes ``cache_position`` (older transformers)."""
    params = inspect.signature(model.forward).parameters
    base = getattr(model, "model", None) or getattr(model, "transformer", None)
    inner = inspect.signature(base.forward).parameters if base is not None else {}
    return "cache_position" in params or "cache_position" in inner


def new_static_cache(model, batch: int, max_len: int, device, dtype):
    """A transformers StaticCache for ``batch`` requests of ``max_len`` positions."""
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kwargs = {"config": model.config, "max_cache_len": max_len}
    for key, value in (
        ("max_batch_size", batch),
        ("batch_size", batch),
        ("device", device),
        ("dtype", dtype),
    ):
        if key in params:
            kwargs[key] = value
    return StaticCache(**kwargs)


def set_cache_length(cache, length: int) -> None:
    """Set every static layer's write position to ``length`` (in place: graph-safe)."""
    for layer in getattr(cache, "layers", []):
        cum = getattr(layer, "cumulative_length", None)
        if isinstance(cum, torch.Tensor):
            cum.fill_(length)
        elif cum is not None:
            layer.cumulative_length = length


def fill_cache_random(cache, tokens: int, seed: int = 0) -> None:
    """Fill the first ``tokens`` positions of an initialized static cache with N(0, 1)."""
    for i, layer in enumerate(getattr(cache, "layers", [])):
        keys = getattr(layer, "keys", None)
        if keys is None:
            continue
        gen = torch.Generator(device=keys.device).manual_seed(seed + i)
        layer.keys[:, :, :tokens].normal_(generator=gen)
        layer.values[:, :, :tokens].normal_(generator=gen)


def forward_step(model, ids: torch.Tensor, pos: int, cache, kw: str, with_cp: bool) -> torch.Tensor:
    """One forward of ``ids`` at positions ``pos..`` through ``cache``; last-token logits."""
    s = ids.shape[1]
    positions = torch.arange(pos, pos + s, device=ids.device)
    set_cache_length(cache, pos)
    kwargs = {kw: cache, "use_cache": True, "logits_to_keep": 1}
    if with_cp:
        kwargs["cache_position"] = positions
    if model.config.model_type == "llama":
        kwargs["position_ids"] = positions.unsqueeze(0).expand(ids.shape[0], s)
    else:
        # BLOOM builds ALiBi from a 2D mask; without one, 5.17 sizes it to the tokens seen
        # rather than the static cache length. Ones up to the last position, zeros after.
        max_len = cache.get_max_length() if hasattr(cache, "get_max_length") else pos + s
        mask = torch.arange(max_len, device=ids.device) < pos + s
        kwargs["attention_mask"] = mask.to(torch.long).unsqueeze(0).expand(ids.shape[0], -1)
    out = model(input_ids=ids, **kwargs)
    return out.logits[:, -1]
