"""splitbench-native: the suite's own compact Llama / BLOOM implementation for profiling.

Built from a :class:`~characterize.measure.models.shard.ShardSpec` with random weights (filled on the
target device with ``normal_``, no per-module CPU init), bf16 on GPU (fp32 on CPU for tests).
Designed to get close to the hardware ceiling in decode:

- fused QKV and fused gate/up weights (one matmul each), ``F.linear`` on the raw tensors;
- a preallocated static KV cache ``[layers, batch, kv_heads, max_len, head_dim]``, written in
  place by slice assignment at positions fixed when a step is built (python ints: a captured
  CUDA graph writes and reads exactly where it should, no ``.item()``);
- ``F.scaled_dot_product_attention``; Llama's grouped-query decode folds the query heads of
  one KV head into the query-length axis, so K/V are read once and never repeated;
- few small kernels per decode layer (each costs ~2 us even inside a CUDA graph): fused
  RMSNorm (``F.rms_norm``), RoPE of every q and k head as ONE [D, D] matmul with the rotation
  matrix of the step's position, residual adds fused into the output projections
  (``addmm_``, beta=1), K and V written by two slice copies;
- Llama: RMSNorm, rotary embeddings (rotate-half convention, as transformers), GQA, SwiGLU.
  BLOOM: embedding LayerNorm, LayerNorm, ALiBi (slopes of the shard's heads), MHA, tanh-GELU MLP.

``forward(ids, pos, cache)`` returns the last position's logits of the shard's vocabulary slice.
A prefill must start at ``pos == 0``; a decode step (one token) may be at any ``pos``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from characterize.measure.models.shard import ShardSpec

ROPE_THETA = 10_000.0  # Llama-2


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi slopes of a model with ``num_heads`` heads (BLOOM / Press et al.)."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = [base**p for p in range(1, 1 + closest)]
    if closest != num_heads:
        extra_base = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        remaining = min(closest, num_heads - closest)
        slopes += [extra_base**p for p in range(1, 1 + 2 * remaining, 2)]
    return slopes


def _sdpa_has_gqa() -> bool:
    import inspect

    try:
        return "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):  # builtins without a signature: try it
        try:
            q = torch.zeros(1, 2, 1, 4)
            k = torch.zeros(1, 1, 1, 4)
            F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
            return True
        except TypeError:
            return False


class KVCache:
    """Static KV cache of one shard: ``k``, ``v`` of shape [layers, batch, kv_heads, max_len, D]."""

    def __init__(
        self,
        shard: ShardSpec,
        batch: int,
        max_len: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ):
        shape = (shard.num_layers, batch, shard.num_kv_heads, max_len, shard.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.batch = batch
        self.max_len = max_len

    def fill_random(self, tokens: int, seed: int = 0) -> None:
        """Fill the first ``tokens`` positions with N(0, 1) values (a pre-filled context)."""
        gen = torch.Generator(device=self.k.device).manual_seed(seed)
        self.k[:, :, :, :tokens].normal_(generator=gen)
        self.v[:, :, :, :tokens].normal_(generator=gen)

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class _Layer(nn.Module):
    """One decoder layer of the shard (weights as raw tensors, fused)."""

    def __init__(self, shard: ShardSpec, new):  # new(shape, kind) -> Parameter
        super().__init__()
        h, d = shard.hidden_size, shard.head_dim
        self.family = shard.family
        self.h, self.d = h, d
        self.nh, self.nkv = shard.num_heads, shard.num_kv_heads
        qkv_out = (self.nh + 2 * self.nkv) * d
        self.wqkv = new((qkv_out, h), "w")
        self.wo = new((h, self.nh * d), "w")
        self.ln1_w = new((h,), "one")
        self.ln2_w = new((h,), "one")
        if self.family == "llama":
            self.eps = shard.model.rms_norm_eps
            self.wgu = new((2 * shard.ffn_size, h), "w")
            self.wdown = new((h, shard.ffn_size), "w")
        else:
            self.eps = shard.model.layer_norm_epsilon
            self.ln1_b = new((h,), "zero")
            self.ln2_b = new((h,), "zero")
            self.bqkv = new((qkv_out,), "b")
            self.bo = new((h,), "b")
            self.wup = new((shard.ffn_size, h), "w")
            self.bup = new((shard.ffn_size,), "b")
            self.wdown = new((h, shard.ffn_size), "w")
            self.bdown = new((h,), "b")
        self.gqa = _sdpa_has_gqa()

    def forward(
        self,
        x: torch.Tensor,
        kc: torch.Tensor,
        vc: torch.Tensor,
        pos: int,
        rope: tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """One layer on ``x`` [batch, tokens, hidden] at positions ``pos..``.

        ``rope``: Llama only; for a decode step the [D, D] rotation matrix of position ``pos``
        (one small matmul rotates every q and k head), for a prefill the (cos, signed sin)
        tables of the positions. ``bias``: BLOOM's ALiBi (+ causal) additive attention bias.
        Llama's residual adds are fused into the projections (``addmm_``, beta=1): ``x`` is
        updated in place and returned.
        """
        b, s, _ = x.shape
        nh, d = self.nh, self.d
        llama = self.family == "llama"
        if llama:
            hs = F.rms_norm(x, (self.h,), self.ln1_w, self.eps)
            qkv = F.linear(hs, self.wqkv)
        else:
            hs = F.layer_norm(x, (self.h,), self.ln1_w, self.ln1_b, self.eps)
            qkv = F.linear(hs, self.wqkv, self.bqkv)
        if s == 1:
            o = self._decode_attention(qkv, kc, vc, pos, rope, bias)
        else:
            o = self._prefill_attention(qkv, kc, vc, pos, rope, bias)
        if llama:
            x2 = x.view(b * s, self.h)
            x2.addmm_(o.reshape(b * s, nh * d), self.wo.t())
            hs = F.rms_norm(x, (self.h,), self.ln2_w, self.eps)
            gate, up = F.linear(hs, self.wgu).chunk(2, dim=-1)
            act = F.silu(gate) * up
            x2.addmm_(act.view(b * s, -1), self.wdown.t())
            return x
        x = x + F.linear(o.reshape(b, s, nh * d), self.wo, self.bo)
        hs = F.layer_norm(x, (self.h,), self.ln2_w, self.ln2_b, self.eps)
        up = F.gelu(F.linear(hs, self.wup, self.bup), approximate="tanh")
        return x + F.linear(up, self.wdown, self.bdown)

    def _decode_attention(self, qkv, kc, vc, pos, rope, bias) -> torch.Tensor:
        """Attention of one new token per request; returns [batch, heads * D]."""
        b = qkv.shape[0]
        nh, nkv, d = self.nh, self.nkv, self.d
        flat = qkv.view(b, nh + 2 * nkv, d)
        if rope is not None:
            qk = torch.matmul(flat[:, : nh + nkv], rope)  # rotates the q and k heads at once
            q, k = qk[:, :nh], qk[:, nh:]
        else:
            q, k = flat[:, :nh], flat[:, nh : nh + nkv]
        kc[:, :, pos] = k
        vc[:, :, pos] = flat[:, nh + nkv :]
        keys, values = kc[:, :, : pos + 1], vc[:, :, : pos + 1]
        if nh != nkv:
            # GQA: the g query heads of one KV head become g query positions (K/V read once).
            o = F.scaled_dot_product_attention(q.reshape(b, nkv, nh // nkv, d), keys, values)
        else:
            q = q.reshape(b, nh, 1, d)
            o = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias)
        return o.reshape(b, nh * d)

    def _prefill_attention(self, qkv, kc, vc, pos, rope, bias) -> torch.Tensor:
        """Causal attention of whole prompts from position 0; returns [batch, tokens, heads * D]."""
        if pos != 0:
            raise ValueError(f"native prefill must start at position 0, got {pos}")
        b, s, _ = qkv.shape
        nh, nkv, d = self.nh, self.nkv, self.d
        heads = qkv.view(b, s, nh + 2 * nkv, d)
        qk = heads[:, :, : nh + nkv]
        if rope is not None:
            cos, sin_signed = rope  # [s, 1, D]: rotate_half(x) * sin == roll(x) * signed sin
            qk = torch.addcmul(qk * cos, qk.roll(d // 2, dims=-1), sin_signed)
        q = qk[:, :, :nh].transpose(1, 2)
        k = qk[:, :, nh:].transpose(1, 2)
        v = heads[:, :, nh + nkv :].transpose(1, 2)
        kc[:, :, :s] = k
        vc[:, :, :s] = v
        if bias is not None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        elif nh != nkv and self.gqa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            if nh != nkv:
                k = k.repeat_interleave(nh // nkv, dim=1)
                v = v.repeat_interleave(nh // nkv, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(b, s, nh * d)


class NativeModel(nn.Module):
    """The shard as one module: embeddings, ``shard.num_layers`` layers, final norm, LM head.

    ``compile_mode`` (e.g. ``"max-autotune-no-cudagraphs"``) wraps each layer in
    ``torch.compile(dynamic=False)``; it composes with CUDA-graph capture of the whole step.
    """

    def __init__(
        self,
        shard: ShardSpec,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        std: float = 0.02,
        compile_mode: str | None = None,
        max_positions: int | None = None,
    ):
        super().__init__()
        self.shard = shard
        self.device_ = torch.device(device)
        self.dtype = dtype
        gen = torch.Generator(device=self.device_).manual_seed(seed)

        def new(shape: tuple[int, ...], kind: str) -> nn.Parameter:
            t = torch.empty(shape, device=self.device_, dtype=dtype)
            if kind in ("w", "b"):
                t.normal_(0.0, std, generator=gen)
            elif kind == "one":
                t.fill_(1.0)
            else:
                t.zero_()
            return nn.Parameter(t, requires_grad=False)

        h = shard.hidden_size
        self.family = shard.family
        self.embed = new((shard.vocab_size, h), "w")
        self.layers = nn.ModuleList([_Layer(shard, new) for _ in range(shard.num_layers)])
        self.norm_w = new((h,), "one")
        if self.family == "llama":
            self.lm_head = new((shard.vocab_size, h), "w")
            self.eps = shard.model.rms_norm_eps
        else:
            self.eps = shard.model.layer_norm_epsilon
            self.emb_ln_w = new((h,), "one")
            self.emb_ln_b = new((h,), "zero")
            self.norm_b = new((h,), "zero")
            self.lm_head = self.embed  # BLOOM ties the LM head to the embedding
        self.max_positions = max_positions or shard.model.max_context_tokens + 1
        if self.family == "llama":
            d = shard.head_dim
            inv = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
            t = torch.arange(self.max_positions, dtype=torch.float32)
            freqs = torch.outer(t, inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            sign = torch.cat((-torch.ones(d // 2), torch.ones(d // 2)))
            self.register_buffer("cos", emb.cos().to(self.device_, dtype), persistent=False)
            self.register_buffer("sin", emb.sin().to(self.device_, dtype), persistent=False)
            self.register_buffer(
                "sin_signed", (emb.sin() * sign).to(self.device_, dtype), persistent=False
            )
        else:
            slopes = torch.tensor(alibi_slopes(shard.model.num_attention_heads)[: shard.num_heads])
            pos = torch.arange(self.max_positions, dtype=torch.float32)
            alibi = (slopes[:, None, None] * pos[None, None, :]).to(self.device_, dtype)
            self.register_buffer("alibi", alibi, persistent=False)  # [heads, 1, positions]
        self._layer_fns = list(self.layers)
        if compile_mode:
            self._layer_fns = [
                torch.compile(m, mode=compile_mode, dynamic=False) for m in self.layers
            ]

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(self.shard, batch, max_len, self.device_, self.dtype)

    def random_ids(self, batch: int, length: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        ids = torch.randint(0, self.shard.vocab_size, (batch, length), generator=gen)
        return ids.to(self.device_)

    def _bias(self, s: int, pos: int) -> torch.Tensor | None:
        """BLOOM's additive attention bias: ALiBi (+ causal -inf for a prefill)."""
        if self.family != "bloom":
            return None
        if s == 1:
            return self.alibi[:, :, : pos + 1]
        causal = torch.full((s, s), float("-inf"), device=self.device_, dtype=self.dtype).triu(1)
        return self.alibi[:, :, :s] + causal

    def rope_matrix(self, pos: int) -> torch.Tensor:
        """[D, D] matrix R with x @ R = x * cos + rotate_half(x) * sin at position ``pos``
        (built with a few tiny kernels once per step, shared by every layer)."""
        h = self.shard.head_dim // 2
        c, sn = self.cos[pos], self.sin[pos]
        return torch.diag(c) + torch.diag(sn[:h], h) - torch.diag(sn[:h], -h)

    def forward(self, ids: torch.Tensor, pos: int, cache: KVCache) -> torch.Tensor:
        """Run ``ids`` [batch, tokens] at positions ``pos..``; return last-token logits."""
        s = ids.shape[1]
        if pos + s > min(cache.max_len, self.max_positions):
            raise ValueError(
                f"positions {pos}..{pos + s - 1} exceed the cache ({cache.max_len}) "
                f"or the model ({self.max_positions})"
            )
        x = F.embedding(ids, self.embed)
        rope = None
        if self.family == "llama":
            if s == 1:
                rope = self.rope_matrix(pos)
            else:
                rope = (self.cos[:s, None, :], self.sin_signed[:s, None, :])
        else:
            x = F.layer_norm(x, (x.shape[-1],), self.emb_ln_w, self.emb_ln_b, self.eps)
        bias = self._bias(s, pos)
        for i, layer in enumerate(self._layer_fns):
            x = layer(x, cache.k[i], cache.v[i], pos, rope, bias)
        x = x[:, -1]
        if self.family == "llama":
            x = F.rms_norm(x, (x.shape[-1],), self.norm_w, self.eps)
        else:
            x = F.layer_norm(x, (x.shape[-1],), self.norm_w, self.norm_b, self.eps)
        return F.linear(x, self.lm_head)

    @torch.no_grad()
    def load_from_hf(self, hf_model) -> None:
        """Copy the weights of a transformers model of the same (unsharded) shape into this one."""
        if self.family == "llama":
            base = hf_model.model
            self.embed.copy_(base.embed_tokens.weight)
            self.lm_head.copy_(hf_model.lm_head.weight)
            self.norm_w.copy_(base.norm.weight)
            for mine, theirs in zip(self.layers, base.layers, strict=True):
                a, m = theirs.self_attn, theirs.mlp
                mine.wqkv.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
                mine.wo.copy_(a.o_proj.weight)
                mine.wgu.copy_(torch.cat([m.gate_proj.weight, m.up_proj.weight]))
                mine.wdown.copy_(m.down_proj.weight)
                mine.ln1_w.copy_(theirs.input_layernorm.weight)
                mine.ln2_w.copy_(theirs.post_attention_layernorm.weight)
            return
        base = hf_model.transformer
        self.embed.copy_(base.word_embeddings.weight)
        self.emb_ln_w.copy_(base.word_embeddings_layernorm.weight)
        self.emb_ln_b.copy_(base.word_embeddings_layernorm.bias)
        self.norm_w.copy_(base.ln_f.weight)
        self.norm_b.copy_(base.ln_f.bias)
        nh, d = self.shard.num_heads, self.shard.head_dim
        for mine, theirs in zip(self.layers, base.h, strict=True):
            a, m = theirs.self_attention, theirs.mlp
            # BLOOM interleaves q, k, v per head: [heads, 3, head_dim] rows.
            w = a.query_key_value.weight.view(nh, 3, d, -1)
            bqkv = a.query_key_value.bias.view(nh, 3, d)
            mine.wqkv.copy_(torch.cat([w[:, i].reshape(nh * d, -1) for i in range(3)]))
            mine.bqkv.copy_(torch.cat([bqkv[:, i].reshape(nh * d) for i in range(3)]))
            mine.wo.copy_(a.dense.weight)
            mine.bo.copy_(a.dense.bias)
            mine.wup.copy_(m.dense_h_to_4h.weight)
            mine.bup.copy_(m.dense_h_to_4h.bias)
            mine.wdown.copy_(m.dense_4h_to_h.weight)
            mine.bdown.copy_(m.dense_4h_to_h.bias)
            mine.ln1_w.copy_(theirs.input_layernorm.weight)
            mine.ln1_b.copy_(theirs.input_layernorm.bias)
            mine.ln2_w.copy_(theirs.post_attention_layernorm.weight)
            mine.ln2_b.copy_(theirs.post_attention_layernorm.bias)
