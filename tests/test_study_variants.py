"""Issue 13's study tasks on a synthetic evaluator: variants (each design at its best
iso-power configuration under changed settings), the trace mismatch, load curves and batch
jobs; and the pieces under them: trace token scaling, phase-model adjustments, the KV link
bandwidth factor and the variant overrides."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import study as study_app
from experiments.config.checks import study_config
from experiments.config.schemas import CONF_DIR, VariantConf, register
from experiments.errors import ExperimentError
from tests.conftest import synthetic_point

register()

TINY = [
    "search=quick",
    "study.budgets=[{name: iso-power, reference_machine: dgx-h100, reference_count: 4, "
    "power: true, cost: false}]",
    "study.report=false",
]


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("study", overrides=[f"paths.root={tmp_path}", *overrides])


def variant_aware(point: dict) -> dict:
    """The synthetic evaluator, with a capacity that the varied settings move: x0.5 with
    prompts x2 (and x2 with prompts x0.5), x0.8 with round-robin routing, x0.9 with the
    iteration overhead x2, +5% on seed 1; the coding trace sustains 0.8x the conversation's."""
    out = dict(synthetic_point(point))
    f = 1.0 / point["trace"].get("prompt_scale", 1.0)
    f *= 0.8 if point["scheduler"]["policy"] == "round-robin" else 1.0
    adjust = point["profiles"].get("adjust") or {}
    f *= 0.9 if adjust.get("overhead_scale", 1.0) == 2.0 else 1.0
    f *= 1.05 if point["seed"] == 1 else 1.0
    f *= 0.8 if point["trace"]["name"] == "azure-code-2023" else 1.0
    rate = point["trace"]["resample_rate"]
    cap = rate / out["slo_worst_ratio"] * f
    out.update(slo_met=rate <= cap, slo_worst_ratio=rate / cap)
    out["throughput_rps"] = min(rate, cap)
    out["goodput_rps"] = out["throughput_rps"] * (1.0 if rate <= cap else 0.5)
    out["ttft_s"] = {"p50": 0.1 * rate / cap, "p99": 0.3 * rate / cap}
    return out


def _run(tmp_path, experiment, *extra):
    cfg = _cfg(tmp_path, f"experiment={experiment}", *TINY, *extra)
    return study_app.run(cfg, evaluator=variant_aware)


def test_variants_hold_the_configuration_and_re_search_the_rate(tmp_path):
    out = _run(
        tmp_path,
        "robustness",
        "study.mismatch=false",
        "study.load_factors=[]",
        "study.batch_overload=null",
        "study.variants=[{name: rr, group: routing, set: {scheduler.policy: round-robin}},"
        "{name: ovh2, group: overhead, set: {profiles.adjust.overhead_scale: 2.0}},"
        "{name: s1, group: seed, set: {seed: 1}},"
        "{name: nomix, group: mixed pool, applies_to: splitwise, set: {design.mixed_pool: false}}]",
    )
    t = out["tables"]
    budget = {(r["trace"], r["design"]): r for r in t["budget"]}
    rows = pd.DataFrame(t["variants"])
    assert set(rows["variant"]) == {"rr", "ovh2", "s1", "nomix"}
    grid = out["meta"]["search"]
    step = 1 + grid["rate_step"]
    for _, r in rows.iterrows():
        b = budget[(r["trace"], r["design"])]
        cfg_b = [b["prompt_machines"], b["token_machines"], b["machines"]]
        cfg_v = [r["prompt_machines"], r["token_machines"], r["machines"]]
        assert [x for x in cfg_v if pd.notna(x)] == [x for x in cfg_b if pd.notna(x)]
        assert r["own_rate"] == b["max_rate"]
        factor = {"rr": 0.8, "ovh2": 0.9, "s1": 1.05, "nomix": 1.0}[r["variant"]]
        if factor == 1.0:  # unchanged settings: the same rate (the same cached points)
            assert r["max_rate"] == b["max_rate"] and r["change"] == 0.0
        else:  # the re-searched rate moves with the capacity, within one grid step
            ratio = r["max_rate"] / b["max_rate"]
            assert factor / step**1.01 <= ratio <= factor * step**1.01, (r["variant"], ratio)
    # the mixed pool variant applies to Splitwise designs only
    nomix = rows[rows["variant"] == "nomix"]
    assert set(nomix.loc[nomix["applies"], "kind"]) == {"splitwise"}
    ratios = pd.DataFrame(t["variant_ratios"])
    assert set(ratios["vs"]) <= {"baseline-a100", "baseline-h100"} and len(ratios)
    for _, r in ratios.iterrows():
        num = rows[
            (rows.variant == r.variant) & (rows.trace == r.trace) & (rows.design == r.design)
        ]
        den = rows[(rows.variant == r.variant) & (rows.trace == r.trace) & (rows.design == r.vs)]
        assert r["ratio"] == pytest.approx(num["max_rate"].iloc[0] / den["max_rate"].iloc[0])
        d0 = budget[(r.trace, r.design)]["max_rate"] / budget[(r.trace, r.vs)]["max_rate"]
        assert r["default_ratio"] == pytest.approx(d0)
        assert r["change"] == pytest.approx(r["ratio"] / d0 - 1)
    written = pd.read_csv(tmp_path / "results" / "study" / "robustness-llama2-70b" / "variants.csv")
    assert len(written) == len(rows)


