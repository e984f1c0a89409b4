"""Bad inputs of prefix caching (collected by tests/test_bad_inputs.py; format in COMMON.md)."""

_TINY = ["design=baseline-h100", "design.machines=1", "trace.resample_rate=2",
         "trace.resample_duration_s=5", "progress=false"]  # fmt: skip

CASES = [
    {
        "id": "prefix-cache-trace-without-hashes",
        "argv": ["splitbench-replay", *_TINY, "scheduler=prefix-cache"],
        "expect": "scheduler.prefix_caching: the trace has no 'block_hashes' column",
        "files": {},
        "exit": 2,
    },
    {
        "id": "prefix-cache-aware-routing-without-caching",
        "argv": ["splitbench-replay", *_TINY, "scheduler.cache_aware_routing=true"],
        "expect": "scheduler.cache_aware_routing: needs scheduler.prefix_caching",
        "files": {},
        "exit": 2,
    },
    {
        "id": "prefix-cache-aware-routing-random-policy",
        "argv": [
            "splitbench-replay",
            *_TINY,
            "trace=mooncake-conversation",
            "scheduler=prefix-cache-aware",
            "scheduler.policy=random",
        ],
        "expect": "scheduler.cache_aware_routing: needs scheduler.policy jsq",
        "files": {},
        "exit": 2,
    },
    {
        "id": "prefix-cache-uncached-only-without-caching",
        "argv": ["splitbench-replay", *_TINY, "scheduler.kv_transfer.uncached_only=true"],
        "expect": "scheduler.kv_transfer.uncached_only: needs scheduler.prefix_caching",
        "files": {},
        "exit": 2,
    },
]
