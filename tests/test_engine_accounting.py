"""What the real runs now record beside the client's times: the router's instance and the proxy's
prefill leg (load generator), the engines' own counters (engine_metrics), the table built from
them (engine_accounting), and the iteration audit of baseline2 per instance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.loadgen import records
from experiments.loadgen.request import Record, routing_headers
from experiments.validation import engine_accounting as ea
from experiments.validation import engine_metrics as em
from experiments.validation import iteration_audit as ia

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "results/reference/validation/profile/splitwise/profiles.csv"
OV = ("model=tiny-llama-512", "gpu=cpu", "serving.iteration_s=0.002")


@pytest.mark.parametrize("headers, want", [
    ({"X-Backend": "1"}, (1, math.nan)),
    ({"X-Prefill-Seconds": "0.125000"}, (-1, 0.125)),
    ({"X-Backend": "x", "X-Prefill-Seconds": "soon"}, (-1, math.nan)),
    ({"X-Prefill-Seconds": "-1"}, (-1, math.nan)),
    ({}, (-1, math.nan)),
])  # fmt: skip
def test_routing_headers_are_read_and_a_bad_one_is_ignored(headers, want):
    b, leg = routing_headers(headers)
    assert b == want[0]
    assert (math.isnan(leg) and math.isnan(want[1])) or leg == want[1]


def test_the_request_table_carries_the_instance_and_the_prefill_leg():
    a = Record(0, 0.0, 10, 2, sent_s=0.0, token_times_s=[0.1, 0.2], status="ok", backend=1,
               prefill_leg_s=0.05)  # fmt: skip
    b = Record(1, 0.5, 10, 2, sent_s=0.5, token_times_s=[0.6, 0.7], status="ok")
    df = records.request_table([a, b])
    assert df["token_machine"].tolist() == [1, 0] and df["prompt_machine"].tolist() == [1, 0]
    assert df["prefill_leg_s"].iloc[0] == 0.05 and math.isnan(df["prefill_leg_s"].iloc[1])


def _metrics(q: float, qn: int, pre: float, steps: int, tok: float) -> str:
    return "\n".join([
        "# HELP vllm:request_queue_time_seconds x",
        f'vllm:request_queue_time_seconds_sum{{engine="0"}} {q}',
        f'vllm:request_queue_time_seconds_count{{engine="0"}} {qn}',
        f'vllm:request_queue_time_seconds_bucket{{engine="0",le="0.3"}} {qn}',
        f'vllm:request_prefill_time_seconds_sum{{engine="0"}} {pre}',
        f'vllm:request_prefill_time_seconds_count{{engine="0"}} {qn}',
        f'vllm:iteration_tokens_total_sum{{engine="0"}} {tok}',
        f'vllm:iteration_tokens_total_count{{engine="0"}} {steps}',
        'vllm:num_preemptions_total{engine="0"} 0',
        'vllm:prefix_cache_hits_total{engine="0"} 0',
    ]) + "\n"  # fmt: skip


def test_engine_means_are_the_counter_differences_per_request_and_step():
    before = em.parse_counters(_metrics(1.0, 10, 2.0, 100, 1000.0))
    after = em.parse_counters(_metrics(3.0, 30, 6.0, 300, 5000.0))
    d = em.diff(before, after)
    m = em.engine_means(d)
    assert m["requests"] == 20 and m["queue_ms"] == pytest.approx(100.0)
    assert m["prefill_ms"] == pytest.approx(200.0) and m["steps"] == 200
    assert m["tokens_per_step"] == pytest.approx(20.0) and m["preemptions"] == 0
    reuse, engine = em.split({"prefill": d})
    assert set(reuse["prefill"]) == set(em.REUSE) and set(engine["prefill"]) == set(em.ENGINE)
    # an engine without the counters: NaN, never a division by zero
    assert math.isnan(em.engine_means({})["queue_ms"])


def _run(d: Path, reqs, engine: dict | None, machines=None, legs=None) -> Path:
    d.mkdir(parents=True)
    n = len(reqs)
    req = pd.DataFrame({"request_id": range(n), "sent_s": [r[0] for r in reqs],
                        "arrival_s": [r[0] for r in reqs], "prompt_tokens": [r[1] for r in reqs],
                        "status": ["ok"] * n,
                        "token_machine": machines or [0] * n})  # fmt: skip
    if legs is not None:
        req["prefill_leg_s"] = legs
    req.to_parquet(d / "requests.parquet")
    pd.DataFrame({"request_id": range(n),
                  "token_times_s": [r[2] for r in reqs]}).to_parquet(d / "tokens.parquet")
    if engine is not None:
        (d / "records.json").write_text(json.dumps({"engine": engine}))
    return d


def test_the_table_prices_the_prefill_instances_prompts_and_skips_old_records(tmp_path):
    from experiments.validation.serving_fit import PhaseTimes

    d = em.diff(em.parse_counters(_metrics(0, 0, 0, 0, 0)),
                em.parse_counters(_metrics(0.4, 2, 0.3, 40, 400.0)))  # fmt: skip
    _, eng = em.split({"prefill": d, "decode": d})
    reqs = [(0.0, 300, [0.2, 0.25]), (0.1, 100, [0.3, 0.35])]
    new = _run(tmp_path / "new", reqs, eng, legs=[0.2, 0.1])
    old = _run(tmp_path / "old", reqs, None)
    rung = ia.Rung("splitwise", "conv-1R", OV, 1.2, PROFILE, (new, old))
    df = ea.table([rung])
    assert list(df.columns) == ea.COLUMNS and df["instance"].tolist() == ["decode", "prefill"]
    p = df[df["instance"] == "prefill"].iloc[0]
    assert p["runs"] == 1 and p["requests"] == 2 and p["queue_ms"] == pytest.approx(200.0)
    t = PhaseTimes.from_source(str(PROFILE), "tiny-llama-512", "cpu")
    # both runs' prompts are priced (the old run's requests are the same requests)
    want = 1e3 * 1.2 * np.mean([t.prefill(300) + 0.002, t.prefill(100) + 0.002])
    assert p["model_prefill_ms"] == pytest.approx(want)
    assert p["client_prefill_leg_ms"] == pytest.approx(150.0)
    assert math.isnan(df[df["instance"] == "decode"].iloc[0]["model_prefill_ms"])
    text = "\n".join(ea.section(df))
    assert "| splitwise | conv-1R | prefill | 2 | 200.0 |" in text
    assert ea.table([ia.Rung("splitwise", "x", OV, 1.0, PROFILE, (old,))]).empty


def test_baseline2_is_audited_per_instance_where_the_records_name_it(tmp_path):
    # two instances, one request each, streaming at the same time: per instance the batch is 1
    # (pooled it would be 2); records without the instance column give no baseline2 rows
    reqs = [(0.0, 100, [0.1 + 0.02 * k for k in range(6)]),
            (0.0, 100, [0.1 + 0.02 * k for k in range(6)])]  # fmt: skip
    named = _run(tmp_path / "named", reqs, None, machines=[0, 1], legs=[math.nan] * 2)
    anon = _run(tmp_path / "anon", reqs, None)
    assert ia.machines(named) == [0, 1] and ia.machines(anon) is None
    df = ia.audit([ia.Rung("baseline2", "x", OV, 1.0, PROFILE, (named,))])
    assert set(df["batch_lo"]) == {1} and df["gaps"].sum() == 10
    assert ia.audit([ia.Rung("baseline2", "x", OV, 1.0, PROFILE, (anon,))]).empty


def test_what_if_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from experiments.validation import what_if

    assert what_if.main([str(tmp_path)]) == 2
    assert "usage:" in capsys.readouterr().err
    assert what_if.main([str(tmp_path), str(tmp_path / "o"), "splitwise-no-colon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected design:key=value" in err[0]
    assert what_if.parse(["splitwise:a=1", "splitwise:b=2", "baseline:c=3"]) == {
        "splitwise": ["a=1", "b=2"], "baseline": ["c=3"]}
    # a folder that is not a published report: one line naming the file
    assert what_if.main([str(tmp_path), str(tmp_path / "o"), "splitwise:a=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0]


def test_rstar_interval_brackets_the_interpolated_value_and_is_seeded():
    from experiments.validation import judge

    rng = np.random.default_rng(0)

    def rung(scale, n=300):  # TTFT per request and 20 token gaps per request
        return ([np.array([v]) for v in rng.exponential(0.1 * scale, n)],
                [rng.exponential(0.02 * scale, 20) for _ in range(n)])  # fmt: skip

    rungs = [(2.0, *rung(1.0)), (4.0, *rung(2.0)), (6.0, *rung(4.0))]
    limit_ttft, limit_tbt = 0.5, 0.1
    ratios = [judge.slo_ratio(float(np.quantile(np.concatenate(t), 0.9)),
                              float(np.quantile(np.concatenate(g), 0.9)), limit_ttft, limit_tbt)
              for _, t, g in rungs]  # fmt: skip
    v = judge.rstar_interpolated([r for r, *_ in rungs], ratios)["value"]
    a = judge.rstar_interval(rungs, limit_ttft, limit_tbt, resamples=300, seed=3)
    assert a["ci_low"] < v < a["ci_high"] and a["resamples"] == 300
    assert a == judge.rstar_interval(rungs, limit_ttft, limit_tbt, resamples=300, seed=3)
    assert math.isnan(judge.rstar_interval(rungs[:1], limit_ttft, limit_tbt)["ci_low"])