def test_mismatch_load_and_batch_tasks(tmp_path):
    out = _run(tmp_path, "robustness", "study.variants=[]")
    t = out["tables"]
    budget = {(r["trace"], r["design"]): r for r in t["budget"]}
    mm = pd.DataFrame(t["mismatch"])
    # every design, provisioned for one trace, serves the other
    assert len(mm) == 2 * 5
    for _, r in mm.iterrows():
        src, dst = r["mismatch"].split("->")
        assert r["trace"] == dst and r["source_trace"] == src and src != dst
        assert r["own_rate"] == budget[(dst, r["design"])]["max_rate"]
        assert r["source_rate"] == budget[(src, r["design"])]["max_rate"]
        # a configuration found for another trace is never better than the trace's own best;
        # the same configuration takes the trace's own answer (not searched twice)
        assert r["max_rate"] <= r["own_rate"] * 1.0001
        own = budget[(dst, r["design"])]
        same = [r["prompt_machines"], r["token_machines"], r["machines"]] == [
            own["prompt_machines"],
            own["token_machines"],
            own["machines"],
        ] or (r["kind"] == "baseline" and r["machines"] == own["machines"])
        assert r["same_configuration"] == same
        if same:
            assert r["max_rate"] == r["own_rate"] and r["simulations"] == 0
    load = pd.DataFrame(t["load"])
    assert set(load["design"]) == set(budget_d for _, budget_d in budget)
    for _, g in load.groupby(["trace", "design"]):
        assert g["rate"].is_monotonic_increasing
        assert g["load_factor"].min() < 0.6 and g["load_factor"].max() > 1.4
        met = g.sort_values("rate")["slo_met"].tolist()
        assert met == sorted(met, reverse=True)  # met up to the max rate, then missed
        assert (g.loc[g["load_factor"] <= 1.0, "slo_met"]).all()
        assert g["slo_attainment"].between(0, 1).all()
    batch = pd.DataFrame(t["batch"])
    for _, g in batch.groupby(["trace", "design"]):
        assert g["slo_config"].sum() == 1  # the SLO search's configuration is among them
        assert g["best_requests_per_dollar"].sum() == 1 and g["best_rps_per_kw"].sum() == 1
        best = g.loc[g["best_requests_per_dollar"]].iloc[0]
        assert best["requests_per_dollar"] == g["requests_per_dollar"].max()
        assert best["requests_per_dollar"] == pytest.approx(
            best["throughput_rps"] * 3600 / best["cost_per_hour"]
        )
        assert (g["offered_rate"] > 2 * g["slo_max_rate"]).all()
        if g["kind"].iloc[0] == "splitwise":
            assert len(g) > 1  # several frontier configurations tried
    # a rerun reads every point from the cache
    again = _run(tmp_path, "robustness", "study.variants=[]")
    assert again["meta"]["simulations"]["evaluated"] == 0
    assert again["tables"]["batch"] == t["batch"]


def test_every_new_experiment_plans_its_variants(tmp_path):
    for name, n in (("robustness", 4), ("scheduler", 3), ("sensitivity", 14), ("seeds", 4)):
        c = study_config(_cfg(tmp_path, f"experiment={name}"))
        assert len(c["study"].variants) == n
        assert c["study"].name == f"{name}-llama2-70b"
        c = study_config(_cfg(tmp_path, f"experiment={name}", "model=bloom-176b"))
        assert c["study"].name == f"{name}-bloom-176b"


@pytest.mark.parametrize(
    "variant, expect",
    [
        ({"name": "x", "set": {"scheduler.polcy": "random"}}, "study.variants[0].set.scheduler"),
        ({"name": "x", "set": {"scheduler.policy": "nope"}}, "policy"),
        ({"name": "x", "set": {"profiles.adjust.overhead_scale": -1}}, "overhead_scale"),
        ({"name": "x", "set": {"gpu.name": "a"}}, "unknown setting"),
        ({"name": "x", "set": {"seed": -2}}, "integer >= 0"),
        ({"name": "x", "applies_to": "both", "set": {}}, "applies_to"),
    ],
)
def test_a_bad_variant_is_one_line_naming_it(tmp_path, variant, expect):
    from experiments.study import plan

    c = study_config(_cfg(tmp_path, "experiment=robustness", *TINY))
    c["study"].variants = [VariantConf(**variant)]
    with pytest.raises(ExperimentError) as e:
        plan(c)
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_scale_tokens():
    from traces.errors import TraceError
    from traces.transforms import prepare, scale_tokens

    df = pd.DataFrame(
        {
            "request_id": [0, 1, 2],
            "arrival_s": [0.0, 1.0, 2.0],
            "prompt_tokens": [1, 3, 1000],
            "output_tokens": [1, 10, 7],
        }
    )
    out = scale_tokens(df, prompt=0.5, output=2.0)
    assert out["prompt_tokens"].tolist() == [1, 2, 500]  # rounded half to even, at least 1
    assert out["output_tokens"].tolist() == [2, 20, 14]
    assert df["prompt_tokens"].tolist() == [1, 3, 1000]  # input unchanged
    t, info = prepare(df, prompt_scale=2.0, max_context=1500, context_policy="clip")
    assert [s["name"] for s in info["transforms"]] == ["scale_tokens", "limit_context"]
    assert (t["prompt_tokens"] + t["output_tokens"]).max() <= 1500  # clipped after scaling
    assert t["prompt_tokens"].tolist()[:2] == [2, 6]
    hashed = df.assign(block_hashes=[[1], [2], [3]])
    with pytest.raises(TraceError, match="block hashes"):
        scale_tokens(hashed, prompt=2.0)
    assert scale_tokens(hashed, output=2.0)["output_tokens"].tolist() == [2, 20, 14]


