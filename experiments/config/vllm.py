"""Config schema of the vLLM engine of ``splitbench-characterize`` (``engine=vllm``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VLLMConf:
    model_dir: str = field(
        default="results/models/tiny-llama-512",
        metadata={"help": "a transformers model folder (make vllm-model builds the tiny Llama)"},
    )
    max_num_batched_tokens: int = field(default=4096, metadata={"help": "chunked-prefill budget"})
    max_num_seqs: int = field(default=64, metadata={"help": "vLLM's max_num_seqs"})
    max_model_len: int = field(default=4096, metadata={"help": "vLLM's max_model_len"})
    enforce_eager: bool = field(default=True, metadata={"help": "no CUDA graphs / compile"})
    kvcache_gib: int = field(default=1, metadata={"help": "CPU: VLLM_CPU_KVCACHE_SPACE (GiB)"})
    omp_bind: str | None = field(default=None, metadata={"help": "CPU: VLLM_CPU_OMP_THREADS_BIND"})


#: the model spec name of the tiny Llama that ``make vllm-model`` builds
