"""Bad inputs of the vllm machine policy (collected by tests/test_bad_inputs.py; format in
COMMON.md)."""

_TINY = ["design.machines=1", "trace.resample_rate=2", "trace.resample_duration_s=5",
         "progress=false"]  # fmt: skip

CASES = [
    {"id": "replay-vllm-budget-below-seqs",
     "argv": ["splitbench-replay", "design=baseline-h100-chunked", *_TINY,
              "scheduler.vllm.max_num_batched_tokens=64"],
     "expect": "scheduler.vllm.max_num_batched_tokens: must be >= max_num_seqs (256)",
     "files": {}, "exit": 2},
    {"id": "replay-vllm-block-size-zero",
     "argv": ["splitbench-replay", "design=baseline-h100-chunked", *_TINY,
              "scheduler.vllm.block_size=0"],
     "expect": "scheduler.vllm.block_size: must be an integer >= 1", "files": {}, "exit": 2},
    {"id": "replay-disaggregated-terms-on-reference-split",
     "argv": ["splitbench-replay", "design=splitwise-hh", "design.prompt_machines=1",
              "design.token_machines=1", "trace.resample_rate=2", "trace.resample_duration_s=5",
              "progress=false", "serving.kv_load_s=0.001"],
     "expect": "serving.kv_load_s: the disaggregated serving terms model vLLM's disaggregated "
               "serving", "files": {}, "exit": 2},
    {"id": "replay-vllm-num-gpu-blocks-zero",
     "argv": ["splitbench-replay", "design=baseline-h100-chunked", *_TINY,
              "scheduler.vllm.num_gpu_blocks=0"],
     "expect": "scheduler.vllm.num_gpu_blocks: must be an integer >= 1 or null, got 0",
     "files": {}, "exit": 2},
    {"id": "replay-machine-policy-unknown",
     "argv": ["splitbench-replay", "design=baseline-h100", "design.machine_policy=sarathi",
              *_TINY],
     "expect": "design.machine_policy: unknown value 'sarathi'", "files": {}, "exit": 2},
]  # fmt: skip
