"""Models the profiler runs: TP shards of Llama-2-70B / BLOOM-176B with random weights.

This package's ``__init__`` is torch-free (shard arithmetic, tiny test specs). The torch parts
are the submodules ``characterize.measure.models.native`` (the suite's own compact implementation,
``splitbench-native``), ``characterize.measure.models.hf`` (transformers' modeling code) and
``characterize.measure.models.engine`` (a common timing interface over both).
"""

from characterize.measure.models.shard import ShardSpec
from characterize.measure.models.tiny import TINY_MODELS, resolve_model

IMPLS = ("native", "transformers")
ENGINE_NAMES = {"native": "splitbench-native", "transformers": "transformers"}

__all__ = ["ENGINE_NAMES", "IMPLS", "TINY_MODELS", "ShardSpec", "resolve_model"]
