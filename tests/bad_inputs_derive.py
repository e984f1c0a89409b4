"""Bad-input cases of ``splitbench-profiles derive`` (collected by tests/test_bad_inputs.py)."""

_BLOOM_ONLY = (
    "model,gpu,tp,phase,batch_size,tokens_per_request,latency_s,power_w,energy_j,repeats,"
    "latency_std_s,source\n"
    "bloom-176b,a100-80gb,8,prefill,1,512,0.17,,,5,,x\n"
    "bloom-176b,a100-80gb,8,decode,1,576,0.048,,,5,,x\n"
)

CASES = [
    {"id": "derive-unknown-target-gpu",
     "argv": ["splitbench-profiles", "derive", "--to", "x100", "--model", "llama2-70b",
              "--out", "{tmp}/results/o.csv"],
     "expect": "unknown gpu 'x100'", "files": {}, "exit": 2},
    {"id": "derive-unknown-source-gpu",
     "argv": ["splitbench-profiles", "derive", "--from", "z9", "--to", "h200-141gb",
              "--model", "llama2-70b", "--out", "{tmp}/results/o.csv"],
     "expect": "unknown gpu 'z9'", "files": {}, "exit": 2},
    {"id": "derive-model-absent-from-source",
     "argv": ["splitbench-profiles", "derive", "--source", "{tmp}/bloom.csv", "--from",
              "a100-80gb", "--to", "h200-141gb", "--model", "llama2-70b",
              "--out", "{tmp}/results/o.csv"],
     "expect": "no rows for llama2-70b/a100-80gb/tp8", "files": {"bloom.csv": _BLOOM_ONLY},
     "exit": 2},
    {"id": "derive-unknown-model",
     "argv": ["splitbench-profiles", "derive", "--to", "h200-141gb", "--model", "gpt-5",
              "--out", "{tmp}/results/o.csv"],
     "expect": "unknown model 'gpt-5'", "files": {}, "exit": 2},
    {"id": "derive-tp-not-measured",
     "argv": ["splitbench-profiles", "derive", "--from", "a100-80gb", "--to", "h200-141gb",
              "--model", "llama2-70b", "--tp", "3", "--out", "{tmp}/results/o.csv"],
     "expect": "tp3", "files": {}, "exit": 2},
    {"id": "derive-tp-not-integer",
     "argv": ["splitbench-profiles", "derive", "--to", "h200-141gb", "--model", "llama2-70b",
              "--tp", "eight", "--out", "{tmp}/results/o.csv"],
     "expect": "--tp", "files": {}, "exit": 2},
    {"id": "derive-no-out",
     "argv": ["splitbench-profiles", "derive", "--to", "h200-141gb", "--model", "llama2-70b"],
     "expect": "--out", "files": {}, "exit": 2},
]  # fmt: skip
