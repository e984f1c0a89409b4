"""``model``: the model spec (``characterize/modeling/specs/models``: layers, KV heads, head size,
KV bytes per token, vocabulary) and the served folder, which must have the spec's shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments.errors import ExperimentError
from experiments.validation.schema.checks import need

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class ModelConf:
    name: str = "tiny-llama-512"  # model spec (layers, heads, KV bytes, vocabulary ...)
    dir: str = ""  # the served folder (config.json + weights); built from the spec when build
    build: bool = True  # build a random-weight folder of the spec's shape (false: your own)
    seed: int = 0  # weight seed of a built folder

    def spec(self):
        from characterize.modeling.specs import SpecError, load_model

        try:
            return load_model(self.name)
        except SpecError as e:
            raise ExperimentError(f"model.name: {str(e).splitlines()[0]}") from None

    def check(self, dtype: str, key: str = "model") -> None:
        spec = self.spec()
        need(bool(self.dir), f"{key}.dir", "must be set (a model folder)")
        need(self.seed >= 0, f"{key}.seed", f"must be >= 0, got {self.seed}")
        need(spec.family == "llama" or not self.build, f"{key}.build",
             f"can build only llama-family folders; spec '{spec.name}' is {spec.family}")  # fmt: skip
        need(spec.hidden_size % spec.num_attention_heads == 0 or not self.build, f"{key}.name",
             "hidden_size must be a multiple of num_attention_heads to build the folder")  # fmt: skip
        if not self.build:
            check_model_dir(self.dir, spec, f"{key}.dir")
        nbytes = DTYPE_BYTES.get(dtype)
        if nbytes is not None and spec.kv_bytes_per_element != nbytes:
            raise ExperimentError(
                f"deploy.dtype: {dtype} ({nbytes} bytes) disagrees with model spec "
                f"'{spec.name}' (kv_bytes_per_element {spec.kv_bytes_per_element})"
            )


#: transformers config.json key -> ModelSpec field (the shape facts a served folder must share)
_HF_KEYS = {
    "num_hidden_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_kv_heads",
    "intermediate_size": "ffn_size",
    "vocab_size": "vocab_size",
}


def check_model_dir(path: str, spec, key: str = "model.dir") -> dict:
    """The folder's ``config.json``; ExperimentError when it is missing or its shape is not the
    spec's (the simulator and the calibration would price another model)."""
    import json

    f = Path(path) / "config.json"
    try:
        cfg = json.loads(f.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{key}: no config.json in {path}") from None
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{key}: {f}: not readable JSON ({e})") from None
    need(isinstance(cfg, dict), key, f"{f}: not a JSON object")
    for hf, sf in _HF_KEYS.items():
        if hf in cfg and cfg[hf] != getattr(spec, sf):
            raise ExperimentError(
                f"{key}: {f}: {hf} = {cfg[hf]!r}, but model spec '{spec.name}' has {sf} = "
                f"{getattr(spec, sf)} (set model.name to this folder's spec)"
            )
    hd = cfg.get("head_dim") or (
        cfg["hidden_size"] // cfg["num_attention_heads"]
        if isinstance(cfg.get("hidden_size"), int) and cfg.get("num_attention_heads")
        else None
    )
    if hd is not None and hd != spec.head_dim:
        raise ExperimentError(f"{key}: {f}: head size {hd}, but model spec '{spec.name}' has "
                              f"head_dim = {spec.head_dim}")  # fmt: skip
    return cfg
