"""The node/instance model: a node of num_gpus devices runs num_gpus // tp instances, each with
its own KV memory, queue and scheduler; design counts, cost and power are per node."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from replay import DesignError, LinearPhaseModel, baseline, simulate, splitwise

# Hand-computed from the specs: llama2-70b weights 137,950,658,560 B, KV 327,680 B/token
# (2 x 80 layers x 8 KV heads x 128 x 2 B); an H100 holds 80 GiB = 85,899,345,920 B.
#   tp 2: (2 x 85,899,345,920 x 0.9 - 137,950,658,560) / 327,680 = 50,867.2  -> 50,867
#   tp 4: (4 x 85,899,345,920 x 0.9 - 137,950,658,560) / 327,680 = 522,726.8 -> 522,726
#   tp 8: (8 x 85,899,345,920 x 0.9 - 137,950,658,560) / 327,680 = 1,466,444.3 -> 1,466,444
HAND = {2: (4, 50_867), 4: (2, 522_726), 8: (1, 1_466_444)}


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_kv_capacity_per_instance_matches_hand(tp):
    per_node, cap = HAND[tp]
    d = baseline("dgx-h100", 3, "llama2-70b", tp=tp, kv_reserve_fraction=0.1)
    inst = d.instances()
    assert len(inst) == 3 * per_node
    assert {i.kv_capacity_tokens for i in inst} == {cap}
    assert [i.node for i in inst] == [n for n in range(3) for _ in range(per_node)]
    # cost and provisioned power are those of the 3 nodes, whatever tp is
    assert d.cost_per_hour == pytest.approx(3 * 38.0)
    assert d.provisioned_power_w == pytest.approx(3 * 8 * 700.0)
    assert d.describe()["instances_per_node"] == {"dgx-h100": per_node}


def test_issue_repro_tp2_reserve_02_does_not_fit():
    with pytest.raises(DesignError, match=r"model.tp: llama2-70b weights \(138 GB\) do not fit"):
        baseline("dgx-h100", 1, "llama2-70b", tp=2, kv_reserve_fraction=0.2)


def test_tp_must_divide_the_node():
    with pytest.raises(DesignError, match="model.tp: 3 does not divide the 8 GPUs"):
        baseline("dgx-h100", 1, "llama2-70b", tp=3)


def _trace(n, prompt, output, gap):
    return pd.DataFrame(
        {
            "request_id": np.arange(n),
            "arrival_s": np.arange(n) * gap,
            "prompt_tokens": np.full(n, prompt),
            "output_tokens": np.full(n, output),
        }
    )


PM = LinearPhaseModel(gpu="h100-80gb", tp=4)


def test_every_instance_runs_its_own_queue_and_memory():
    d = baseline("dgx-h100", 1, "llama2-70b", tp=4)  # 2 instances on one node
    res = simulate(_trace(40, 500, 20, 0.01), d, phase_models={"h100-80gb": PM,
                   "a100-80gb": PM})  # fmt: skip
    used = set(res.requests.prompt_machine)
    assert used == {0, 1}  # JSQ spreads over both instances
    assert (res.requests.prompt_machine == res.requests.token_machine).all()
    assert res.summary.cost_per_hour == 38.0 and res.summary.requests["completed"] == 40
    # a request longer than one instance's KV memory is rejected (tp 2: 50,867 tokens)
    small = baseline("dgx-h100", 1, "llama2-70b", tp=2, kv_reserve_fraction=0.1)
    big = pd.DataFrame({"request_id": [0], "arrival_s": [0.0], "prompt_tokens": [3000],
                        "output_tokens": [60_000]})  # fmt: skip
    from replay import SchedulerConfig

    r = simulate(big, small, SchedulerConfig(enforce_max_context=False),
                 phase_models={"h100-80gb": PM, "a100-80gb": PM})  # fmt: skip
    assert r.summary.requests["rejected"] == 1


def test_splitwise_instances_keep_their_pool():
    d = splitwise("dgx-h100", "dgx-a100", 1, 2, "llama2-70b", tp=4)
    inst = d.instances()
    assert [i.prompt_pool for i in inst] == [True, True, False, False, False, False]
    assert [i.spec for i in inst] == ["dgx-h100"] * 2 + ["dgx-a100"] * 4
    # each instance has tp GPUs' share of the node's InfiniBand (400 / 200 Gbps per GPU)
    assert inst[0].network_bytes_per_s == pytest.approx(4 * 400e9 / 8)
    assert inst[2].network_bytes_per_s == pytest.approx(4 * 200e9 / 8)
