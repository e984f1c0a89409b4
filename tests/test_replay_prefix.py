"""Prefix caching in the replay: suffix-only prefill pricing, cache-aware routing, uncached-only
KV transfers, the summary block, and caching off leaving every result as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _phase_fixtures import H100, PMS
from _replay_designs import named_design as make_design

from characterize.modeling.specs import load_machine, load_model
from replay import (
    KVTransferConfig,
    ReplayError,
    SchedulerConfig,
    baseline,
    simulate,
)

ON = SchedulerConfig(prefix_caching=True)
ROUTE = SchedulerConfig(prefix_caching=True, cache_aware_routing=True)


def trace(rows, block_tokens=512):
    """rows: (arrival_s, prompt_tokens, output_tokens, block hashes)."""
    df = pd.DataFrame(
        [r[:3] for r in rows], columns=["arrival_s", "prompt_tokens", "output_tokens"]
    )
    df.insert(0, "request_id", np.arange(len(df)))
    df["block_hashes"] = pd.Series([tuple(r[3]) for r in rows], dtype=object)
    df.attrs["block_tokens"] = block_tokens
    return df


def test_cached_prefix_prices_only_the_suffix():
    # B shares A's first 3 blocks (1536 tokens) and has 2 more of its own
    rows = [(0.0, 2048, 1, (1, 2, 3, 4)), (10.0, 2500, 1, (1, 2, 3, 8, 9))]
    d = make_design("baseline-h100", "llama2-70b", machines=1)
    res = simulate(trace(rows), d, ON, phase_models=PMS)
    ttft = res.requests["ttft_s"].to_numpy()
    assert ttft[0] == pytest.approx(H100.prefill_time_sums(1, 2048, 2048**2), rel=1e-12)
    s, p = 1536, 2500  # linear terms on the 964-token suffix, attention on p^2 - s^2
    assert ttft[1] == pytest.approx(H100.prefill_time_sums(1, p - s, p * p - s * s), rel=1e-12)
    pc = res.summary.prefix_cache
    assert pc["lookups"] == 2 and pc["hits"] == 1
    assert pc["lookup_blocks"] == 9 and pc["hit_blocks"] == 3
    assert pc["block_hit_rate"] == pytest.approx(3 / 9)
    assert pc["saved_tokens"] == 1536 and pc["prefill_prompt_tokens"] == 4548
    assert pc["saved_fraction"] == pytest.approx(1536 / 4548)
    assert pc["ttft_s_hit"]["p50"] == pytest.approx(ttft[1])
    assert pc["ttft_s_miss"]["p50"] == pytest.approx(ttft[0])
    # the iteration table records the tokens computed (energy: prefill_power of those)
    assert sorted(res.iterations["prefill_tokens"].tolist()) == [964, 2048]
    text = res.format_summary()
    assert "prefix cache hit rate 0.333 of blocks" in text and "saved 1,536" in text


def test_full_hit_still_computes_one_token():
    rows = [(0.0, 1024, 1, (1, 2)), (10.0, 1024, 1, (1, 2))]
    d = make_design("baseline-h100", "llama2-70b", machines=1)
    res = simulate(trace(rows), d, ON, phase_models=PMS)
    ttft = res.requests["ttft_s"].to_numpy()
    assert ttft[1] == pytest.approx(H100.prefill_time_sums(1, 1, 1024**2 - 1023**2), rel=1e-12)
    assert res.summary.prefix_cache["saved_tokens"] == 1023


def test_caching_off_ignores_the_hashes_and_leaves_summary_as_before():
    rows = [(0.0, 2048, 3, (1, 2, 3, 4)), (0.5, 2048, 4, (1, 2, 3, 4)), (0.6, 700, 2, (7, 8))]
    d = make_design("splitwise-hh", "llama2-70b", 1, 1)
    t = trace(rows)
    off = simulate(t, d, SchedulerConfig(), phase_models=PMS)
    plain = simulate(t.drop(columns=["block_hashes"]), d, SchedulerConfig(), phase_models=PMS)
    a, b = off.summary.to_dict(), plain.summary.to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert "prefix_cache" not in a
    assert "prefix_caching" not in a["scheduler"] and "cache_aware_routing" not in a["scheduler"]
    assert "uncached_only" not in a["scheduler"]["kv_transfer"]
    on = simulate(t, d, ON, phase_models=PMS).summary.to_dict()
    assert on["scheduler"]["prefix_caching"] is True
    assert on["scheduler"]["kv_transfer"]["uncached_only"] is False
    assert on["prefix_cache"]["hits"] == 1
    # a hit shortens the second prompt: its TTFT drops, nothing else about the first changes
    assert on["ttft_s"]["p50"] < a["ttft_s"]["p50"]


def test_cache_aware_routing_follows_the_prefix_against_load():
    # A (blocks 1-4) is prefilled on machine 0 and D on machine 1; then E holds machine 0's
    # decode load (1024 tokens) when B (A's prefix) arrives: jsq sends B to machine 1, the
    # cache-aware router to machine 0 (1024 - 2047 cached tokens < 0)
    rows = [
        (0.0, 2048, 1, (1, 2, 3, 4)),
        (0.0, 100, 1, (9,)),
        (10.0, 1024, 400, (5, 6)),
        (10.5, 2048, 1, (1, 2, 3, 4)),
    ]
    d = make_design("baseline-h100", "llama2-70b", machines=2)
    t = trace(rows)
    jsq = simulate(t, d, ON, phase_models=PMS).requests["prompt_machine"].tolist()
    aware = simulate(t, d, ROUTE, phase_models=PMS)
    assert jsq == [0, 1, 0, 1]
    assert aware.requests["prompt_machine"].tolist() == [0, 1, 0, 0]
    assert aware.summary.prefix_cache["hits"] == 1
    assert aware.summary.prefix_cache["cache_aware_routing"] is True
    # without a cached prefix anywhere the cache-aware router is jsq
    cold = trace([(r[0], r[1], r[2], (100 + i,)) for i, r in enumerate(rows)])
    assert simulate(cold, d, ROUTE, phase_models=PMS).requests["prompt_machine"].tolist() == jsq


def _kv_ready(p, start, end_prefill, model, bw):
    nbytes = model.kv_bytes_per_token * p
    if p >= 512:
        return max(start + nbytes / bw, end_prefill + nbytes / model.num_layers / bw + 0.005)
    return end_prefill + nbytes / bw


def test_uncached_only_transfer_sends_what_the_token_machine_lacks():
    rows = [(0.0, 2048, 3, (1, 2, 3, 4)), (20.0, 2300, 3, (1, 2, 3, 5, 6))]
    d = make_design("splitwise-hh", "llama2-70b", 1, 1)
    model, spec = load_model("llama2-70b"), load_machine("dgx-h100")
    t = trace(rows)
    whole = simulate(t, d, ON, phase_models=PMS)
    cfg = SchedulerConfig(prefix_caching=True, kv_transfer=KVTransferConfig(uncached_only=True))
    part = simulate(t, d, cfg, phase_models=PMS)
    bw = spec.network_bytes_per_s
    for res, sent in ((whole, 2300), (part, 2300 - 1536)):
        r = res.requests.iloc[1]
        end = 20.0 + r.ttft_s
        assert r.kv_transfer_s == pytest.approx(
            _kv_ready(sent, 20.0, end, model, bw) - end, rel=1e-9
        )
    assert whole.summary.prefix_cache["transfer_saved_tokens"] == 0
    assert part.summary.prefix_cache["transfer_saved_tokens"] == 1536
    assert part.summary.prefix_cache["transfer_uncached_only"] is True
    assert part.requests.iloc[1].kv_transfer_s < whole.requests.iloc[1].kv_transfer_s


def test_cache_capacity_is_the_free_kv_memory():
    rows = [(0.1 * i, 3000, 50, tuple(range(10 * i, 10 * i + 6))) for i in range(8)]
    d = make_design("baseline-h100", "llama2-70b", machines=1)
    res = simulate(trace(rows), d, ON, phase_models=PMS)
    m = res.cluster.machines[0]
    assert m.pc.capacity == m.cap // 512  # all memory free at the end
    assert len(m.pc) == 8 * 6  # every prompt's blocks were cached after its prefill
    # a machine whose running requests leave no room keeps no cache
    m.C = m.cap
    m.wake(res.cluster.end_time)  # an idle wake-up refits the cache
    assert m.pc.capacity == 0 and len(m.pc) == 0


def test_prefix_caching_needs_block_hashes_and_valid_options():
    d = make_design("baseline-h100", "llama2-70b", machines=1)
    t = trace([(0.0, 100, 2, (1,))])
    with pytest.raises(ReplayError, match=r"^scheduler.prefix_caching: the trace has no"):
        simulate(t.drop(columns=["block_hashes"]), d, ON, phase_models=PMS)
    t.attrs["block_tokens"] = None
    with pytest.raises(ReplayError, match=r"attrs\['block_tokens'\]"):
        simulate(t, d, ON, phase_models=PMS)
    with pytest.raises(ReplayError, match=r"^scheduler.cache_aware_routing: needs scheduler"):
        SchedulerConfig(cache_aware_routing=True)
    with pytest.raises(ReplayError, match=r"^scheduler.cache_aware_routing: needs scheduler.pol"):
        SchedulerConfig(prefix_caching=True, cache_aware_routing=True, policy="random")
    with pytest.raises(ReplayError, match=r"^scheduler.kv_transfer.uncached_only: needs"):
        SchedulerConfig(kv_transfer=KVTransferConfig(uncached_only=True))
    with pytest.raises(ReplayError, match=r"^scheduler.prefix_caching: must be true or false"):
        SchedulerConfig(prefix_caching="yes")


@pytest.mark.parametrize("policy", ["reference", "vllm"])
def test_block_ids_that_do_not_name_their_prefix_stop_the_replay(policy):
    # request 1 starts with id 2, which request 0 holds after id 1: not a prefix id
    rows = [(0.0, 1024, 1, (1, 2)), (10.0, 1024, 1, (2, 3))]
    d = make_design("baseline-h100", "llama2-70b", machines=1)
    sched = SchedulerConfig(prefix_caching=True, machine_policy=policy)
    with pytest.raises(ReplayError, match=r"^request 1: block id 2 at position 0 of a prompt"):
        simulate(trace(rows), d, sched, phase_models=PMS)


def test_prefix_caching_is_deterministic():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        p = int(rng.integers(600, 3900))
        root = int(rng.integers(0, 5))
        nb = -(-p // 512)
        rows.append(
            (i * 0.05, p, int(rng.integers(2, 60)), tuple(root * 1000 + k for k in range(nb)))
        )
    d = make_design("splitwise-hh", "llama2-70b", 2, 2)
    cfg = SchedulerConfig(
        prefix_caching=True, cache_aware_routing=True,
        kv_transfer=KVTransferConfig(uncached_only=True),
    )  # fmt: skip
    a = simulate(trace(rows), d, cfg, phase_models=PMS).summary.to_dict()
    b = simulate(trace(rows), d, cfg, phase_models=PMS).summary.to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert 0 < a["prefix_cache"]["block_hit_rate"] < 1
    assert a["requests"]["completed"] == 300


def test_extrapolation_notes_are_in_the_summary_and_deterministic():
    import warnings

    from characterize.modeling.phase_model import ExtrapolationWarning, load_phase_models
    from replay.summary import format_summary

    pms = load_phase_models("reference")
    pm = pms.get("llama2-70b", "h100-80gb", 8)
    long = pm.max_prompt_tokens + 3000  # one prompt longer than measured; fits the KV memory
    t = pd.DataFrame({"request_id": [0, 1], "arrival_s": [0.0, 1.0],
                      "prompt_tokens": [500, long], "output_tokens": [4, 4]})  # fmt: skip
    d = baseline("dgx-h100", 1, "llama2-70b")
    cfg = SchedulerConfig(enforce_max_context=False)
    runs = []
    for _ in range(2):  # the phase model's once-only warning state does not leak into results
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            runs.append(simulate(t, d, cfg, phase_models=pms))
        assert any(issubclass(w.category, ExtrapolationWarning) for w in rec)
    a, b = (r.summary.to_dict() for r in runs)
    assert a == b
    notes = a["extrapolated"]
    assert any(f"a prompt of {long} tokens" in n and "llama2-70b, h100" in n for n in notes)
    assert any(n.startswith("slowdown reference: ") for n in notes)
    assert "extrapolated PhaseModel(llama2-70b, h100-80gb" in format_summary(a)
    # inside the measured range: no key in summary.json
    short = simulate(t.assign(prompt_tokens=[500, 600]), d, cfg, phase_models=pms)
    assert "extrapolated" not in short.summary.to_dict() and not short.summary.extrapolated
