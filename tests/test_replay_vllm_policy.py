"""replay: the ``vllm`` machine policy (vLLM V1 chunked prefill) against hand-computed iteration
sequences: chunking of a long prompt, the budget shared with decodes, max_num_seqs, KV blocks and
preemption by recompute; and against a per-iteration reference of vLLM's scheduling loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _phase_fixtures import H100, PMS

from replay import (
    DesignConfig,
    DesignError,
    ReplayError,
    SchedulerConfig,
    baseline,
    simulate,
    splitwise,
)

PM = H100
C_ = PM.decode_per_context_token_s


def trace(rows):
    df = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    df.insert(0, "request_id", np.arange(len(df)))
    return df


def sched(mixed_batch="fused", **vllm):
    return SchedulerConfig(enforce_max_context=False, mixed_batch=mixed_batch, vllm=vllm)


def run(rows, reserve=0.1, mixed_batch="fused", **vllm):
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy="vllm", kv_reserve_fraction=reserve)
    return simulate(trace(rows), d, sched(mixed_batch, **vllm), phase_models=PMS)


def pf(chunks, decodes=()):
    """Fused iteration: chunks = [(tokens, computed before)], decodes = contexts held."""
    n = len(chunks)
    t = sum(x for x, _ in chunks)
    s = sum((o + x) ** 2 - o * o for x, o in chunks)
    b = len(decodes)
    if not n:
        return PM.decode_time(b, sum(decodes))
    if not b:
        return PM.prefill_time_sums(n, t, s)
    return PM.prefill_time_sums(n, t + b, s + b) + C_ * sum(decodes)


def test_long_prompt_is_chunked_over_iterations():
    p, o = 20000, 3
    res = run([(0.5, p, o)])
    it = [pf([(8192, 0)]), pf([(8192, 8192)]), pf([(3616, 16384)])]
    ttft = sum(it)
    r = res.requests.iloc[0]
    assert r.ttft_s == pytest.approx(ttft, rel=1e-12)
    # the chunks' squared-token shares add up to the whole prompt's
    assert (
        sum((o0 + x) ** 2 - o0 * o0 for x, o0 in [(8192, 0), (8192, 8192), (3616, 16384)]) == p * p
    )
    dec = PM.decode_time(1, p + 1) + PM.decode_time(1, p + 2)
    assert r.e2e_s == pytest.approx(ttft + dec, rel=1e-12)
    assert r.queue_s == 0.0 and r.preemptions == 0
    assert res.iterations.prefill_tokens.tolist()[:3] == [8192, 8192, 3616]


def test_budget_is_shared_with_decodes_and_partial_prefill_continues_first():
    # budget 1000: A (300) completes in iteration 1, B (1500) gets 700 then 800 beside A's decode
    res = run([(0.0, 300, 4), (0.0, 1500, 2)], max_num_batched_tokens=1000, max_num_seqs=4)
    d1 = pf([(300, 0), (700, 0)])
    d2 = pf([(800, 700)], decodes=[301])
    d3 = pf([], decodes=[302, 1501])
    d4 = pf([], decodes=[303])
    rq = res.requests
    assert rq.ttft_s.tolist() == pytest.approx([d1, d1 + d2], rel=1e-12)
    assert rq.e2e_s.tolist() == pytest.approx([d1 + d2 + d3 + d4, d1 + d2 + d3], rel=1e-12)
    it = res.iterations
    assert it.prefill_tokens.tolist()[:2] == [1000, 800]
    assert it.batch_size.tolist()[:2] == [0, 1]


def test_max_num_seqs_holds_the_third_request_back():
    res = run([(0.0, 100, 3)] * 3, max_num_batched_tokens=1000, max_num_seqs=2)
    d1 = pf([(100, 0), (100, 0)])
    d2 = pf([], [101, 101])
    d3 = pf([], [102, 102])
    d4 = pf([(100, 0)])
    d5, d6 = pf([], [101]), pf([], [102])
    rq = res.requests
    t3 = d1 + d2 + d3
    assert rq.e2e_s.tolist()[:2] == pytest.approx([t3, t3], rel=1e-12)
    assert rq.queue_s.tolist() == pytest.approx([0.0, 0.0, t3], rel=1e-12)
    assert rq.ttft_s[2] == pytest.approx(t3 + d4, rel=1e-12)
    assert rq.e2e_s[2] == pytest.approx(t3 + d4 + d5 + d6, rel=1e-12)
    assert res.summary.max_decode_batch == 2


def small_cache(reserve=0.7977, bs=16):
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy="vllm", kv_reserve_fraction=reserve)
    cap = d.instances()[0].kv_capacity_tokens
    return cap // bs


def test_blocks_run_out_and_the_latest_request_is_preempted_and_recomputed():
    bs = 16
    n = small_cache(bs=bs)
    assert 20 < n < 400
    h = n // 2
    pa, pb = bs * h, bs * (n - h)  # together exactly all blocks after both prefills
    res = run([(0.0, pa, 4), (0.0, pb, 3)], reserve=0.7977, block_size=bs,
              max_num_batched_tokens=pa + pb + 16)  # fmt: skip
    d1 = pf([(pa, 0), (pb, 0)])
    # A's first decode needs a new block: none is free, B (admitted last) is preempted
    d2, d3, d4 = (PM.decode_time(1, pa + k) for k in (1, 2, 3))
    # B waits: its recompute needs blocks for pb + 1 tokens, A holds h + 1; after A finishes
    d5 = pf([(pb + 1, 0)])  # recompute prompt + 1 generated token: yields B's 2nd token
    d6 = PM.decode_time(1, pb + 2)
    rq = res.requests
    assert rq.ttft_s.tolist() == pytest.approx([d1, d1], rel=1e-12)
    assert rq.e2e_s[0] == pytest.approx(d1 + d2 + d3 + d4, rel=1e-12)
    assert rq.e2e_s[1] == pytest.approx(d1 + d2 + d3 + d4 + d5 + d6, rel=1e-12)
    assert rq.preemptions.tolist() == [0, 1]
    assert res.summary.preemptions == 1
    gap = d2 + d3 + d4 + d5  # B's gap over the preemption, then one ordinary gap
    assert rq.tbt_max_s[1] == pytest.approx(max(gap, d6), rel=1e-12)
    v, w = res.tbt_gaps()
    assert w.sum() == pytest.approx(3 + 2)
    assert float(np.dot(v, w)) == pytest.approx((rq.e2e_s - rq.ttft_s).sum(), rel=1e-12)


def test_without_the_shortage_nothing_is_preempted():
    bs = 16
    n = small_cache(bs=bs)
    h = n // 2
    pa, pb = bs * h, bs * (n - h) - 2 * bs  # two blocks to spare
    res = run([(0.0, pa, 4), (0.0, pb, 3)], reserve=0.7977, block_size=bs,
              max_num_batched_tokens=pa + pb + 16)  # fmt: skip
    assert res.requests.preemptions.tolist() == [0, 0]
    d1 = pf([(pa, 0), (pb, 0)])
    d2 = pf([], [pa + 1, pb + 1])
    d3 = pf([], [pa + 2, pb + 2])
    assert res.requests.e2e_s[1] == pytest.approx(d1 + d2 + d3, rel=1e-12)


# ---- a per-iteration reference of vLLM's loop ------------------------------------------------
def reference(rows, nblocks, bs, budget, maxseqs, fused=True):
    """One iteration at a time: running (admission order) then waiting (FCFS), blocks per
    request, preempt running.pop() when a running request's blocks do not fit."""
    n = len(rows)
    first, done, npre = [math.nan] * n, [math.nan] * n, [0] * n
    gen = [0] * n
    comp = [0] * n  # computed tokens
    blk = [0] * n
    waiting, running = [], []
    prefilling = set()  # admitted, prefill (or recompute) not finished
    t, nxt, used = 0.0, 0, 0

    def total(r):
        return rows[r][1] + gen[r]

    def preempt():
        nonlocal used
        v = running.pop()
        used -= blk[v]
        blk[v] = comp[v] = 0
        npre[v] += 1
        waiting.insert(0, v)
        return v

    while nxt < n or waiting or running:
        while nxt < n and rows[nxt][0] <= t:
            waiting.append(nxt)
            nxt += 1
        if not waiting and not running:
            t = rows[nxt][0]
            continue
        left = budget
        sched, preempted = [], False
        i = 0
        while i < len(running):
            r = running[i]
            x = min(total(r) - comp[r], left)
            if x == 0:
                i += 1
                continue
            while True:
                nb = -(-(comp[r] + x) // bs) - blk[r]
                if nb <= nblocks - used:
                    used += nb
                    blk[r] += nb
                    sched.append((r, x))
                    left -= x
                    i += 1
                    break
                preempted = True
                if preempt() == r:
                    break
        if not preempted:
            while waiting and left > 0 and len(running) < maxseqs:
                r = waiting[0]
                x = min(total(r), left)
                nb = -(-x // bs)
                if nb > nblocks - used:
                    break
                waiting.pop(0)
                prefilling.add(r)
                used += nb
                blk[r] = nb
                running.append(r)
                sched.append((r, x))
                left -= x
        chunks = [(x, comp[r]) for r, x in sched if r in prefilling]
        decs = [comp[r] + 1 for r, x in sched if r not in prefilling]
        if fused:
            t += pf(chunks, decs)
        else:
            t += (
                pf(chunks) + PM.decode_time(len(decs), sum(decs))
                if decs and chunks
                else pf(chunks, decs)
            )
        for r, x in sched:
            comp[r] += x
            if comp[r] == total(r):
                prefilling.discard(r)
                gen[r] += 1
                if gen[r] == 1:
                    first[r] = t
                if gen[r] == rows[r][2]:
                    done[r] = t
                    running.remove(r)
                    used -= blk[r]
    return first, done, npre


@pytest.mark.parametrize(
    ("reserve", "budget", "seqs", "mixed"),
    [(0.1, 2048, 256, "fused"), (0.7975, 1024, 8, "fused"), (0.7975, 1024, 8, "sequential")],
)
def test_matches_per_iteration_reference(reserve, budget, seqs, mixed):
    bs = 16
    rng = np.random.default_rng(5)
    n = 150
    arr = np.sort(rng.uniform(0, 12, n))
    rows = [
        (float(a), int(p), int(o))
        for a, p, o in zip(arr, rng.integers(1, 3000, n), rng.integers(1, 90, n), strict=True)
    ]
    res = run(rows, reserve=reserve, mixed_batch=mixed, block_size=bs,
              max_num_batched_tokens=budget, max_num_seqs=seqs)  # fmt: skip
    nblocks = small_cache(reserve=reserve, bs=bs)
    first, done, npre = reference(rows, nblocks, bs, budget, seqs, fused=mixed == "fused")
    rq = res.requests
    np.testing.assert_allclose(rq.ttft_s + rq.arrival_s, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rq.e2e_s + rq.arrival_s, done, rtol=1e-9, atol=1e-9)
    assert rq.preemptions.tolist() == npre
    if reserve > 0.5:
        assert sum(npre) > 0  # the case exercises preemption


def test_options_and_where_the_policy_applies_are_checked():
    with pytest.raises(
        ReplayError, match="scheduler.vllm.max_num_batched_tokens: must be >= max_num_seqs"
    ):
        SchedulerConfig(vllm={"max_num_batched_tokens": 100, "max_num_seqs": 256})
    with pytest.raises(ReplayError, match="scheduler.vllm.block_size: must be an integer >= 1"):
        SchedulerConfig(vllm={"block_size": 0})
    with pytest.raises(DesignError, match="design.machine_policy: unknown value 'sarathi'"):
        DesignConfig(name="b", kind="baseline", machine="dgx-h100", machines=1,
                     machine_policy="sarathi")  # fmt: skip
    # a Splitwise design's pools run it too (vLLM's disaggregated serving: tests/test_serving.py)
    DesignConfig(name="s", kind="splitwise", prompt_machine="dgx-h100",
                 token_machine="dgx-h100", machine_policy="vllm")  # fmt: skip
    d = splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b")
    a = simulate(trace([(0.0, 10, 2)]), d, SchedulerConfig(machine_policy="vllm"), PMS)
    assert a.requests.e2e_s.notna().all()
    # scheduler.machine_policy=vllm runs a baseline design's machines too
    b = baseline("dgx-h100", 1, "llama2-70b")
    a = simulate(trace([(0.0, 9000, 2)]), b, SchedulerConfig(machine_policy="vllm",
                 enforce_max_context=False), PMS)  # fmt: skip
    assert a.requests.ttft_s[0] == pytest.approx(pf([(8192, 0)]) + pf([(808, 8192)]), rel=1e-12)
    assert a.summary.design["machine_policy"] is None


def test_deterministic(tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    rows = list(zip(np.sort(rng.uniform(0, 10, n)), rng.integers(10, 5000, n),
                    rng.integers(1, 50, n), strict=True))  # fmt: skip
    d = baseline("dgx-h100", 2, "llama2-70b", machine_policy="vllm")
    outs = [simulate(trace(rows), d, sched(), PMS).write(tmp_path / f"r{k}") for k in range(2)]
    for p in sorted(outs[0].iterdir()):
        assert p.read_bytes() == (outs[1] / p.name).read_bytes(), p.name


def test_prefix_cache_hit_starts_the_prefill_after_the_cached_blocks():
    tr = trace([(0.0, 2048, 2), (1.0, 2100, 2), (2.0, 600, 2)])
    tr["block_hashes"] = [[1, 2, 3, 4], [1, 2, 3, 4, 5], [1, 9]]
    tr.attrs["block_tokens"] = 512
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy="vllm")
    cfg = SchedulerConfig(enforce_max_context=False, prefix_caching=True)
    res = simulate(tr, d, cfg, phase_models=PMS)
    rq = res.requests
    assert rq.ttft_s[0] == pytest.approx(pf([(2048, 0)]), rel=1e-12)
    assert rq.ttft_s[1] == pytest.approx(pf([(52, 2048)]), rel=1e-12)  # 4 blocks cached
    assert rq.ttft_s[2] == pytest.approx(pf([(88, 512)]), rel=1e-12)  # block 1 only
    assert rq.e2e_s[1] == pytest.approx(pf([(52, 2048)]) + PM.decode_time(1, 2101), rel=1e-12)
    pc = res.cluster.machines[0].pc
    assert (pc.lookups, pc.hits, pc.hit_blocks) == (3, 2, 5)
    # without the cache the second prompt is computed whole
    off = simulate(tr, d, SchedulerConfig(enforce_max_context=False), phase_models=PMS)
    assert off.requests.ttft_s[1] == pytest.approx(pf([(2100, 0)]), rel=1e-12)


def test_a_prefill_instance_with_chunking_off_computes_whole_prompts_on_its_own_budget():
    # prompt machine budget 1000, whole prompts: A (600) runs, B (600) does not fit the 400 left
    # and waits for the next step whole (chunked, it would take 400 then 200); C (1500 > the
    # budget) runs alone in a step of its own. The token machine keeps the shared budget.
    d = splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b", machine_policy="vllm",
                  mixed_pool=False)  # fmt: skip
    rows = [(0.0, 600, 2), (0.0, 600, 2), (0.0, 1500, 2)]
    whole = simulate(trace(rows), d, sched(max_num_batched_tokens=512, max_num_seqs=8,
                                           prompt_whole_prompts=True,
                                           prompt_max_num_batched_tokens=1000), PMS)  # fmt: skip
    it = whole.iterations
    p = it[it.role == "prompt"]
    assert p.prefill_tokens.tolist() == [600, 600, 1500]
    assert p.first_s.tolist() == pytest.approx([pf([(600, 0)]), pf([(600, 0)]),
                                                pf([(1500, 0)])], rel=1e-12)  # fmt: skip
    chunked = simulate(trace(rows), d, sched(max_num_batched_tokens=512, max_num_seqs=8,
                                             prompt_max_num_batched_tokens=1000), PMS)  # fmt: skip
    c = chunked.iterations
    assert c[c.role == "prompt"].prefill_tokens.tolist()[:2] == [1000, 1000]
    # the token machine's steps keep max_num_batched_tokens: no tail chunk above 512
    assert (it[it.role == "token"].prefill_tokens <= 512).all()
    # unset, summary.json shows neither option (results without them are unchanged)
    plain = simulate(trace(rows[:1]), d, sched(), PMS)
    assert "prompt_whole_prompts" not in plain.summary.scheduler["vllm"]
    assert whole.summary.scheduler["vllm"]["prompt_max_num_batched_tokens"] == 1000
    with pytest.raises(ReplayError, match="prompt_max_num_batched_tokens: must be an integer"):
        SchedulerConfig(vllm={"prompt_max_num_batched_tokens": 0})