def test_phase_adjustments():
    from characterize.modeling.phase.adjust import PhaseAdjust
    from characterize.modeling.phase_model import (
        PhaseModelError,
        kv_read_floor_s,
        load_phase_models,
    )

    plain = load_phase_models("reference")
    pm = plain.get("llama2-70b", "h100-80gb", 8)
    floor = load_phase_models("reference", adjust=PhaseAdjust(decode_context="kv_read_floor"))
    f = floor.get("llama2-70b", "h100-80gb", 8)
    assert f.decode_coef[2] == kv_read_floor_s("llama2-70b", "h100-80gb", 8) < pm.decode_coef[2]
    assert f.decode_coef[:2] == pm.decode_coef[:2] and "adjusted" in f.source
    ovh = load_phase_models("reference", adjust=PhaseAdjust(overhead_scale=2.0))
    o = ovh.get("llama2-70b", "h100-80gb", 8)
    assert o.prefill_coef[0] == 2 * pm.prefill_coef[0] and o.decode_coef[0] == 2 * pm.decode_coef[0]
    assert o.prefill_floor == 2 * pm.prefill_floor
    assert o.decode_time(8, 8000) - pm.decode_time(8, 8000) == pytest.approx(pm.decode_coef[0])
    nosq = load_phase_models("reference", adjust=PhaseAdjust(decode_batch_sq=False))
    n = nosq.get("llama2-70b", "h100-80gb", 8)
    assert n.decode_coef[3] == 0.0 and n.decode_coef[1] != pm.decode_coef[1]  # refitted
    # the slowdown reference is never adjusted
    for s in (floor, ovh, nosq):
        assert s.reference_model("llama2-70b") is plain.reference_model("llama2-70b")
    assert load_phase_models("reference", adjust=PhaseAdjust()) is plain
    with pytest.raises(PhaseModelError, match="decode_context"):
        PhaseAdjust(decode_context="roofline")
    with pytest.raises(PhaseModelError, match="overhead_scale"):
        PhaseAdjust(overhead_scale=math.inf)


def test_kv_link_bandwidth_scale():
    from replay.errors import ReplayError
    from replay.kv_transfer import KVLinks, KVTransferConfig

    def end(scale):
        cfg = KVTransferConfig(layerwise_threshold_tokens=10**9, bandwidth_scale=scale)
        links = KVLinks([1e9, 1e9], [0.0, 0.0], 1000, 80, cfg)
        return links.transfer(0, 1, 1000, 0.0, 1.0)

    # serialized: after the prompt, bytes / bandwidth (1e6 B at 1e9 B/s = 1 ms)
    assert end(1.0) - 1.0 == pytest.approx(1e-3)
    assert end(0.5) - 1.0 == pytest.approx(2e-3)
    with pytest.raises(ReplayError, match="bandwidth_scale"):
        KVTransferConfig(bandwidth_scale=0)


def test_rate_method_scale_replays_the_whole_trace_in_order():
    from experiments import point as pt
    from traces.transforms import TraceConfig

    t = TraceConfig(name="mooncake-conversation", rate_method="scale")
    point = pt.trace_point(t, 10.0, 600.0)
    assert point["scale_to_rate"] == 10.0 and point["resample_rate"] is None
    df, info = TraceConfig(**point).prepare(max_context=131072)
    src, _ = TraceConfig(name="mooncake-conversation").prepare(max_context=131072)
    assert len(df) == len(src) == info["requests"]  # every request, once
    assert df["prompt_tokens"].tolist() == src["prompt_tokens"].tolist()  # in the trace's order
    span = df["arrival_s"].iloc[-1] - df["arrival_s"].iloc[0]
    assert (len(df) / span) == pytest.approx(10.0, rel=1e-6)  # traces.stats.mean_rate
    assert [s["name"] for s in info["transforms"]][:1] == ["scale_rate"]
    assert "resample_rate" in pt.trace_point(TraceConfig(name="azure-conv-2023"), 10.0, 60.0)
    with pytest.raises(Exception, match="rate_method"):
        TraceConfig(name="azure-conv-2023", rate_method="warp")
