"""Suite-wide test settings: offline model hub, one CPU thread for torch (2-core machines)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models ran ~28x slower with two threads on 2-core machines: pin torch to one."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


def synthetic_point(point: dict, fail_at: tuple[int, int] | None = None) -> dict:
    """Monotone stand-in for the simulator (capacity grows with machines and with the GPU's
    speed, the SLO is met up to it, a stricter SLO sustains less), with latency quantiles that
    rise with the level and context-policy counts (a tenth of the requests changed). It raises
    at the Splitwise configuration ``fail_at`` (prompt, token machines), when given."""
    from experiments.study.tables import QUANTILE_LEVELS

    n_q = len(QUANTILE_LEVELS)
    d, rate = point["design"], point["trace"]["resample_rate"]
    speed = {"dgx-a100": 1.0, "dgx-h100": 2.0, "dgx-h100-cap": 1.8}
    if d["kind"] == "baseline":
        cap = 0.9 * d["machines"] * speed[d["machine"]]
    else:
        if fail_at is not None and (d["prompt_machines"], d["token_machines"]) == fail_at:
            raise RuntimeError("synthetic crash")
        cap = min(
            1.6 * d["prompt_machines"] * speed[d["prompt_machine"]],
            2.4 * d["token_machines"] * speed[d["token_machine"]] ** 0.5,
        )
    cap *= point["slo"]["ttft"][0] / 2.0  # a stricter SLO sustains less
    q = [i / (n_q - 1) for i in range(n_q)]
    n = int(10 * rate)
    policy = point["trace"].get("context_policy") or "clip"
    changed = max(1, n // 10)
    return {
        "slo_met": rate <= cap,
        "slo_worst_ratio": rate / cap,
        "throughput_rps": rate,
        "trace_requests": n,
        "context": {
            "policy": policy,
            "max_context": 4096,
            "clipped": changed if policy == "clip" else 0,
            "clipped_tokens": 100 * changed if policy == "clip" else 0,
            "rejected": changed if policy == "reject" else 0,
            "rejected_tokens": 5000 * changed if policy == "reject" else 0,
        },
        "quantiles": {
            "ttft_s": [0.05 + x for x in q],
            "tbt_s": [0.02 + x / 50 for x in q],
            "e2e_s": [1.0 + 10 * x for x in q],
        },
    }


@pytest.fixture(scope="session")
def synthetic():
    """The synthetic evaluator (``fn(point) -> result``) that studies in tests run on."""
    return synthetic_point
