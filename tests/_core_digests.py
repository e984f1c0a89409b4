"""Test helper (run as a script): replays that cover the engine's paths, one sha256 each, as
JSON on stdout: ``{"core": ..., "digests": {case: sha256}}``. tests/test_core.py runs it once
on the compiled core and once on the Python source (SPLITBENCH_PURE_PYTHON=1) and compares."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _phase_fixtures import PMS  # noqa: E402
from _replay_designs import named_design  # noqa: E402

import replay  # noqa: E402
import traces  # noqa: E402
from replay import (  # noqa: E402
    KVTransferConfig,
    SchedulerConfig,
    ServingConfig,
    simulate,
)
from traces import transforms  # noqa: E402


def digest(res) -> str:
    h = hashlib.sha256()
    for df in (res.requests, res.iterations, res.request_gaps, res.pool_changes):
        h.update(df.to_csv().encode())
    h.update(json.dumps(res.summary.to_dict(), sort_keys=True, default=repr).encode())
    return h.hexdigest()


def cases():
    moon = traces.load("mooncake-conversation", sort=True).iloc[:1500].reset_index(drop=True)
    code = transforms.resample(traces.load("azure-code-2023", sort=True), 60.0, duration_s=60.0,
                               seed=3)  # fmt: skip
    cache = dict(prefix_caching=True, cache_aware_routing=True)
    mixed = dict(prompt_queue_threshold_tokens=4096, token_kv_threshold_fraction=0.3)
    yield "moon-split-cache-uncached-mixed", moon, named_design(
        "splitwise-hh", "llama3.1-70b", 3, 2, mixed_pool=True
    ), SchedulerConfig(**cache, **mixed, kv_transfer=KVTransferConfig(uncached_only=True))
    yield "moon-split-nocache-rr", moon, named_design(
        "splitwise-hh", "llama3.1-70b", 3, 2
    ), SchedulerConfig(policy="round-robin")
    yield "moon-base-vllm-cache", moon, named_design(
        "baseline-h100", "llama3.1-70b", machines=3
    ), SchedulerConfig(**cache, machine_policy="vllm")
    yield "moon-base-ref-cache", moon, named_design(
        "baseline-h100", "llama3.1-70b", machines=3
    ), SchedulerConfig(**cache)
    # tight KV memory: preemptions and recomputes, a random cluster policy
    yield "code-split-preempt-random", code, named_design(
        "splitwise-hh", "bloom-176b", 2, 1, kv_reserve_fraction=0.45
    ), SchedulerConfig(policy="random", max_preemptions=2, kv_watermark_fraction=0.0)
    yield "code-base-sequential-mixed", code, named_design(
        "baseline-h100", "bloom-176b", machines=2
    ), SchedulerConfig(mixed_batch="sequential")
    # vLLM's disaggregated serving (the vllm policy on a Splitwise design) with every serving
    # term set: hand-overs, the mixed pool, prefix caching; tight KV blocks and preemptions
    vsplit = named_design("splitwise-hh", "llama3.1-70b", 3, 2, mixed_pool=True)
    vsplit = replace(vsplit, machine_policy="vllm")
    yield "moon-split-vllm-serving-cache", moon, vsplit, SchedulerConfig(
        **cache, **mixed, machine_policy="vllm"
    ), SERVING
    yield "code-split-vllm-blocks-random", code, named_design(
        "splitwise-hh", "bloom-176b", 2, 1
    ), SchedulerConfig(policy="random", machine_policy="vllm",
                       vllm={"num_gpu_blocks": 2000}), SERVING  # fmt: skip


#: every term of the serving component (replay.serving) set
SERVING = ServingConfig(
    arrival_s=0.01, arrival_s_per_token=2e-5, delivery_s=0.003, iteration_s=0.002,
    iteration_s_per_request=1e-4, prefill_leg_s=0.004, prefill_leg_s_per_token=1e-6,
    decode_leg_s=0.006, decode_leg_s_per_token=1e-6, kv_load_s=0.001, kv_load_s_per_token=2e-6,
)  # fmt: skip


def main() -> int:
    out = {}
    for name, tr, design, sched, *serving in cases():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = simulate(tr, design, sched, phase_models=PMS, seed=7,
                           serving=serving[0] if serving else None)  # fmt: skip
        out[name] = digest(res)
        if "-v" in sys.argv:
            s = res.summary
            print(name, s.requests, "preemptions", getattr(s, "preemptions", None),
                  len(res.pool_changes), s.prefix_cache and s.prefix_cache["hit_blocks"],
                  file=sys.stderr)
    print(json.dumps({"core": replay.core_status()["core"], "digests": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
