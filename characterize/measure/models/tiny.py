"""Tiny CPU smoke-test models (2 layers, hidden 64; not real models), torch-free.

Their specs are ordinary model specs (``characterize/modeling/specs/models/tiny-*.toml``,
marked there as CPU smoke-test models), so a profile of them is accepted by the fit and the
simulator like any other: ``characterize`` (CPU) -> ``splitbench-profiles fit`` -> replay ->
report runs end to end on a machine without a GPU. ``resolve_model(name)`` returns the spec.
"""

from __future__ import annotations

from characterize.modeling.specs import ModelSpec, load_model

TINY_MODEL_NAMES = ("tiny-llama", "tiny-llama-512", "tiny-bloom")
TINY_MODELS: dict[str, ModelSpec] = {name: load_model(name) for name in TINY_MODEL_NAMES}


def resolve_model(name: str) -> ModelSpec:
    """The spec of ``name`` (tiny smoke-test models included; raises ``SpecError``)."""
    return load_model(name)
