"""Model specs against the architectures: KV bytes by hand, fields and parameter counts against
transformers configs built with the published sizes (config.json values typed here; no
download)."""

from __future__ import annotations

import pytest

from characterize.modeling.specs import SpecError, list_specs, load_gpu, load_machine, load_model

# Published config.json values (meta-llama/Llama-2-70b-hf, bigscience/bloom).
LLAMA2_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=32000,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
BLOOM_176B = dict(hidden_size=14336, n_layer=70, n_head=112, vocab_size=250880)


def test_kv_bytes_per_token_by_hand():
    # 2 (K and V) x layers x kv_heads x head_dim x 2 bytes
    assert load_model("llama2-70b").kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680
    assert load_model("bloom-176b").kv_bytes_per_token == 2 * 70 * 112 * 128 * 2 == 4_014_080


def test_llama_spec_matches_transformers_config():
    from transformers import LlamaConfig

    cfg = LlamaConfig(**LLAMA2_70B)
    spec = load_model("llama2-70b")
    assert spec.num_layers == cfg.num_hidden_layers
    assert spec.num_attention_heads == cfg.num_attention_heads
    assert spec.num_kv_heads == cfg.num_key_value_heads
    assert spec.hidden_size == cfg.hidden_size
    assert spec.ffn_size == cfg.intermediate_size
    assert spec.vocab_size == cfg.vocab_size
    assert spec.head_dim == cfg.hidden_size // cfg.num_attention_heads
    assert spec.tie_word_embeddings == cfg.tie_word_embeddings
    assert spec.gated_mlp  # SwiGLU
    assert spec.rms_norm_eps == cfg.rms_norm_eps


def test_bloom_spec_matches_transformers_config():
    from transformers import BloomConfig

    cfg = BloomConfig(**BLOOM_176B)
    spec = load_model("bloom-176b")
    assert spec.num_layers == cfg.n_layer == cfg.num_hidden_layers
    assert spec.num_attention_heads == cfg.n_head
    assert spec.num_kv_heads == cfg.n_head  # multi-head attention: every head keeps KV
    assert spec.hidden_size == cfg.hidden_size
    assert spec.ffn_size == 4 * cfg.hidden_size  # BloomMLP: dense_h_to_4h
    assert spec.vocab_size == cfg.vocab_size
    assert spec.head_dim == cfg.hidden_size // cfg.n_head
    assert spec.tie_word_embeddings == cfg.tie_word_embeddings
    assert not spec.gated_mlp


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "family"), [("llama2-70b", "llama"), ("bloom-176b", "bloom")], ids=["llama", "bloom"]
)
def test_param_count_matches_meta_model(name, family):
    """Build the real-size model on the meta device (no memory) and count its weights."""
    import torch

    torch.set_num_threads(1)
    from transformers import BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM

    if family == "llama":
        cfg, cls = LlamaConfig(**LLAMA2_70B), LlamaForCausalLM
    else:
        cfg, cls = BloomConfig(**BLOOM_176B), BloomForCausalLM
    with torch.device("meta"):
        model = cls(cfg)
    actual = sum(p.numel() for p in model.parameters())
    spec = load_model(name)
    # the spec ignores norms and biases: under 0.1 %
    assert spec.param_count <= actual
    assert (actual - spec.param_count) / actual < 1e-3
    # and it is the published size
    expected = {"llama2-70b": 68.98e9, "bloom-176b": 176.2e9}[name]
    assert abs(actual / expected - 1) < 2e-3


def test_gpu_and_machine_specs_consistent():
    for m in list_specs("machines"):
        spec = load_machine(m)
        assert spec.num_gpus == (1 if m == "cpu" else 8)  # the CPU smoke-test "machine"
        assert spec.gpu_power_w <= spec.gpu.power_limit_w
        assert spec.gpu.idle_power_w < spec.gpu_power_w
    assert load_machine("dgx-a100").power_budget_w == 8 * 400.0
    assert load_machine("dgx-h100-cap").profile_gpu == "h100-80gb-pcap"
    assert load_gpu("h200-141gb").memory_bytes > load_gpu("h100-80gb").memory_bytes


def test_unknown_spec_is_one_line_error():
    with pytest.raises(SpecError) as e:
        load_model("gpt-5")
    assert "\n" not in str(e.value) and "llama2-70b" in str(e.value)


def test_cpu_smoke_specs_are_marked_and_accepted():
    """The tiny CPU models and the CPU device are real specs (so fit and replay take them), and
    say they are smoke-test stand-ins."""
    from characterize.modeling.profiles import known_profile_gpus

    for name in ("tiny-llama", "tiny-bloom"):
        spec = load_model(name)
        assert "smoke test" in spec.display_name and spec.num_layers == 2
    assert load_model("tiny-llama").kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    cpu = load_machine("cpu")
    assert cpu.profile_gpu == "cpu" and "not a GPU" in cpu.gpu.display_name
    assert "cpu" in known_profile_gpus()
