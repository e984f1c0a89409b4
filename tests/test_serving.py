"""replay: the serving component (replay/serving.py) against hand-computed single requests, the
vllm policy as vLLM's disaggregated serving (decode-instance steps, one-token requests, the
tail recompute of L mod block size, the KV load stalling running decodes), the deployment's
KV block count, and the config checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _phase_fixtures import H100, PMS

from replay import (
    ReplayError,
    SchedulerConfig,
    ServingConfig,
    baseline,
    simulate,
    splitwise,
)
from replay.serving import tail_tokens

PM = H100
C_ = PM.decode_per_context_token_s
BS = 16


def trace(rows):
    """rows: (arrival_s, prompt_tokens, output_tokens)."""
    df = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    df.insert(0, "request_id", np.arange(len(df)))
    return df


def sched(policy="reference", **kw):
    return SchedulerConfig(machine_policy=policy, enforce_max_context=False,
                           vllm={"block_size": BS, **kw.pop("vllm", {})}, **kw)  # fmt: skip


def split_vllm(**kw):
    return splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b", machine_policy="vllm",
                     mixed_pool=False, **kw)  # fmt: skip


NO_LINK = {"kv_transfer": {"enabled": False}}


def decodes(p, o, over=0.0):
    """Decode steps of one request alone after its first token (o - 1 steps)."""
    return sum(PM.decode_time(1, p + g) + over for g in range(1, o))


# ---------------------------------------------------------------------------- alpha: latency
@pytest.mark.parametrize("policy", ["reference", "vllm"])
@pytest.mark.parametrize("p", [50, 1000])
def test_alpha_is_an_arrival_delay_and_a_delivery_offset(policy, p):
    sv = ServingConfig(arrival_s=0.03, arrival_s_per_token=2e-4, delivery_s=0.05)
    o = 4
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy=policy)
    r = simulate(trace([(1.0, p, o)]), d, sched(), PMS, serving=sv).requests.iloc[0]
    alpha = 0.03 + 2e-4 * p + 0.05  # alpha0 + alpha1 x L for a lone request
    assert r.ttft_s == pytest.approx(alpha + PM.prefill_time([p]), rel=1e-12)
    assert r.e2e_s == pytest.approx(r.ttft_s + decodes(p, o), rel=1e-12)
    # latency, not engine time: the gaps between tokens do not change
    assert r.tbt_max_s == pytest.approx(PM.decode_time(1, p + o - 1), rel=1e-12)
    assert r.queue_s == pytest.approx(0.03 + 2e-4 * p, rel=1e-12)  # from the client's send


def test_per_token_arrival_delay_reorders_close_arrivals():
    # the long prompt is sent first but reaches the scheduler after the short one
    sv = ServingConfig(arrival_s_per_token=1e-5)
    d = baseline("dgx-h100", 1, "llama2-70b")
    r = simulate(trace([(0.0, 1000, 1), (0.001, 10, 1)]), d, sched(), PMS, serving=sv).requests
    short_end = 0.001 + 1e-4 + PM.prefill_time([10])
    assert r.ttft_s[1] == pytest.approx(short_end - 0.001, rel=1e-12)
    assert short_end > 0.01  # the long one waits for it
    assert r.ttft_s[0] == pytest.approx(short_end + PM.prefill_time([1000]), rel=1e-12)


# ----------------------------------------------------------------------- delta: engine time
@pytest.mark.parametrize("policy", ["reference", "vllm"])
def test_delta_is_added_to_every_iteration(policy):
    d0, d1 = 0.004, 0.001
    sv = ServingConfig(iteration_s=d0, iteration_s_per_request=d1)
    p, o = 300, 5
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy=policy)
    res = simulate(trace([(0.0, p, o)]), d, sched(), PMS, serving=sv)
    r = res.requests.iloc[0]
    ttft = PM.prefill_time([p]) + d0 + d1
    assert r.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert r.e2e_s == pytest.approx(ttft + decodes(p, o, d0 + d1), rel=1e-12)
    # two requests together: a prefill of 2 prompts, then decode steps of B = 2
    res = simulate(trace([(0.0, p, 3), (0.0, p, 3)]), d, sched(), PMS, serving=sv)
    it = res.iterations
    assert it.first_s[0] == pytest.approx(PM.prefill_time([p, p]) + d0 + 2 * d1, rel=1e-12)
    dec = it[it.prefill_tokens == 0].iloc[0]
    assert dec.batch_size == 2
    assert dec.first_s == pytest.approx(PM.decode_time(2, 2 * p + 2) + d0 + 2 * d1, rel=1e-12)


def test_delta_on_a_mixed_iteration_counts_prompts_and_decodes():
    # a prompt arriving while another request decodes: one fused iteration of 1 prompt + 1 decode
    d0, d1 = 0.004, 0.001
    sv = ServingConfig(iteration_s=d0, iteration_s_per_request=d1)
    d = baseline("dgx-h100", 1, "llama2-70b")
    res = simulate(trace([(0.0, 200, 20), (0.1, 300, 2)]), d, sched(), PMS, serving=sv)
    mixed = res.iterations[(res.iterations.prefill_tokens == 300)].iloc[0]
    assert mixed.batch_size == 1
    g = res.iterations[(res.iterations.start_s < mixed.start_s)
                       & (res.iterations.prefill_tokens == 0)]["iterations"].sum()  # fmt: skip
    ctx = 200 + 1 + g
    want = PM.prefill_time_sums(1, 300 + 1, 300 * 300 + 1) + C_ * ctx + d0 + 2 * d1
    assert mixed.first_s == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------- the disaggregated path (vllm policy)
@pytest.mark.parametrize("o", [1, 2, 6])
def test_split_request_makes_o_decode_instance_steps(o):
    p = 100
    res = simulate(trace([(0.0, p, o)]), split_vllm(), sched(**NO_LINK), PMS)
    r = res.requests.iloc[0]
    on_decode = res.iterations[res.iterations.machine == 1]
    # the tail prefill (its first token: the client's) + o - 1 decode steps, as vLLM's proxy
    # asks the decode instance for all o tokens; o = 1 is handed over too
    assert on_decode["iterations"].sum() == o
    assert on_decode.prefill_tokens.iloc[0] == tail_tokens(p, BS) == 4
    assert r.prompt_machine == 0 and r.token_machine == 1
    t_prefill = PM.prefill_time([p])
    tail = PM.prefill_time_sums(1, 4, p * p - 96 * 96)
    assert r.ttft_s == pytest.approx(t_prefill + tail, rel=1e-12)
    assert r.e2e_s == pytest.approx(t_prefill + tail + decodes(p, o), rel=1e-12)
    # the paper's protocol (reference policy): the prompt machine's token is the first, o - 1
    # steps on the token machine, a one-token request ends at the prompt machine
    d = splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b", mixed_pool=False)
    ref = simulate(trace([(0.0, p, o)]), d, sched(**NO_LINK), PMS)
    assert ref.iterations[ref.iterations.machine == 1]["iterations"].sum() == o - 1


@pytest.mark.parametrize("p", [1, 15, 16, 17, 100, 112, 113, 128, 129, 1000])
def test_handover_priced_from_prompt_length_modulo_block_size(p):
    sv = ServingConfig(kv_load_s=0.002, kv_load_s_per_token=1e-5)
    res = simulate(trace([(0.0, p, 2)]), split_vllm(), sched(**NO_LINK), PMS, serving=sv)
    injected = (p - 1) // BS * BS  # whole blocks of the first p - 1 tokens
    tail = p - injected
    assert tail == tail_tokens(p, BS) and 1 <= tail <= BS
    row = res.iterations[res.iterations.machine == 1].iloc[0]
    assert row.prefill_tokens == tail
    load = 0.002 + 1e-5 * injected if injected else 0.0  # nothing injected: nothing loaded
    want = PM.prefill_time_sums(1, tail, p * p - injected * injected) + load
    assert row.first_s == pytest.approx(want, rel=1e-12)


def test_handover_stall_is_a_tbt_gap_on_the_running_decode():
    # A decodes on the decode instance when B's hand-over arrives: B's tail and KV load run in
    # one iteration with A's decode, and A sees that iteration as one long gap
    kl = 1e-4
    sv = ServingConfig(kv_load_s_per_token=kl, decode_leg_s=0.01)
    rows = [(0.0, 100, 60), (0.2, 1000, 2)]
    res = simulate(trace(rows), split_vllm(), sched(**NO_LINK), PMS, serving=sv)
    it = res.iterations
    dec = it[it.machine == 1]
    stall = dec[dec.prefill_tokens == 8].iloc[0]  # 1000 - 62 x 16 = 8 tokens recomputed
    assert stall.batch_size == 1
    before = dec[(dec.start_s < stall.start_s) & (dec.prefill_tokens == 0)]["iterations"].sum()
    ctx = 100 + 1 + before  # A's context: prompt, first token, decode steps so far
    want = (PM.prefill_time_sums(1, 8 + 1, 1000**2 - 992**2 + 1) + C_ * ctx) + kl * 992
    assert stall.first_s == pytest.approx(want, rel=1e-12)
    a, b = res.requests.iloc[0], res.requests.iloc[1]
    assert a.tbt_max_s == pytest.approx(want, rel=1e-12)
    assert a.tbt_max_s > 3 * PM.decode_time(1, 160)
    # B: prefilled alone on the prompt instance, ready 10 ms later (the decode leg), taken at
    # the decode instance's next iteration boundary, first token at the stall's end
    ready = 0.2 + PM.prefill_time([1000]) + 0.01
    assert b.kv_transfer_s == pytest.approx(0.01, rel=1e-9)
    assert ready <= stall.start_s < ready + PM.decode_time(1, 200)
    assert b.ttft_s == pytest.approx(stall.start_s + want - 0.2, rel=1e-12)
    # A's own hand-over loaded its 96 injected tokens the same way
    assert dec.first_s.iloc[0] == pytest.approx(
        PM.prefill_time_sums(1, 4, 100**2 - 96**2) + kl * 96, rel=1e-12
    )
    # without the KV load the iteration is the tail's price alone: A sees no long gap
    res0 = simulate(trace(rows), split_vllm(), sched(**NO_LINK), PMS,
                    serving=ServingConfig(decode_leg_s=0.01))  # fmt: skip
    it0 = res0.iterations[res0.iterations.machine == 1]
    s0 = it0[it0.prefill_tokens == 8].iloc[0]
    ctx0 = 101 + it0[(it0.start_s < s0.start_s) & (it0.prefill_tokens == 0)]["iterations"].sum()
    want0 = PM.prefill_time_sums(1, 8 + 1, 1000**2 - 992**2 + 1) + C_ * ctx0
    assert s0.first_s == pytest.approx(want0, rel=1e-12)
    assert res0.requests.tbt_max_s[0] < PM.decode_time(2, 2000)


def test_split_legs_and_link_hop():
    # prefill leg before the prefill instance, decode leg in parallel with the link's hop
    sv = ServingConfig(prefill_leg_s=0.02, prefill_leg_s_per_token=1e-5, decode_leg_s=0.03,
                       decode_leg_s_per_token=1e-5, delivery_s=0.004)  # fmt: skip
    p, o = 200, 3
    for hop, wait in ((0.001, 0.03 + 1e-5 * p), (0.5, 0.5)):
        kv = {"kv_transfer": {"handover_s": hop, "per_token_s": 0.0}}
        r = simulate(trace([(0.0, p, o)]), split_vllm(), sched(**kv), PMS,
                     serving=sv).requests.iloc[0]  # fmt: skip
        assert r.kv_transfer_s == pytest.approx(wait, rel=1e-9)
        tail = PM.prefill_time_sums(1, 200 - 192, p * p - 192 * 192)
        ttft = 0.02 + 1e-5 * p + PM.prefill_time([p]) + wait + tail + 0.004
        assert r.ttft_s == pytest.approx(ttft, rel=1e-12)
        assert r.e2e_s == pytest.approx(ttft + decodes(p, o), rel=1e-12)


def test_disaggregated_terms_need_the_vllm_split_path():
    d = splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b")
    with pytest.raises(ReplayError, match=r"^serving.kv_load_s_per_token: the disaggregated "
                       r"serving terms .* got 'reference'$"):  # fmt: skip
        simulate(trace([(0.0, 10, 2)]), d, sched(), PMS,
                 serving=ServingConfig(kv_load_s_per_token=1e-6))  # fmt: skip
    # a baseline has no hand-over: the terms do not apply, and nothing changes
    b = baseline("dgx-h100", 1, "llama2-70b")
    plain = simulate(trace([(0.0, 10, 2)]), b, sched(), PMS).requests
    got = simulate(trace([(0.0, 10, 2)]), b, sched(), PMS,
                   serving=ServingConfig(decode_leg_s=1.0, kv_load_s=1.0)).requests  # fmt: skip
    pd.testing.assert_frame_equal(plain, got)


def test_split_vllm_with_mixed_pool_and_preemption_completes_every_request():
    rng = np.random.default_rng(5)
    n = 300
    rows = list(zip(np.sort(rng.uniform(0, 20, n)), rng.integers(10, 3000, n),
                    rng.integers(1, 200, n), strict=True))  # fmt: skip
    d = splitwise("dgx-h100", "dgx-h100", 2, 1, "llama2-70b", machine_policy="vllm")
    sv = ServingConfig(iteration_s=1e-3, decode_leg_s=0.01, kv_load_s_per_token=1e-6)
    s = sched(prompt_queue_threshold_tokens=2000, token_kv_threshold_fraction=0.05,
              vllm={"num_gpu_blocks": 1500})  # fmt: skip
    res = simulate(trace(rows), d, s, PMS, serving=sv)
    assert res.summary.requests["completed"] == n
    assert res.summary.preemptions > 0 and len(res.pool_changes) > 0
    r = res.requests
    assert (r.e2e_s >= r.ttft_s).all() and (r.ttft_s > 0).all()
    v, w = res.tbt_gaps()
    assert w.sum() == pytest.approx((r.output_tokens - 1).sum())
    assert float(np.dot(v, w)) == pytest.approx((r.e2e_s - r.ttft_s).sum(), rel=1e-9)
    # every request's first token comes from its decode instance, after its hand-over
    handed = r.prompt_machine != r.token_machine
    assert handed.any() and (r.kv_transfer_s[handed] >= 0.01 - 1e-12).all()
    with pytest.raises(ReplayError, match=r"^scheduler.kv_transfer.uncached_only: not modelled"):
        simulate(trace(rows), d, sched(prefix_caching=True,
                 kv_transfer={"uncached_only": True}), PMS)  # fmt: skip


# ------------------------------------------------------------------- zeros, KV blocks, checks
@pytest.mark.parametrize("policy", ["reference", "vllm"])
def test_zero_terms_give_the_same_bytes(tmp_path, policy):
    rng = np.random.default_rng(1)
    n = 150
    rows = list(zip(np.sort(rng.uniform(0, 10, n)), rng.integers(10, 4000, n),
                    rng.integers(1, 60, n), strict=True))  # fmt: skip
    for name, d in (("b", baseline("dgx-h100", 1, "llama2-70b")),
                    ("s", splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b"))):  # fmt: skip
        if policy == "vllm" and name == "s":
            continue  # (the vllm split path is new: nothing to be identical to)
        a = simulate(trace(rows), d, sched(policy), PMS).write(tmp_path / f"{name}a")
        b = simulate(trace(rows), d, sched(policy), PMS, serving=ServingConfig()).write(
            tmp_path / f"{name}b"
        )
        for f in sorted(a.iterdir()):
            assert f.read_bytes() == (b / f.name).read_bytes(), f.name
        text = (a / "summary.json").read_text()
        assert '"serving"' not in text and "num_gpu_blocks" not in text


def test_serving_terms_are_in_the_summary_when_set():
    d = baseline("dgx-h100", 1, "llama2-70b")
    s = simulate(trace([(0.0, 10, 2)]), d, sched(), PMS, serving=ServingConfig(delivery_s=0.1))
    assert s.summary.to_dict()["serving"]["delivery_s"] == 0.1


@pytest.mark.parametrize("policy", ["reference", "vllm"])
def test_kv_block_count_overrides_the_spec_capacity(policy):
    # 10 blocks of 16 tokens: prompt + output above 160 tokens fits nowhere (rejected)
    d = baseline("dgx-h100", 1, "llama2-70b")
    rows = [(0.0, 150, 10), (0.0, 150, 11)]
    res = simulate(trace(rows), d, sched(policy, vllm={"num_gpu_blocks": 10}), PMS)
    assert res.requests.e2e_s.notna().tolist() == [True, False]
    assert res.summary.scheduler["vllm"]["num_gpu_blocks"] == 10
    spec = simulate(trace(rows), d, sched(policy), PMS)  # the spec's 80 GB: both fit
    assert spec.requests.e2e_s.notna().all()
    # two requests that fit alone but not together: one waits (or is preempted)
    two = simulate(trace([(0.0, 100, 30), (0.0, 100, 30)]), d,
                   sched(policy, vllm={"num_gpu_blocks": 10}), PMS)  # fmt: skip
    both = simulate(trace([(0.0, 100, 30), (0.0, 100, 30)]), d, sched(policy), PMS)
    assert two.requests.e2e_s.max() > both.requests.e2e_s.max() + PM.decode_time(1, 100) * 20


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"delivery_s": -1.0}, r"^serving.delivery_s: must be a finite number >= 0, got -1.0$"),
        ({"iteration_s": math.nan}, r"^serving.iteration_s: must be a finite number >= 0"),
        ({"arrival_s_per_token": math.inf}, r"^serving.arrival_s_per_token: must be a finite"),
        ({"kv_load_s": True}, r"^serving.kv_load_s: must be a finite number >= 0, got True$"),
        ({"decode_leg_s": "1"}, r"^serving.decode_leg_s: must be a finite number >= 0, got '1'$"),
    ],
)
def test_bad_serving_values_raise_one_line(kw, match):
    with pytest.raises(ReplayError, match=match) as e:
        ServingConfig(**kw)
    assert "\n" not in str(e.value)


def test_bad_block_count_raises_one_line():
    with pytest.raises(ReplayError, match=r"^scheduler.vllm.num_gpu_blocks: must be an integer "
                       r">= 1 or null, got 0$"):  # fmt: skip
        SchedulerConfig(vllm={"num_gpu_blocks": 0})


def test_serving_config_is_frozen_and_documented():
    sv = ServingConfig()
    assert sv.is_zero and not sv.disaggregated
    with pytest.raises(AttributeError):
        sv.delivery_s = 1.0  # type: ignore[misc]
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(ServingConfig))
    assert ServingConfig(arrival_s=0.1, arrival_s_per_token=0.01).arrival_delay(10) == 0.2


def test_report_line_lists_the_terms_or_says_zero():
    from replay.serving import describe

    assert "every term zero (the default)" in describe(None)
    assert "every term zero (the default)" in describe(ServingConfig().to_dict())
    line = describe(ServingConfig(arrival_s=0.084, arrival_s_per_token=2.3e-4).to_dict())
    assert line == ("Serving component (replay.serving): arrival 0.084 s, arrival 0.00023 "
                    "s/prompt token; every other term zero.")  # fmt: skip


def test_the_serving_group_reaches_the_replay(tmp_path):
    # splitbench-replay: serving.* overrides -> the point -> the replay's summary
    import json

    from hydra import compose, initialize_config_dir

    from experiments.apps.replay import run
    from experiments.config.schemas import CONF_DIR, register

    register()
    ov = ["design=splitwise-hh", "design.machine_policy=vllm", "design.prompt_machines=1",
          "design.token_machines=1", "trace.resample_rate=2", "trace.resample_duration_s=5",
          "progress=false", "serving.kv_load_s_per_token=1e-6", "serving.delivery_s=0.01",
          "scheduler.vllm.num_gpu_blocks=5000"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        run(compose("replay", overrides=ov), tmp_path / "a")
        run(compose("replay", overrides=ov[:7]), tmp_path / "b")  # every term zero
    point = json.loads((tmp_path / "a" / "point.json").read_text())
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert point["serving"]["kv_load_s_per_token"] == 1e-6
    assert summary["serving"]["delivery_s"] == 0.01
    assert summary["scheduler"]["vllm"]["num_gpu_blocks"] == 5000
    assert "serving" not in json.loads((tmp_path / "b" / "point.json").read_text())
    assert "serving" not in json.loads((tmp_path / "b" / "summary.json").read_text())


# ---- the disaggregated pair against a per-iteration reference of the two vLLM loops --------
def vllm_loop(arrivals, nblocks, bs, budget, maxseqs, inj=None, load=(0.0, 0.0), over=(0.0, 0.0),
              work=(0.0, 0.0)):  # fmt: skip
    """One vLLM V1 instance, one iteration at a time (tests/test_replay_vllm_policy.py's
    reference, with hand-overs): ``arrivals`` = [(t, r, prompt, output)] in queue order;
    ``inj[r]``: KV tokens a hand-over brings (its prefill starts there and the iteration that
    admits it pays ``load[0] + load[1] x inj``; a recompute after preemption starts from 0);
    ``over``: the served per-iteration overhead; ``work``: the decode leg's work per admitted
    hand-over, ``work[0] + work[1] x prompt``. Returns {r: (first, done, preemptions)}."""
    inj = inj or {}
    p = {r: pp for _, r, pp, _ in arrivals}
    o = {r: oo for _, r, _, oo in arrivals}
    first, done, npre, gen, comp, blk, rc = {}, {}, {}, {}, {}, {}, {}
    waiting, running, prefilling = [], [], set()
    t, nxt, used = 0.0, 0, 0
    n = len(arrivals)

    def total(r):
        return p[r] + gen.get(r, 0)

    def preempt():
        nonlocal used
        v = running.pop()
        used -= blk[v]
        blk[v] = comp[v] = 0
        npre[v] = npre.get(v, 0) + 1
        rc[v] = gen.get(v, 0) > 0  # decoding: recomputed; a partial hand-over: loaded again
        prefilling.discard(v)
        waiting.insert(0, v)
        return v

    while nxt < n or waiting or running:
        while nxt < n and arrivals[nxt][0] <= t:
            waiting.append(arrivals[nxt][1])
            nxt += 1
        if not waiting and not running:
            t = arrivals[nxt][0]
            continue
        left, sched, preempted, loaded, handed = budget, [], False, [], []
        i = 0
        while i < len(running):
            r = running[i]
            x = min(total(r) - comp[r], left)
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
                s = 0 if rc.get(r) else inj.get(r, 0)
                x = min(total(r) - s, left)
                nb = -(-(s + x) // bs)
                if nb > nblocks - used:
                    break
                waiting.pop(0)
                prefilling.add(r)
                used += nb
                blk[r], comp[r] = nb, s
                if s:
                    loaded.append(s)
                if r in inj and not rc.get(r):
                    handed.append(p[r])
                running.append(r)
                sched.append((r, x))
                left -= x
        chunks = [(x, comp[r]) for r, x in sched if r in prefilling]
        decs = [comp[r] + 1 for r, x in sched if r not in prefilling]
        dur = PM.prefill_time_sums(
            len(chunks),
            sum(x for x, _ in chunks) + len(decs),
            sum((c + x) ** 2 - c * c for x, c in chunks) + len(decs),
        )
        dur = dur + C_ * sum(decs) if chunks else PM.decode_time(len(decs), sum(decs))
        t += dur + over[0] + over[1] * len(sched) + sum(load[0] + load[1] * s for s in loaded)
        t += sum(work[0] + work[1] * q for q in handed)
        for r, x in sched:
            comp[r] += x
            if comp[r] == total(r):
                prefilling.discard(r)
                gen[r] = gen.get(r, 0) + 1
                first.setdefault(r, t)
                if gen[r] == o[r]:
                    done[r] = t
                    running.remove(r)
                    used -= blk[r]
    return {r: (first[r], done[r], npre.get(r, 0)) for r in p}


@pytest.mark.parametrize("blocks, budget, seqs", [(4000, 2048, 64), (420, 1024, 8)])
def test_split_pair_matches_two_per_iteration_vllm_loops(blocks, budget, seqs):
    rng = np.random.default_rng(11)
    n = 120
    arr = np.sort(rng.uniform(0, 15, n))
    rows = [(float(a), int(p), int(o)) for a, p, o in
            zip(arr, rng.integers(1, 2500, n), rng.integers(1, 80, n), strict=True)]  # fmt: skip
    leg, load, over, work = 0.003, (0.002, 2e-6), (0.001, 1e-4), (0.004, 3e-6)
    sv = ServingConfig(decode_leg_s=leg, kv_load_s=load[0], kv_load_s_per_token=load[1],
                       iteration_s=over[0], iteration_s_per_request=over[1],
                       decode_work_s=work[0], decode_work_s_per_token=work[1])  # fmt: skip
    s = sched(**NO_LINK, vllm={"num_gpu_blocks": blocks, "max_num_batched_tokens": budget,
                               "max_num_seqs": seqs})  # fmt: skip
    res = simulate(trace(rows), split_vllm(), s, PMS, serving=sv)
    # the prefill instance: every request is a one-token request there
    pre = vllm_loop([(a, r, p, 1) for r, (a, p, _) in enumerate(rows)], blocks, BS, budget,
                    seqs, over=over)  # fmt: skip
    ready = sorted((pre[r][1] + leg, r) for r in range(n))
    inj = {r: (rows[r][1] - 1) // BS * BS for r in range(n)}
    dec = vllm_loop([(t, r, rows[r][1], rows[r][2]) for t, r in ready], blocks, BS, budget,
                    seqs, inj=inj, load=load, over=over, work=work)  # fmt: skip
    rq = res.requests
    want = np.array([dec[r] for r in range(n)])
    np.testing.assert_allclose(rq.ttft_s + rq.arrival_s, want[:, 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rq.e2e_s + rq.arrival_s, want[:, 1], rtol=1e-9, atol=1e-9)
    assert rq.preemptions.tolist() == want[:, 2].astype(int).tolist()
    if blocks < 1000:
        assert want[:, 2].sum() > 0  # the case exercises preemption on the decode instance


def test_arrival_work_is_work_on_the_colocated_instance_once_per_request():
    # B arrives while A decodes alone on one vllm instance: the iteration that first admits B
    # lasts B's arrival work longer (A's token in it is late by exactly that), and A's own
    # admission pays A's; a preempted request is not charged again (here: none preempted)
    rows = [(0.0, 100, 40), (0.05, 300, 3)]
    w0, w1 = 0.006, 2e-5
    d = baseline("dgx-h100", 1, "llama2-70b", machine_policy="vllm")
    base, got = (simulate(trace(rows), d, sched("vllm"), PMS,
                          serving=ServingConfig(arrival_work_s=a, arrival_work_s_per_token=b))
                 for a, b in ((0.0, 0.0), (w0, w1)))  # fmt: skip
    extra = np.sort(got.iterations.first_s.to_numpy() - base.iterations.first_s.to_numpy())
    assert extra[-2:] == pytest.approx(sorted([w0 + w1 * 100, w0 + w1 * 300]), rel=1e-9)
    assert np.abs(extra[:-2]).max() < 1e-12
    assert got.requests.ttft_s.iloc[0] == pytest.approx(base.requests.ttft_s.iloc[0] + w0 + w1 * 100)
    # only where it is modelled: the reference policy and a Splitwise design refuse it
    with pytest.raises(ReplayError, match=r"^serving.arrival_work_s: models a co-located"):
        simulate(trace(rows), baseline("dgx-h100", 1, "llama2-70b"), sched(), PMS,
                 serving=ServingConfig(arrival_work_s=0.001))  # fmt: skip
    with pytest.raises(ReplayError, match=r"on a Splitwise design$"):
        simulate(trace(rows), split_vllm(), sched("vllm", **NO_LINK), PMS,
                 serving=ServingConfig(arrival_work_s_per_token=1e-6))  # fmt: skip


def test_decode_work_is_work_on_the_decode_instance_per_hand_over():
    # B hands over while A decodes alone: the iteration that admits B lasts its tail and the
    # decode leg's work (every hand-over, with or without whole blocks to load), so A's token in
    # it is late by exactly that work; the prefill instance does not change
    rows = [(0.0, 100, 40), (0.05, 300, 3)]
    w0, w1 = 0.006, 2e-5
    base, got = (simulate(trace(rows), split_vllm(), sched("vllm", **NO_LINK), PMS,
                          serving=ServingConfig(decode_work_s=a, decode_work_s_per_token=b))
                 for a, b in ((0.0, 0.0), (w0, w1)))  # fmt: skip
    p0, p1 = (r.iterations[r.iterations.role == "prompt"] for r in (base, got))
    assert p1.first_s.tolist() == pytest.approx(p0.first_s.tolist(), rel=1e-12)
    t0, t1 = (r.iterations[r.iterations.role == "token"] for r in (base, got))
    extra = np.sort(t1.first_s.to_numpy() - t0.first_s.to_numpy())
    # A's admission and B's: one hand-over each (A alone: its own work; B into A's decodes)
    assert extra[-2:] == pytest.approx(sorted([w0 + w1 * 100, w0 + w1 * 300]), rel=1e-9)
    assert np.abs(extra[:-2]).max() < 1e-12
    assert got.requests.e2e_s.iloc[0] > base.requests.e2e_s.iloc[0]


def test_kv_save_is_work_on_the_prefill_instance():
    # each prompt step lasts its prefill plus the save of its prompt, so B (arriving during A's
    # step) starts after A's save; the decode instance's steps do not change
    rows = [(0.0, 200, 3), (1e-6, 300, 3)]
    sv0 = ServingConfig(decode_leg_s=0.01)
    sv = ServingConfig(decode_leg_s=0.01, kv_save_s=0.004, kv_save_s_per_token=1e-5)
    base, got = (simulate(trace(rows), split_vllm(), sched("vllm", **NO_LINK), PMS, serving=x)
                 for x in (sv0, sv))  # fmt: skip
    p0, p1 = (r.iterations[r.iterations.role == "prompt"] for r in (base, got))
    save = np.array([0.004 + 1e-5 * 200, 0.004 + 1e-5 * 300])
    assert (p1.first_s.to_numpy() - p0.first_s.to_numpy()) == pytest.approx(save, rel=1e-9)
    assert p1.start_s.iloc[1] == pytest.approx(p1.start_s.iloc[0] + p1.first_s.iloc[0])
    t0, t1 = (r.iterations[r.iterations.role == "token"] for r in (base, got))
    assert t1.first_s.tolist() == pytest.approx(t0.first_s.tolist(), rel=1e-12)
    assert (got.requests.ttft_s > base.requests.ttft_s).all()
    # the paper's policy has no prefill instance of vLLM's: refused, as every disaggregated term
    d = splitwise("dgx-h100", "dgx-h100", 1, 1, "llama2-70b")
    with pytest.raises(ReplayError, match=r"^serving.kv_save_s: the disaggregated"):
        simulate(trace(rows), d, sched(), PMS, serving=ServingConfig(kv_save_s=0.001))
