"""``splitbench-characterize engine=vllm``: build the in-process vLLM engine for the profiler.

The profiler (:func:`characterize.measure.profiler.profile_phase`) then times vLLM's own
iterations with the same sweep, resume, infeasible and power handling as the suite's harness
(see :mod:`characterize.measure.vllm_engine`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.config.vllm import VLLMConf
from experiments.errors import ExperimentError


def vllm_engine(v: VLLMConf, pc):
    """(ProfileConfig with the vLLM run name, VLLMEngine) for the ``vllm`` group of a
    characterize config and its checked ProfileConfig ``pc``."""
    model_dir = Path(str(v.model_dir))
    if not (model_dir / "config.json").exists():
        raise ExperimentError(
            f"vllm.model_dir: {model_dir} holds no config.json (make vllm-model builds one)"
        )
    if pc.layers is not None:
        raise ExperimentError("layers: engine=vllm runs the whole model folder (set layers=null)")
    if pc.tp != 1:
        raise ExperimentError(f"shard.tp: engine=vllm profiles one device (tp=1), got {pc.tp}")
    for key in ("max_num_batched_tokens", "max_num_seqs", "max_model_len", "kvcache_gib"):
        if int(getattr(v, key)) < 1:
            raise ExperimentError(f"vllm.{key}: must be >= 1, got {getattr(v, key)}")
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ExperimentError("engine: vllm is not installed here (make vllm)") from None
    from characterize.measure.vllm_engine import VLLMEngine, VLLMOptions

    t = pc.timing
    dtype = pc.dtype if pc.dtype != "auto" else ("float32" if pc.device == "cpu" else "bfloat16")
    opts = VLLMOptions(
        model_dir=str(model_dir),
        max_num_batched_tokens=int(v.max_num_batched_tokens),
        max_num_seqs=int(v.max_num_seqs),
        max_model_len=int(v.max_model_len),
        dtype=dtype,
        enforce_eager=bool(v.enforce_eager),
        device=pc.device,
        kvcache_gib=int(v.kvcache_gib),
        omp_bind=v.omp_bind,
        max_decode_steps=t.warmup + 2 + t.max_repeats,
        seed=pc.seed,
    )
    engine = VLLMEngine(opts)
    name = pc.run_name or f"{pc.model}-tp{pc.tp}-vllm{engine.version}-{pc.device}-{pc.sweep.name}"
    return dataclasses.replace(pc, run_name=name, impl="vllm"), engine
