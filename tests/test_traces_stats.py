"""traces.stats.describe against the README numbers of the bundled Azure traces."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import traces
from traces.stats import busiest_window, describe, interarrival_cv, mean_rate

# README of traces/data/azure-llm-2023 ("Quick statistics"); percentiles rounded there.
README = {
    "azure-code-2023": {
        "requests": 8819,
        "span_s": 3436,
        "mean_rate_rps": 2.57,
        "interarrival_cv": 13.15,
        "prompt": (2048, 1469, 5188, 7436, 7437),
        "output": (27.9, 13, 55, 251, 1899),
        "ratio": 73.4,
    },
    "azure-conv-2023": {
        "requests": 19366,
        "span_s": 3502,
        "mean_rate_rps": 5.53,
        "interarrival_cv": 1.09,
        "prompt": (1155, 1020, 2734, 4142, 14050),
        "output": (211.1, 129, 424, 601, 1000),
        "ratio": 5.47,
    },
}


@pytest.mark.parametrize("name", sorted(README))
def test_describe_matches_readme(name):
    ref = README[name]
    s = describe(traces.load(name))
    assert s["requests"] == ref["requests"]
    assert s["span_s"] == pytest.approx(ref["span_s"], abs=0.5)
    assert round(s["mean_rate_rps"], 2) == ref["mean_rate_rps"]
    assert round(s["interarrival_cv"], 2) == ref["interarrival_cv"]
    for col, key in (("prompt_tokens", "prompt"), ("output_tokens", "output")):
        mean, p50, p90, p99, mx = ref[key]
        assert s[f"{col}_mean"] == pytest.approx(mean, abs=0.5 if mean > 100 else 0.05)
        assert s[f"{col}_p50"] == pytest.approx(p50, abs=0.5)
        assert s[f"{col}_p90"] == pytest.approx(p90, abs=1.0)  # README rounds 5187.6 / 2734.5
        assert s[f"{col}_p99"] == pytest.approx(p99, abs=1.0)  # 251.46 (linear) vs 251
        assert s[f"{col}_max"] == mx
    assert round(s["prompt_output_ratio"], 1 if ref["ratio"] > 10 else 2) == ref["ratio"]


def test_describe_busiest_windows():
    code = describe(traces.load("azure-code-2023"))
    conv = describe(traces.load("azure-conv-2023"))
    # the code trace is bursty: its busiest second far exceeds its mean rate
    assert code["busiest_second_requests"] > 20 * code["mean_rate_rps"]
    assert conv["busiest_second_requests"] < 5 * conv["mean_rate_rps"]
    assert code["busiest_minute_requests"] >= code["busiest_second_requests"]


def test_helpers_on_small_input():
    a = [0.0, 0.2, 0.9, 1.0, 5.0]
    assert busiest_window(a, 1.0) == 3  # [0, 1) holds 0.0, 0.2, 0.9
    assert busiest_window(a, 60.0) == 5
    assert mean_rate(a) == pytest.approx(5 / 5.0)
    assert math.isnan(mean_rate([1.0]))
    assert interarrival_cv([0.0, 1.0, 2.0, 3.0]) == 0.0
    df = pd.DataFrame(
        {"request_id": [0], "arrival_s": [0.0], "prompt_tokens": [3], "output_tokens": [1]}
    )
    s = describe(df)
    assert s["requests"] == 1 and math.isnan(s["mean_rate_rps"]) and s["prompt_output_ratio"] == 3
