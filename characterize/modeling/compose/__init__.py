"""Profiles composed from measured operator latencies (AIConfigurator, the ``aic`` extra).

NVIDIA's AIConfigurator (``aiconfigurator-core``, Apache-2.0; Xu et al., "AIConfigurator",
arXiv 2601.06288) ships per-operation latencies measured inside vLLM, SGLang and TensorRT-LLM
under CUDA graphs on A100/H100/H200/B200, with a model layer that composes them into iteration
latencies. This package turns those into contract-2 profile tables (:mod:`.table`), adds an
engine overhead fitted on the package's measured serving points (:mod:`.overhead`,
:mod:`.fit`, :mod:`.closed_loop`), and regenerates the committed tables (:mod:`.build`).
The package is imported lazily, only where a table is composed or a fit is run
(:mod:`.library`); the committed tables under ``characterize/modeling/data/composed/`` are read
like any other profile CSV. Torch-free.
"""

from characterize.modeling.compose.library import ComposeError
from characterize.modeling.compose.overhead import EngineOverhead

__all__ = ["ComposeError", "EngineOverhead"]
