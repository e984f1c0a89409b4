"""traces.transforms: window, scale_rate, resample, limit_context, prepare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import traces
from traces import transforms as T
from traces.errors import TraceError
from traces.stats import interarrival_cv, mean_rate


@pytest.fixture(scope="module")
def conv() -> pd.DataFrame:
    return traces.load("azure-conv-2023")


@pytest.fixture(scope="module")
def code() -> pd.DataFrame:
    return traces.load("azure-code-2023")


def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [10, 11, 12, 13, 14],
            "arrival_s": [0.0, 1.0, 2.0, 4.0, 8.0],
            "prompt_tokens": [100, 4000, 50, 4095, 5000],
            "output_tokens": [10, 200, 46, 1, 10],
        }
    )


def test_window_rezeros_and_keeps_ids():
    df = small()
    w = T.window(df, 1.0, 4.0)
    assert w["request_id"].tolist() == [11, 12]
    assert w["arrival_s"].tolist() == [0.0, 1.0]
    assert T.window(df, end_s=2.0)["request_id"].tolist() == [10, 11]
    w2 = T.window(df, start_s=3.0)
    assert w2["arrival_s"].tolist() == [1.0, 5.0]  # gap from the window start is kept
    assert df.equals(small())  # pure
    with pytest.raises(traces.TraceError, match="no requests in"):
        T.window(df, 8.5, 9.0)
    with pytest.raises(traces.TraceError, match="start_s < end_s"):
        T.window(df, 4.0, 4.0)


def test_window_on_azure(code):
    w = T.window(code, 600.0, 1200.0)
    a = code["arrival_s"]
    assert len(w) == int(((a >= 600) & (a < 1200)).sum())
    assert w["arrival_s"].min() >= 0 and w["arrival_s"].max() < 600


@pytest.mark.parametrize("target", [0.5, 2.57, 70.0])
def test_scale_rate_hits_target_and_keeps_shape(code, target):
    s = T.scale_rate(code, target)
    assert mean_rate(s["arrival_s"]) == pytest.approx(target, rel=1e-9)
    # burst shape: inter-arrival CV and token columns unchanged
    assert interarrival_cv(s["arrival_s"]) == pytest.approx(interarrival_cv(code["arrival_s"]))
    assert s[["request_id", "prompt_tokens", "output_tokens"]].equals(
        code[["request_id", "prompt_tokens", "output_tokens"]]
    )
    with pytest.raises(traces.TraceError, match="target_rate must be a positive"):
        T.scale_rate(code, 0)


def test_resample_poisson_rate_within_3_percent(conv):
    r = T.resample(conv, 70.0, duration_s=600.0, seed=0)
    assert abs(mean_rate(r["arrival_s"]) / 70.0 - 1) < 0.03
    assert abs(len(r) / (70.0 * 600) - 1) < 0.03
    assert r["arrival_s"].max() < 600.0
    assert r["request_id"].tolist() == list(range(len(r)))
    # Poisson: inter-arrival CV ~ 1
    assert interarrival_cv(r["arrival_s"]) == pytest.approx(1.0, abs=0.03)
    # pairs are drawn from the source: every (prompt, output) pair exists there
    src_pairs = set(zip(conv["prompt_tokens"], conv["output_tokens"], strict=True))
    assert set(zip(r["prompt_tokens"], r["output_tokens"], strict=True)) <= src_pairs
    # and with replacement from the whole source: token medians close to the source's
    assert r["prompt_tokens"].median() == pytest.approx(conv["prompt_tokens"].median(), rel=0.05)


def test_resample_gamma_cv(conv):
    r = T.resample(conv, 10.0, num_requests=200_000, arrival="gamma", cv=3.0, seed=1)
    assert len(r) == 200_000
    assert abs(interarrival_cv(r["arrival_s"]) / 3.0 - 1) < 0.10
    assert abs(mean_rate(r["arrival_s"]) / 10.0 - 1) < 0.03


def test_numpy_scalars_accepted(conv):
    a = T.resample(conv, np.int64(5), num_requests=np.int64(20), seed=np.int64(2))
    b = T.resample(conv, 5.0, num_requests=20, seed=2)
    assert a.equals(b)
    c, n = T.limit_context(conv, np.int64(4096))
    assert n > 0 and c.equals(T.limit_context(conv, 4096)[0])


def test_resample_seeds(conv):
    a = T.resample(conv, 20.0, duration_s=100.0, seed=7)
    b = T.resample(conv, 20.0, duration_s=100.0, seed=7)
    c = T.resample(conv, 20.0, duration_s=100.0, seed=8)
    assert pd.util.hash_pandas_object(a).equals(pd.util.hash_pandas_object(b))
    assert a.to_csv(index=False) == b.to_csv(index=False)  # byte-for-byte
    assert a.to_csv(index=False) != c.to_csv(index=False)
    g1 = T.resample(conv, 5.0, num_requests=50, arrival="gamma", cv=2.0, seed=3)
    g2 = T.resample(conv, 5.0, num_requests=50, arrival="gamma", cv=2.0, seed=3)
    assert g1.equals(g2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"duration_s": 10.0, "num_requests": 5}, "exactly one of"),
        ({}, "exactly one of"),
        ({"duration_s": 10.0, "arrival": "weibull"}, "arrival must be one of"),
        ({"duration_s": 10.0, "cv": 2.0}, "cv applies to arrival='gamma'"),
        ({"num_requests": 0}, "num_requests must be a positive integer"),
        ({"duration_s": -1.0}, "duration_s must be a positive number"),
    ],
)
def test_resample_bad_arguments(kwargs, fragment):
    with pytest.raises(traces.TraceError) as info:
        T.resample(small(), 1.0, **kwargs)
    assert fragment in str(info.value)


def test_limit_context_reject():
    df = small()
    out, n = T.limit_context(df, 4096, "reject")
    # totals: 110, 4200, 96, 4096, 5010 -> 4200 and 5010 exceed 4096
    assert n == 2
    assert out["request_id"].tolist() == [10, 12, 13]
    assert df.equals(small())


def test_limit_context_clip():
    out, n = T.limit_context(small(), 4096, "clip")
    assert n == 2
    assert out["request_id"].tolist() == [10, 11, 12, 13, 14]
    assert out["prompt_tokens"].tolist() == [100, 4000, 50, 4095, 4095]
    assert out["output_tokens"].tolist() == [10, 96, 46, 1, 1]
    assert ((out["prompt_tokens"] + out["output_tokens"]) <= 4096).all()
    assert (out["output_tokens"] >= 1).all()
    with pytest.raises(traces.TraceError, match="max_tokens must be an integer >= 2"):
        T.limit_context(small(), 1, "clip")
    with pytest.raises(traces.TraceError, match="policy must be one of"):
        T.limit_context(small(), 4096, "truncate")


def test_limit_context_on_conv(conv):
    over = int(((conv["prompt_tokens"] + conv["output_tokens"]) > 4096).sum())
    assert over > 0
    out, n = T.limit_context(conv, 4096)
    assert n == over and len(out) == len(conv) - over


def test_prepare_composes_in_order(conv):
    df, info = T.prepare(
        "azure-conv-2023",
        start_s=600.0,
        end_s=1800.0,
        scale_to_rate=8.0,
        resample_rate=40.0,
        resample_duration_s=300.0,
        arrival="gamma",
        cv=2.0,
        max_context=4096,
        context_policy="clip",
        seed=5,
    )
    assert [s["name"] for s in info["transforms"]] == [
        "window",
        "scale_rate",
        "resample",
        "limit_context",
    ]
    assert info["source"] == "azure-conv-2023" and info["source_requests"] == len(conv)
    assert info["requests"] == len(df) and info["seed"] == 5
    assert info["context_rejected"] == 0
    assert info["context_clipped"] == info["transforms"][-1]["affected"]
    assert ((df["prompt_tokens"] + df["output_tokens"]) <= 4096).all()
    assert abs(mean_rate(df["arrival_s"]) / 40.0 - 1) < 0.1
    # same as composing by hand
    manual = T.window(conv, 600.0, 1800.0)
    manual = T.scale_rate(manual, 8.0)
    manual = T.resample(manual, 40.0, duration_s=300.0, arrival="gamma", cv=2.0, seed=5)
    manual, n = T.limit_context(manual, 4096, "clip")
    assert df.equals(manual) and n == info["context_clipped"]
    again, info2 = T.prepare(
        "azure-conv-2023",
        start_s=600.0,
        end_s=1800.0,
        scale_to_rate=8.0,
        resample_rate=40.0,
        resample_duration_s=300.0,
        arrival="gamma",
        cv=2.0,
        max_context=4096,
        context_policy="clip",
        seed=5,
    )
    assert again.to_csv(index=False) == df.to_csv(index=False) and info2 == info


def test_prepare_defaults_and_dataframe_source(code):
    df, info = T.prepare(code)
    assert df.equals(code) and info["transforms"] == [] and info["source"] == "<DataFrame>"
    # resample without a length: the (windowed) source's span is used
    r, info = T.prepare(code, end_s=600.0, resample_rate=5.0, seed=1)
    w = T.window(code, end_s=600.0)["arrival_s"]
    span = info["transforms"][1]["duration_s"]
    assert span == w.iloc[-1] - w.iloc[0] and r["arrival_s"].max() < span
    assert abs(len(r) / (5.0 * span) - 1) < 0.1
    df, info = T.prepare("azure-code-2023", max_context=2048)
    assert info["context_rejected"] == len(code) - len(df) > 0
    with pytest.raises(traces.TraceError, match="need resample_rate"):
        T.prepare(code, resample_requests=10)


def test_prepare_file_with_fmt(tmp_path):
    p = tmp_path / "trace.txt"
    p.write_text(
        '{"timestamp": 0, "input_length": 9000, "output_length": 5}\n'
        '{"timestamp": 2000, "input_length": 10, "output_length": 3}\n'
    )
    df, info = T.prepare(p, fmt="mooncake", max_context=4096, context_policy="clip")
    assert info["source"] == str(p) and info["context_clipped"] == 1
    assert df["prompt_tokens"].tolist() == [4095, 10] and df["arrival_s"].tolist() == [0.0, 2.0]


def test_transforms_validate_input():
    bad = small()
    bad.loc[2, "prompt_tokens"] = 0
    with pytest.raises(traces.TraceError, match="data row 3, column 'prompt_tokens'"):
        T.window(bad, 0.0, 1.0)
    assert np.isfinite(small()["arrival_s"]).all()


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(1, 20_000), st.integers(1, 5_000)), min_size=1, max_size=30
    ),
    max_tokens=st.integers(2, 16_384),
)
def test_limit_context_clip_invariants(pairs, max_tokens):
    df = pd.DataFrame(
        {
            "request_id": range(len(pairs)),
            "arrival_s": np.arange(len(pairs), dtype=float),
            "prompt_tokens": [p for p, _ in pairs],
            "output_tokens": [o for _, o in pairs],
        }
    )
    out, n = T.limit_context(df, max_tokens, "clip")
    total = out["prompt_tokens"] + out["output_tokens"]
    assert (total <= max_tokens).all() and (out["output_tokens"] >= 1).all()
    changed = (out["prompt_tokens"] != df["prompt_tokens"]) | (
        out["output_tokens"] != df["output_tokens"]
    )
    assert int(changed.sum()) == n
    # a prompt is only clipped when it alone leaves no room for one output token
    clipped_prompt = out["prompt_tokens"] < df["prompt_tokens"]
    assert (df.loc[clipped_prompt, "prompt_tokens"] >= max_tokens).all()
    if n < len(df):
        kept, rejected = T.limit_context(df, max_tokens, "reject")
        assert rejected == n and len(kept) == len(df) - n
    else:
        with pytest.raises(traces.TraceError, match="every request exceeds"):
            T.limit_context(df, max_tokens, "reject")


def test_prepare_counts_clipped_and_rejected_tokens():
    from traces.transforms import prepare

    df = pd.DataFrame(
        {
            "request_id": [0, 1, 2],
            "arrival_s": [0.0, 1.0, 2.0],
            "prompt_tokens": [10, 90, 200],
            "output_tokens": [5, 20, 7],
        }
    )
    t, info = prepare(df, max_context=100, context_policy="clip")
    # request 1: 90 + 20 -> 90 + 10 (10 removed); request 2: 200 + 7 -> 99 + 1 (107 removed)
    assert info["context"] == {"policy": "clip", "max_context": 100, "clipped": 2,
                               "clipped_tokens": 117, "rejected": 0, "rejected_tokens": 0}  # fmt: skip
    assert t["prompt_tokens"].tolist() == [10, 90, 99]
    t, info = prepare(df, max_context=100, context_policy="reject")
    assert info["context"] == {"policy": "reject", "max_context": 100, "clipped": 0,
                               "clipped_tokens": 0, "rejected": 2, "rejected_tokens": 317}  # fmt: skip
    assert len(t) == 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(resample_rate=float("inf")), "trace.resample_rate: must be > 0 and finite"),
        (dict(resample_rate=2.0, seed=-1), "trace.seed: must be an integer >= 0"),
        (dict(cv=2.0), "trace.cv: applies to arrival=gamma"),
        (dict(context_policy="drop"), "trace.context_policy: unknown value 'drop'"),
        (dict(name="nope"), "trace.name: unknown value 'nope'"),
        (dict(resample_requests=10), "trace.resample_requests: needs trace.resample_rate"),
    ],
)
def test_trace_config_checks_each_option_once(kw, match):
    from traces.transforms import TraceConfig

    with pytest.raises(TraceError, match=match):
        TraceConfig(**{"name": "azure-conv-2023", **kw})


def test_trace_config_directory_and_huge_values(tmp_path):
    from traces.transforms import TraceConfig

    with pytest.raises(TraceError, match="trace.path: '.*' is a directory"):
        TraceConfig(path=str(tmp_path))
    f = tmp_path / "big.csv"
    f.write_text("request_id,arrival_s,prompt_tokens,output_tokens\n0,0.0,1e23,3\n")
    with pytest.raises(TraceError, match=r"big.csv: data row 1, column 'prompt_tokens': too large"):
        TraceConfig(path=str(f)).prepare()
