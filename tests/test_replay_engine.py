"""replay: exact single-request timings, span logic against a per-iteration reference, errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _phase_fixtures import H100
from _replay_designs import named_design as make_design

from characterize.modeling.specs import load_machine, load_model
from replay import (
    DesignConfig,
    DesignError,
    KVTransferConfig,
    LinearPhaseModel,
    ReplayError,
    SchedulerConfig,
    baseline,
    simulate,
    splitwise,
)
from replay import make_design as make_design_from

A100 = LinearPhaseModel(
    gpu="a100-80gb",
    prefill_base_s=0.03,
    prefill_per_request_s=0.002,
    prefill_per_token_s=1.5e-4,
    prefill_per_token_sq_s=4e-9,
    decode_base_s=0.04,
    decode_per_request_s=3e-4,
    decode_per_context_token_s=5e-8,
)
PMS = {"h100-80gb": H100, "a100-80gb": A100, "h100-80gb-pcap": H100}


def trace(rows):
    """rows: (arrival_s, prompt_tokens, output_tokens)."""
    df = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    df.insert(0, "request_id", np.arange(len(df)))
    return df


def decode_alone(pm, p, o):
    return sum(pm.decode_time(1, p + g) for g in range(1, o))


@pytest.mark.parametrize("p", [100, 3000])
def test_single_request_baseline_matches_hand(p):
    o = 7
    res = simulate(
        trace([(1.5, p, o)]), make_design("baseline-h100", "llama2-70b", machines=2),
        phase_models=PMS,
    )  # fmt: skip
    r = res.requests.iloc[0]
    ttft = H100.prefill_time([p])
    assert r.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert r.e2e_s == pytest.approx(ttft + decode_alone(H100, p, o), rel=1e-12)
    assert r.queue_s == 0.0 and r.kv_transfer_s == 0.0 and r.preemptions == 0
    assert r.prompt_machine == r.token_machine
    assert r.tbt_max_s == pytest.approx(H100.decode_time(1, p + o - 1), rel=1e-12)
    assert r.tbt_mean_s == pytest.approx(decode_alone(H100, p, o) / (o - 1), rel=1e-12)


@pytest.mark.parametrize("p", [100, 511, 512, 4000])
def test_single_request_splitwise_matches_hand(p):
    o = 5
    model = load_model("llama2-70b")
    spec = load_machine("dgx-h100")
    res = simulate(
        trace([(0.25, p, o)]), make_design("splitwise-hh", "llama2-70b", 1, 1), phase_models=PMS
    )
    r = res.requests.iloc[0]
    ttft = H100.prefill_time([p])
    nbytes = model.kv_bytes_per_token * p
    bw = spec.network_bytes_per_s
    end_prefill = 0.25 + ttft
    if p >= 512:  # layer-wise: overlapped, the last layer's share exposed
        ready = max(0.25 + nbytes / bw, end_prefill + nbytes / model.num_layers / bw + 0.005)
    else:  # serialized after the prompt
        ready = end_prefill + nbytes / bw
    assert r.prompt_machine == 0 and r.token_machine == 1
    assert r.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert r.kv_transfer_s == pytest.approx(ready - end_prefill, rel=1e-9)
    assert r.e2e_s == pytest.approx(ready - 0.25 + decode_alone(H100, p, o), rel=1e-12)
    first_gap = ready + H100.decode_time(1, p + 1) - end_prefill
    assert r.tbt_max_s == pytest.approx(first_gap, rel=1e-9)
    # the exact gap distribution holds o - 1 gaps that add up to e2e - ttft
    v, w = res.tbt_gaps()
    assert w.sum() == pytest.approx(o - 1)
    assert float(np.dot(v, w)) == pytest.approx(r.e2e_s - r.ttft_s, rel=1e-12)


@pytest.mark.parametrize("p", [100, 2000])
def test_calibrated_handover_option(p):
    # a calibrated connector: handover_s + tokens x per_token_s after the prompt, any length
    kv = KVTransferConfig(handover_s=0.05, per_token_s=2e-4)
    res = simulate(
        trace([(0.0, p, 3)]), make_design("splitwise-hh", "llama2-70b", 1, 1),
        phase_models=PMS, scheduler=SchedulerConfig(kv_transfer=kv),
    )  # fmt: skip
    r = res.requests.iloc[0]
    assert r.kv_transfer_s == pytest.approx(0.05 + p * 2e-4, rel=1e-9)
    ready = H100.prefill_time([p]) + 0.05 + p * 2e-4
    assert r.e2e_s == pytest.approx(ready + decode_alone(H100, p, 3), rel=1e-9)
    with pytest.raises(ReplayError, match="scheduler.kv_transfer.per_token_s: must be"):
        SchedulerConfig(kv_transfer={"per_token_s": -1.0})


def test_free_transfer_option():
    res = simulate(
        trace([(0.0, 2000, 3)]), make_design("splitwise-hh", "llama2-70b", 1, 1),
        phase_models=PMS, scheduler=SchedulerConfig(kv_transfer=KVTransferConfig(enabled=False)),
    )  # fmt: skip
    r = res.requests.iloc[0]
    assert r.kv_transfer_s == 0.0
    assert r.e2e_s == pytest.approx(H100.prefill_time([2000]) + decode_alone(H100, 2000, 3))


def test_two_requests_batched_then_span_split_at_completion():
    p1, p2 = 300, 700
    res = simulate(
        trace([(0.0, p1, 3), (0.0, p2, 5)]),
        make_design("baseline-h100", "llama2-70b", machines=1), phase_models=PMS,
    )  # fmt: skip
    ttft = H100.prefill_time([p1, p2])
    c = (p1 + 1) + (p2 + 1)
    e1 = ttft + H100.decode_time(2, c) + H100.decode_time(2, c + 2)
    e2 = e1 + H100.decode_time(1, p2 + 3) + H100.decode_time(1, p2 + 4)
    rq = res.requests
    assert rq.ttft_s.tolist() == pytest.approx([ttft, ttft], rel=1e-12)
    assert rq.e2e_s.tolist() == pytest.approx([e1, e2], rel=1e-12)


def reference_baseline_one_machine(rows, pm, batch_tokens=2048, mixed_batch="fused"):
    """Per-iteration reference of one mixed machine (no memory limit): prompts first, FCFS
    chunk <= batch_tokens tokens; an iteration with both = prefill of the chunk's prompts with
    one more token per decode request + the decode attention term c x context ("fused"), or
    prefill(chunk) + decode(batch) ("sequential")."""
    n = len(rows)
    first = [math.nan] * n
    done = [math.nan] * n
    t = 0.0
    nxt = 0
    queue, batch = [], {}  # batch: request -> tokens generated
    while nxt < n or queue or batch:
        while nxt < n and rows[nxt][0] <= t:
            queue.append(nxt)
            nxt += 1
        if not queue and not batch:
            t = rows[nxt][0]
            continue
        chunk, tok = [], 0
        while queue and (not chunk or tok + rows[queue[0]][1] <= batch_tokens):
            r = queue.pop(0)
            chunk.append(r)
            tok += rows[r][1]
        dur = 0.0
        lens = [rows[r][1] for r in chunk]
        ctx = sum(rows[r][1] + g for r, g in batch.items())
        if chunk and batch and mixed_batch == "fused":
            tokens = sum(lens) + len(batch)
            sq = sum(x * x for x in lens) + len(batch)
            dur += pm.prefill_time_sums(len(lens), tokens, sq) + pm.decode_coefficients()[2] * ctx
        else:
            if chunk:
                dur += pm.prefill_time(lens)
            if batch:
                dur += pm.decode_time(len(batch), ctx)
        t += dur
        for r in list(batch):
            batch[r] += 1
            if batch[r] == rows[r][2]:
                done[r] = t
                del batch[r]
        for r in chunk:
            first[r] = t
            if rows[r][2] == 1:
                done[r] = t
            else:
                batch[r] = 1
    return first, done


@pytest.mark.parametrize("mixed_batch", ["fused", "sequential"])
def test_spans_and_cuts_match_per_iteration_reference(mixed_batch):
    rng = np.random.default_rng(7)
    n = 120
    arr = np.sort(rng.uniform(0, 20, n))
    rows = [
        (float(a), int(p), int(o))
        for a, p, o in zip(arr, rng.integers(1, 1500, n), rng.integers(1, 60, n), strict=True)
    ]
    res = simulate(
        trace(rows),
        make_design("baseline-h100", "llama2-70b", machines=1),
        SchedulerConfig(mixed_batch=mixed_batch),
        phase_models=PMS,
    )
    first, done = reference_baseline_one_machine(rows, H100, mixed_batch=mixed_batch)
    rq = res.requests
    np.testing.assert_allclose(rq.ttft_s + rq.arrival_s, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rq.e2e_s + rq.arrival_s, done, rtol=1e-9, atol=1e-9)


def test_same_config_and_seed_byte_identical(tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    rows = list(
        zip(np.sort(rng.uniform(0, 30, n)), rng.integers(10, 3000, n), rng.integers(1, 80, n),
            strict=True)
    )  # fmt: skip
    design = make_design("splitwise-hh", "llama2-70b", 2, 1)
    cfg = SchedulerConfig(policy="random")
    outs = []
    for k in range(2):
        res = simulate(trace(rows), design, cfg, phase_models=PMS, seed=11)
        outs.append(res.write(tmp_path / f"run{k}"))
    names = sorted(p.name for p in outs[0].iterdir())
    assert {"requests.parquet", "summary.json", "iterations.parquet"} <= set(names)
    assert not [p for p in outs[0].iterdir() if p.name.startswith(".")]  # no temp files left
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    text = (outs[0] / "summary.json").read_text()
    assert text.index('"context"') < text.index('"design"') < text.index('"seed"')  # sorted


def test_policies_are_seeded_and_differ():
    rng = np.random.default_rng(1)
    n = 200
    rows = list(zip(np.sort(rng.uniform(0, 10, n)), rng.integers(10, 2000, n), [5] * n,
                    strict=True))  # fmt: skip
    design = make_design("baseline-a100", "llama2-70b", machines=4)
    pick = {}
    for policy in ("jsq", "round-robin", "random"):
        res = simulate(trace(rows), design, SchedulerConfig(policy=policy), phase_models=PMS)
        pick[policy] = res.requests.prompt_machine.to_numpy()
    assert pick["round-robin"].tolist() == [i % 4 for i in range(n)]
    again = simulate(trace(rows), design, SchedulerConfig(policy="random"), phase_models=PMS)
    assert again.requests.prompt_machine.tolist() == pick["random"].tolist()
    other = simulate(trace(rows), design, SchedulerConfig(policy="random"), PMS, seed=5)
    assert other.requests.prompt_machine.tolist() != pick["random"].tolist()


def test_import_is_torch_free():
    """The simulator never imports torch, transformers, seaborn, hydra or omegaconf (its start
    time is measured by benchmarks/replay_start.py, not by a timed unit test)."""
    code = (
        "import replay, replay.simulate, sys; "
        "bad = [m for m in ('torch', 'transformers', 'seaborn', 'hydra', 'omegaconf') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-h100",
              prompt_machines=2, token_machines=0), "design.token_machines: must be"),
        (dict(kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-h100",
              prompt_machines=-1, token_machines=2), "design.prompt_machines: must be"),
        (dict(kind="baseline", machine="dgx-h100", machines=0), "design.machines: must be"),
        (dict(kind="split", machine="dgx-h100", machines=1), "design.kind: unknown value 'split'"),
        (dict(kind="baseline", machine="dgx-x", machines=1), "design.machine: unknown machine"),
        (dict(kind="splitwise", prompt_machine="dgx-h100", prompt_machines=1, token_machines=1),
         "design.token_machine: a splitwise design needs it"),
        (dict(kind="baseline", machine="dgx-h100", machines=1, prompt_machines=1),
         "design.prompt_machines: a baseline has no"),
    ],
)  # fmt: skip
def test_bad_design_configs_raise_one_line(kwargs, match):
    with pytest.raises(DesignError, match=match) as e:
        DesignConfig(name="d", **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("model", "kw", "match"),
    [
        ("no-such-model", {}, "unknown model"),
        ("bloom-176b", dict(kv_reserve_fraction=0.5), "model.tp: bloom-176b weights"),
        ("llama2-70b", dict(tp=3), "model.tp: 3 does not divide the 8 GPUs"),
        ("llama2-70b", dict(kv_reserve_fraction=1.0), "scheduler.kv_reserve_fraction"),
    ],
)
def test_bad_designs_raise_one_line(model, kw, match):
    with pytest.raises(DesignError, match=match) as e:
        baseline("dgx-a100", 1, model, **kw)
    assert "\n" not in str(e.value)


def test_design_counts_are_needed_to_run():
    cfg = DesignConfig(name="hh", kind="splitwise", prompt_machine="dgx-h100",
                       token_machine="dgx-h100")  # fmt: skip
    with pytest.raises(DesignError, match="design.prompt_machines: set the number of nodes"):
        make_design_from(cfg, "llama2-70b")


def test_generic_design_and_costs():
    d = splitwise("dgx-h200", "dgx-a100", 2, 3, "llama2-70b")
    h200, a100 = load_machine("dgx-h200"), load_machine("dgx-a100")
    assert d.cost_per_hour == pytest.approx(2 * h200.cost_per_hour + 3 * a100.cost_per_hour)
    assert d.provisioned_power_w == pytest.approx(2 * 5600 + 3 * 3200)
    cap = make_design("splitwise-hhcap", "llama2-70b", 1, 1)
    assert cap.provisioned_power_w == pytest.approx(8 * 700 + 8 * 490)


def test_bad_trace_and_scheduler_raise_one_line():
    design = make_design("baseline-h100", "llama2-70b", machines=1)
    bad = trace([(1.0, 10, 2), (0.5, 10, 2)])
    with pytest.raises(ReplayError, match="row 2, column 'arrival_s'"):
        simulate(bad, design, phase_models=PMS)
    with pytest.raises(ReplayError, match="column 'output_tokens'"):
        simulate(trace([(0.0, 10, 0)]), design, phase_models=PMS)
    with pytest.raises(ReplayError, match="missing column 'prompt_tokens'"):
        simulate(pd.DataFrame({"request_id": [0], "arrival_s": [0.0]}), design, phase_models=PMS)
    with pytest.raises(ReplayError, match="scheduler.policy"):
        simulate(trace([(0.0, 10, 2)]), design, SchedulerConfig(policy="lifo"), PMS)
    with pytest.raises(ReplayError, match="scheduler.mixed_batch: unknown value 'chunked'"):
        simulate(trace([(0.0, 10, 2)]), design, SchedulerConfig(mixed_batch="chunked"), PMS)
    with pytest.raises(ReplayError, match="scheduler.max_preemptions: must be >= 0"):
        SchedulerConfig(max_preemptions=-1)
    with pytest.raises(ReplayError, match="scheduler.kv_transfer.exposed_s: must be"):
        SchedulerConfig(kv_transfer={"exposed_s": -1.0})
    with pytest.raises(ReplayError, match="seed: must be an integer >= 0"):
        simulate(trace([(0.0, 10, 2)]), design, phase_models=PMS, seed=-1)
    with pytest.raises(ReplayError, match="no phase model for gpu 'h100-80gb'"):
        simulate(trace([(0.0, 10, 2)]), design, phase_models={"a100-80gb": A100})


def test_requests_that_fit_nowhere_are_rejected_and_counted():
    design = make_design("splitwise-hh", "llama2-70b", 1, 1)
    res = simulate(trace([(0.0, 4000, 200), (0.1, 100, 5)]), design, phase_models=PMS)
    rq = res.requests
    assert rq.prompt_machine.tolist()[0] == -1 and math.isnan(rq.e2e_s[0])
    assert not math.isnan(rq.e2e_s[1])
    assert res.summary.requests == {"completed": 1, "incomplete": 0, "rejected": 1, "total": 2}
    # without the context limit it fits the KV cache and completes
    ok = simulate(
        trace([(0.0, 4000, 200)]), design, SchedulerConfig(enforce_max_context=False), PMS
    )
    assert ok.summary.requests["completed"] == 1


def test_progress_callback_reaches_total():
    calls = []
    rows = [(i * 0.01, 100, 3) for i in range(500)]
    simulate(
        trace(rows), make_design("baseline-h100", "llama2-70b", machines=2), phase_models=PMS,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls[-1] == (500, 500)
    assert len(calls) >= 10 and [c[0] for c in calls] == sorted(c[0] for c in calls)


def reference_split_one_pair(rows, pm, model, bw, exposed, batch_tokens=2048, threshold=512):
    """Per-iteration reference of 1 prompt + 1 token machine (no memory limit): FCFS prefill
    batches, FIFO KV transfers over one link, the token machine admits at iteration boundaries
    every request whose KV has arrived, then runs one decode step of its whole batch."""
    n = len(rows)
    first = [math.nan] * n
    done = [math.nan] * n
    ready = []  # (time KV is on the token machine, order, request)
    t, nxt, queue, free = 0.0, 0, [], 0.0
    kvb, layers = model.kv_bytes_per_token, model.num_layers
    while nxt < n or queue:
        while nxt < n and rows[nxt][0] <= t:
            queue.append(nxt)
            nxt += 1
        if not queue:
            t = rows[nxt][0]
            continue
        chunk, tok = [], 0
        while queue and (not chunk or tok + rows[queue[0]][1] <= batch_tokens):
            r = queue.pop(0)
            chunk.append(r)
            tok += rows[r][1]
        start = t
        t += pm.prefill_time([rows[r][1] for r in chunk])
        for r in chunk:
            first[r] = t
            p, o = rows[r][1], rows[r][2]
            if o == 1:
                done[r] = t
                continue
            nbytes = kvb * p
            if p >= threshold:
                end = max(max(start, free) + nbytes / bw, t + nbytes / layers / bw + exposed)
            else:
                end = max(t, free) + nbytes / bw
            free = end
            ready.append((end, len(ready), r))
    ready.sort()
    t, i, batch = 0.0, 0, {}
    while i < len(ready) or batch:
        while i < len(ready) and ready[i][0] <= t:
            batch[ready[i][2]] = 1
            i += 1
        if not batch:
            t = ready[i][0]
            continue
        ctx = sum(rows[r][1] + g for r, g in batch.items())
        t += pm.decode_time(len(batch), ctx)
        for r in list(batch):
            batch[r] += 1
            if batch[r] == rows[r][2]:
                done[r] = t
                del batch[r]
    return first, done


def test_split_pair_matches_per_iteration_reference():
    rng = np.random.default_rng(11)
    n = 150
    arr = np.sort(rng.uniform(0, 15, n))
    rows = [
        (float(a), int(p), int(o))
        for a, p, o in zip(arr, rng.integers(1, 2500, n), rng.integers(1, 80, n), strict=True)
    ]
    res = simulate(
        trace(rows), make_design("splitwise-hh", "llama2-70b", 1, 1, mixed_pool=False),
        phase_models=PMS,
    )  # fmt: skip
    spec = load_machine("dgx-h100")
    first, done = reference_split_one_pair(
        rows, H100, load_model("llama2-70b"), spec.network_bytes_per_s,
        spec.kv_exposed_transfer_s,
    )  # fmt: skip
    rq = res.requests
    np.testing.assert_allclose(rq.ttft_s + rq.arrival_s, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rq.e2e_s + rq.arrival_s, done, rtol=1e-9, atol=1e-9)
