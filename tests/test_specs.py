"""Model specs against the architectures: KV bytes by hand, fields and parameter counts against
transformers configs built with the published sizes (config.json values typed here; no
download)."""

from __future__ import annotations

import pytest

from characterize.modeling.specs import (
    SPEC_ROOT,
    SpecError,
    list_specs,
    load_gpu,
    load_machine,
    load_model,
)

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
# meta-llama/Llama-3.1-70B and meta-llama/Llama-3.1-8B config.json (transformers >= 4.43).
_LLAMA3_ROPE = dict(
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=8192,
    rope_type="llama3",
)
LLAMA31_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    rope_scaling=_LLAMA3_ROPE,
    tie_word_embeddings=False,
)
LLAMA31_8B = dict(
    LLAMA31_70B,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
)
LLAMA_CONFIGS = {"llama2-70b": LLAMA2_70B, "llama3.1-70b": LLAMA31_70B, "llama3.1-8b": LLAMA31_8B}


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


@pytest.mark.parametrize("name", ["llama3.1-70b", "llama3.1-8b"])
def test_llama31_spec_matches_transformers_config(name):
    from transformers import LlamaConfig

    cfg = LlamaConfig(**LLAMA_CONFIGS[name])
    spec = load_model(name)
    assert spec.family == "llama"
    assert spec.num_layers == cfg.num_hidden_layers
    assert spec.num_attention_heads == cfg.num_attention_heads
    assert spec.num_kv_heads == cfg.num_key_value_heads < cfg.num_attention_heads  # GQA
    assert spec.hidden_size == cfg.hidden_size
    assert spec.ffn_size == cfg.intermediate_size
    assert spec.vocab_size == cfg.vocab_size == 128_256
    assert spec.head_dim == cfg.hidden_size // cfg.num_attention_heads == cfg.head_dim
    assert spec.max_context_tokens == cfg.max_position_embeddings == 131_072
    assert spec.tie_word_embeddings == cfg.tie_word_embeddings
    assert spec.rms_norm_eps == cfg.rms_norm_eps
    rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": cfg.rope_theta}  # v5 / v4
    assert spec.rope_theta == rope["rope_theta"] == 500_000.0
    assert spec.gated_mlp and cfg.hidden_act == "silu"


def test_llama31_profile_sources():
    big, small, old = (
        load_model("llama3.1-70b"),
        load_model("llama3.1-8b"),
        load_model("llama2-70b"),
    )
    # 70B borrows Llama-2-70B's profiles: same layer shapes, same KV bytes per token
    assert big.phase_profile_model == "llama2-70b"
    assert big.layer_shapes == old.layer_shapes
    assert big.kv_bytes_per_token == old.kv_bytes_per_token == 327_680
    assert big.param_count > old.param_count  # the larger vocabulary: stated in the note
    assert "vocabulary" in big.profile_note and "8,192" in big.profile_note
    # 8B: its own profiles, none in the reference data (the note says so)
    assert small.phase_profile_model == "llama3.1-8b"
    assert "reference data" in small.profile_note
    assert small.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072
    assert old.phase_profile_model == "llama2-70b" and not old.profile_note


def test_profile_model_must_share_layer_shapes(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    text = (SPEC_ROOT / "models" / "llama3.1-8b.toml").read_text()
    text = text.replace('name = "llama3.1-8b"', 'name = "my-8b"')
    (models / "my-8b.toml").write_text(
        text.replace('profile_model = ""', 'profile_model = "llama2-70b"')
    )
    monkeypatch.setenv("SPLITBENCH_SPEC_PATH", str(tmp_path))
    load_model.cache_clear()
    try:
        with pytest.raises(SpecError, match="profile_model.*other layer shapes") as e:
            load_model("my-8b")
        assert "\n" not in str(e.value) and "my-8b.toml" in str(e.value)
    finally:
        load_model.cache_clear()


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
    ("name", "family"),
    [
        ("llama2-70b", "llama"),
        ("llama3.1-70b", "llama"),
        ("llama3.1-8b", "llama"),
        ("bloom-176b", "bloom"),
    ],
    ids=["llama", "llama3.1-70b", "llama3.1-8b", "bloom"],
)
def test_param_count_matches_meta_model(name, family):
    """Build the real-size model on the meta device (no memory) and count its weights."""
    import torch

    torch.set_num_threads(1)
    from transformers import BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM

    if family == "llama":
        cfg, cls = LlamaConfig(**LLAMA_CONFIGS[name]), LlamaForCausalLM
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
    expected = {
        "llama2-70b": 68.98e9,
        "llama3.1-70b": 70.55e9,
        "llama3.1-8b": 8.03e9,
        "bloom-176b": 176.2e9,
    }[name]
    assert abs(actual / expected - 1) < 2e-3


def test_gpu_and_machine_specs_consistent():
    for m in list_specs("machines"):
        spec = load_machine(m)
        assert spec.num_gpus == 8
        assert spec.gpu_power_w <= spec.gpu.power_limit_w
        assert spec.gpu.idle_power_w < spec.gpu_power_w
    assert load_machine("dgx-a100").power_budget_w == 8 * 400.0
    assert load_machine("dgx-h100-cap").profile_gpu == "h100-80gb-pcap"
    assert load_gpu("h200-141gb").memory_bytes > load_gpu("h100-80gb").memory_bytes


def test_unknown_spec_is_one_line_error():
    with pytest.raises(SpecError) as e:
        load_model("gpt-5")
    assert "\n" not in str(e.value) and "llama2-70b" in str(e.value)
