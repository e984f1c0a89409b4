"""replay invariants on random small traces and designs (hypothesis), preemption, mixed pool."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _replay_designs import named_design as make_design
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from characterize.modeling.specs import load_machine, load_model
from replay import LinearPhaseModel, SchedulerConfig, simulate

H100 = LinearPhaseModel(gpu="h100-80gb", prefill_per_token_s=5e-5, decode_base_s=0.02)
A100 = LinearPhaseModel(
    gpu="a100-80gb", prefill_per_token_s=1.2e-4, decode_base_s=0.035, decode_per_request_s=3e-4
)
PMS = {"h100-80gb": H100, "a100-80gb": A100, "h100-80gb-pcap": H100}
MODEL = load_model("llama2-70b")


def reserve_for(tokens: int, machine: str = "dgx-h100") -> float:
    """kv_reserve_fraction that leaves about ``tokens`` tokens of KV cache (tiny caches)."""
    mem = load_machine(machine).memory_bytes
    return 1.0 - (MODEL.weight_bytes + tokens * MODEL.kv_bytes_per_token) / mem


def make_trace(rows):
    df = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"])
    df = df.sort_values("arrival_s", kind="stable").reset_index(drop=True)
    df.insert(0, "request_id", np.arange(len(df)) + 1000)
    return df


def check_invariants(res, trace):
    rq = res.requests
    cl = res.cluster
    n = len(trace)
    rejected = rq.prompt_machine.to_numpy() < 0
    done = ~np.isnan(rq.e2e_s.to_numpy())
    # every admitted request completes exactly once; nothing silently dropped
    assert (done | rejected).all() and not (done & rejected).any()
    assert cl.completed == done.sum() == n - res.summary.requests["rejected"]
    # tokens conserved
    gen = np.asarray(cl.gen)
    assert (gen[done] == rq.output_tokens.to_numpy()[done]).all()
    # causality
    d = rq[done]
    assert (d.queue_s >= -1e-12).all()
    assert (d.ttft_s >= d.queue_s - 1e-12).all()
    assert (d.e2e_s >= d.ttft_s - 1e-12).all()
    multi = d[d.output_tokens > 1]
    assert (multi.tbt_max_s >= multi.tbt_mean_s * (1 - 1e-9)).all()
    # the exact gap distribution: o - 1 gaps per request, adding up to e2e - ttft
    v, w = res.tbt_gaps()
    assert w.sum() == pytest.approx(float((d.output_tokens - 1).sum()), abs=1e-6)
    assert float(np.dot(v, w)) == pytest.approx(float((d.e2e_s - d.ttft_s).sum()), rel=1e-9,
                                                 abs=1e-9)  # fmt: skip
    # KV memory never exceeds capacity
    for m in cl.machines:
        assert m.max_c <= m.cap
    # time never goes back: each machine's spans are ordered and do not overlap
    it = res.iterations
    for _, g in it.groupby("machine"):
        start = g.start_s.to_numpy()
        dur = g.iterations * g.first_s + g.increment_s * g.iterations * (g.iterations - 1) / 2
        assert (np.diff(start) >= 0).all()
        assert (start[1:] >= (start + dur.to_numpy())[:-1] - 1e-9).all()
    # utilization is a fraction of the time each pool existed
    for u in res.summary.utilization.values():
        assert u is None or 0.0 <= u <= 1.0 + 1e-9
    # a machine is in one pool at a time: it alternates home -> mixed -> home, and ends home
    for m in cl.machines:
        assert m.role == m.home
    pc = res.pool_changes
    for _, g in pc.groupby("machine"):
        roles = g.role.astype(str).tolist()
        assert roles[0::2] == ["mixed"] * len(roles[0::2])
        assert "mixed" not in roles[1::2]


designs = st.sampled_from(
    [
        ("baseline-h100", dict(machines=1)),
        ("baseline-a100", dict(machines=3)),
        ("splitwise-hh", dict(prompt_machines=1, token_machines=1)),
        ("splitwise-hh", dict(prompt_machines=2, token_machines=2)),
        ("splitwise-ha", dict(prompt_machines=1, token_machines=2)),
        ("splitwise-hhcap", dict(prompt_machines=2, token_machines=1)),
    ]
)
request = st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 3500), st.integers(1, 1500))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    design=designs,
    rows=st.lists(request, min_size=1, max_size=40),
    cache=st.sampled_from([None, 4500, 9000]),
    policy=st.sampled_from(["jsq", "round-robin", "random"]),
    threshold=st.sampled_from([1, 4096]),
    max_batch=st.sampled_from([None, 3]),
)
def test_invariants_hold_on_random_traces(design, rows, cache, policy, threshold, max_batch):
    name, kw = design
    reserve = 0.1 if cache is None else reserve_for(cache)
    d = make_design(name, "llama2-70b", kv_reserve_fraction=reserve, **kw)
    cfg = SchedulerConfig(
        policy=policy, prompt_queue_threshold_tokens=threshold, max_batch_size=max_batch,
        token_kv_threshold_fraction=0.3,
    )  # fmt: skip
    tr = make_trace(rows)
    res = simulate(tr, d, cfg, phase_models=PMS, seed=3)
    check_invariants(res, tr)


def test_full_kv_cache_preempts_youngest_and_everything_completes():
    d = make_design(
        "baseline-h100", "llama2-70b", machines=1, kv_reserve_fraction=reserve_for(6000)
    )
    rows = [(0.01 * i, 900, 1500) for i in range(6)]
    res = simulate(make_trace(rows), d, SchedulerConfig(max_preemptions=1), phase_models=PMS)
    check_invariants(res, make_trace(rows))
    assert res.summary.preemptions > 0
    assert res.requests.preemptions.iloc[0] == 0  # the oldest is never the victim here
    assert res.summary.requests["completed"] == 6


def test_mixed_pool_grows_under_prompt_pressure_and_drains():
    rows = [(0.001 * i, 2000, 20) for i in range(60)]
    d = make_design("splitwise-hh", "llama2-70b", 1, 3)
    tr = make_trace(rows)
    res = simulate(tr, d, SchedulerConfig(prompt_queue_threshold_tokens=8192), phase_models=PMS)
    check_invariants(res, tr)
    assert res.summary.pool_changes >= 2
    rq = res.requests
    local = rq[rq.prompt_machine == rq.token_machine]
    assert len(local) > 0 and (local.kv_transfer_s == 0).all()
    assert set(local.prompt_machine) <= {1, 2, 3}  # token machines that joined the mixed pool
    d_off = make_design("splitwise-hh", "llama2-70b", 1, 3, mixed_pool=False)
    off = simulate(tr, d_off, SchedulerConfig(), phase_models=PMS)
    assert off.summary.pool_changes == 0
    assert (off.requests.prompt_machine == 0).all()
    assert res.summary.ttft_s["p90"] < off.summary.ttft_s["p90"]


@pytest.mark.slow
def test_speed_is_linear_in_requests_even_when_overloaded():
    """O(1)-ish work per request: spans, not iterations. Generous bounds (CI machines vary)."""
    import time

    rng = np.random.default_rng(0)
    d = make_design("splitwise-hh", "llama2-70b", 4, 2)
    per_req = {}
    for rate in (20.0, 60.0):  # about capacity, then three times over it
        n = int(rate * 300)
        tr = pd.DataFrame(
            {
                "request_id": np.arange(n),
                "arrival_s": np.sort(rng.uniform(0, 300, n)),
                "prompt_tokens": rng.integers(50, 4000, n),
                "output_tokens": rng.integers(1, 90, n),
            }
        )
        t0 = time.process_time()
        res = simulate(tr, d, phase_models=PMS)
        per_req[rate] = (time.process_time() - t0) / n
        assert res.summary.requests["completed"] == n
    assert 1.0 / per_req[20.0] > 10_000  # requests per CPU second (target on a quiet core: 30k)
    assert per_req[60.0] < 2.5 * per_req[20.0]
