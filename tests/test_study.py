"""The study: planning (budgets from specs, deduplicated searches), a synthetic end-to-end study
with resume, the multirun point mode, and the smart search against brute force on the REAL
simulator with a tiny trace."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import study as study_app
from experiments.runner import QUANTILE_LEVELS
from experiments.schemas import CONF_DIR, register
from experiments.study import budget_of, plan, pools_of
from experiments.validate import study_config

register()
N_Q = len(QUANTILE_LEVELS)


def synthetic(point):
    """Monotone stand-in for the simulator: capacity from machine counts and spec names."""
    d, rate = point["design"], point["trace"]["resample_rate"]
    speed = {"dgx-a100": 1.0, "dgx-h100": 2.0, "dgx-h100-cap": 1.8}
    if d["kind"] == "baseline":
        cap = 0.9 * d["machines"] * speed[d["machine"]]
    else:
        cap = min(
            1.6 * d["prompt_machines"] * speed[d["prompt_machine"]],
            2.4 * d["token_machines"] * speed[d["token_machine"]] ** 0.5,
        )
    return {
        "slo_met": rate <= cap,
        "slo_worst_ratio": rate / cap,
        "throughput_rps": rate,
        "quantiles": {
            "ttft_s": [0.1 * (i + 1) for i in range(N_Q)],
            "tbt_s": [0.01 * (i + 1) for i in range(N_Q)],
            "e2e_s": [1.0 * (i + 1) for i in range(N_Q)],
        },
    }


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("study", overrides=[f"paths.root={tmp_path}", *overrides])


def test_budgets_come_from_specs_and_searches_are_deduplicated(tmp_path):
    c = study_config(_cfg(tmp_path))
    power, cost = c["study"].budgets
    assert budget_of(power) == {"power_w": 224000.0, "cost_per_hour": None}
    assert budget_of(cost) == {"power_w": None, "cost_per_hour": 1520.0}
    tasks, notes = plan(c)
    # 8 designs (the paper's six, two chunked-prefill baselines) x 2 traces x 2 budgets = 32
    # rows; Baseline-H100, Baseline-H100-chunked and Splitwise-HH have the same machines at
    # iso-power and iso-cost (40 DGX-H100 either way): 26 searches.
    assert sum(len(t.labels) for t in tasks) == 32
    assert len(tasks) == 26
    assert any("H200 designs" in n and "skipped" in n for n in notes)
    hh = c["designs"]["splitwise-hh"]
    pools = pools_of(hh, c["search"])
    assert [p.power_w for p in pools] == [5600.0, 5600.0]


def test_synthetic_study_end_to_end_and_resume(tmp_path, capsys):
    cfg = _cfg(tmp_path, "experiment=tiny", "study.report=false")
    out = study_app.run(cfg, evaluator=synthetic)
    meta = out["meta"]
    assert meta["simulations"]["evaluated"] > 0 and meta["simulations"]["errors"] == 0
    budget = {(r["budget"], r["design"]): r for r in out["tables"]["budget"]}
    # 4 DGX-H100 = 22.4 kW = 7 DGX-A100; cost 152 $/h = 8 DGX-A100
    assert budget[("iso-power", "baseline-a100")]["machines"] == 7
    assert budget[("iso-cost", "baseline-a100")]["machines"] == 8
    bh = budget[("iso-power", "baseline-h100")]
    assert bh["machines"] == 4 and bh["max_rate_vs_baseline-h100"] == 1.0
    # synthetic capacity of 4 H100 baselines is 7.2 req/s: the grid rate just below it
    assert 7.2 / 1.25 < bh["max_rate"] <= 7.2
    for r in out["tables"]["budget"]:
        assert r["power_w"] <= 22400.0 + 1e-6 if r["budget"] == "iso-power" else True
        assert r["cost_per_hour"] <= 152.0 + 1e-6 if r["budget"] == "iso-cost" else True
    thr = out["tables"]["iso_throughput"]
    assert {r["design"] for r in thr} == {
        "baseline-a100",
        "baseline-h100",
        "splitwise-hh",
        "splitwise-ha",
    }
    heat = out["tables"]["heatmap"]
    assert len(heat) == 9 and any(r["slo_met"] for r in heat)
    d = out["dir"]
    for f in ("study.json", "budget.csv", "points.csv", "latency_quantiles.csv", "config.yaml"):
        assert (d / f).exists(), f
    first = (d / "budget.csv").read_bytes()
    # resume: the second run simulates nothing and writes identical tables
    again = study_app.run(cfg, evaluator=synthetic)
    assert again["meta"]["simulations"]["evaluated"] == 0
    assert again["meta"]["simulations"]["cache_hits"] > 0
    assert (d / "budget.csv").read_bytes() == first


def test_failing_points_do_not_stop_the_study(tmp_path):
    def flaky(point):
        if point["design"]["name"] == "splitwise-ha":
            raise RuntimeError("boom")
        return synthetic(point)

    cfg = _cfg(tmp_path, "experiment=tiny", "study.report=false", "study.heatmap=false")
    out = study_app.run(cfg, evaluator=flaky)
    assert out["meta"]["simulations"]["errors"] > 0
    rows = {(r["budget"], r["design"]): r for r in out["tables"]["budget"]}
    assert rows[("iso-power", "splitwise-ha")]["max_rate"] is None  # never met: errors
    assert rows[("iso-power", "splitwise-hh")]["max_rate"] is not None
    errs = [p for p in out["tables"]["points"] if p["error"]]
    assert errs and all(e["error"] == "RuntimeError: boom" for e in errs)


def test_point_mode_for_multirun(tmp_path, capsys):
    over = [
        "point.design=splitwise-hh",
        "point.trace=azure-conv-2023",
        "point.rate=3",
        "point.prompt_machines=2",
        "point.token_machines=2",
        "search=quick",
    ]
    cfg = _cfg(tmp_path, *over)
    rec = study_app.run(cfg, evaluator=synthetic)["point"]
    assert rec["status"] == "ok" and rec["result"]["slo_met"] is True
    files = list((tmp_path / "results" / "cache").rglob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"] == rec["key"]
    study_app.run(cfg, evaluator=synthetic)
    assert "(cached)" in capsys.readouterr().out
    bad = _cfg(tmp_path, *over[:-1], "point.token_machines=0")
    from experiments.errors import ExperimentError

    with pytest.raises(ExperimentError, match="point.token_machines: must be >= 1"):
        study_app.run(bad, evaluator=synthetic)


@pytest.mark.slow
def test_smart_search_matches_brute_force_on_the_real_simulator(tmp_path):
    """Tiny trace (20 s at a few req/s), 1-3 machines per pool: bisect == full grid."""
    from experiments import runner
    from experiments.cache import PointCache
    from experiments.provision import (
        Budget,
        Pool,
        RateGrid,
        brute_force_max_rate,
        max_rate_under_budget,
        min_machines,
    )
    from experiments.schemas import DesignConf, ModelConf, SchedulerConf, SloConf, TraceConf

    design = DesignConf(
        name="splitwise-hh", kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-h100"
    )
    trace = TraceConf(name="azure-conv-2023")
    cache = PointCache(tmp_path)

    def evaluate(counts, rate):
        point = runner.make_point(
            model=ModelConf(name="llama2-70b"),
            design=runner.design_point(design, counts),
            trace=runner.trace_point(trace, rate, 20.0),
            scheduler=SchedulerConf(),
            slo=SloConf(),
            profiles={"source": "reference"},
        )
        rec = cache.evaluate(point, runner.evaluate_point)
        assert rec["status"] == "ok", rec.get("error")
        return rec["result"]

    pools = [Pool("prompt", 5600.0, 38.0, 1, 3), Pool("token", 5600.0, 38.0, 1, 3)]
    smart = min_machines(evaluate, pools, 6.0)
    brute = min_machines(evaluate, pools, 6.0, mode="grid")
    assert smart.frontier == brute.frontier and smart.frontier
    assert smart.cheapest == brute.cheapest
    grid = RateGrid(1.0, 64.0, 0.5)
    res = max_rate_under_budget(evaluate, pools, Budget(power_w=4 * 5600.0), grid, rate_start=4.0)
    best, who = brute_force_max_rate(evaluate, pools, Budget(power_w=4 * 5600.0), grid)
    assert res.rate == best and res.best in who


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]],
    ids=["joblib", "submitit_local"],
)
def test_hydra_multirun_jobs_share_the_cache(tmp_path, launcher):
    """`-m` with a launcher: each job one point, all into one cache; a rerun hits."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "experiments.apps.study",
        "-m",
        *launcher,
        "search=quick",
        "point.design=splitwise-hh",
        "point.trace=azure-conv-2023",
        "point.prompt_machines=1,2",
        "point.token_machines=1",
        "point.rate=2",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    files = list((tmp_path / "results" / "cache").rglob("*.json"))
    assert len(files) == 2
    recs = [json.loads(f.read_text()) for f in files]
    assert sorted(r["point"]["design"]["prompt_machines"] for r in recs) == [1, 2]
    assert all(r["status"] == "ok" for r in recs)
    p2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert len(list((tmp_path / "results" / "cache").rglob("*.json"))) == 2
    if "joblib" in launcher[0]:
        out = p2.stdout
    else:  # submitit jobs log to files under the sweep dir
        out = "".join(f.read_text() for f in (tmp_path / "results" / "multirun").rglob("*.out"))
    assert out.count("(cached)") == 2, out[-2000:]


def test_h200_designs_join_with_measured_profiles(tmp_path):
    """A measured profile CSV with H200 rows under results/profiles brings the H200 designs in,
    simulated on the reference set plus those rows (the slowdown reference stays DGX-A100)."""
    from characterize.modeling.profiles import reference_profiles, write_profiles
    from experiments import runner
    from experiments.schemas import ModelConf, SchedulerConf, SloConf

    ref = reference_profiles()
    h = ref[(ref["gpu"] == "h100-80gb") & (ref["model"] == "llama2-70b") & (ref["tp"] == 8)]
    h = h.assign(gpu="h200-141gb", latency_s=h["latency_s"] * 0.8, source="test-h200")
    write_profiles(h, tmp_path / "results" / "profiles" / "h200" / "profiles.csv")
    c = study_config(_cfg(tmp_path, "study.traces=[azure-conv-2023]"))
    tasks, notes = plan(c)
    h200 = [t for t in tasks if t.design_key in ("splitwise-h200", "baseline-h200")]
    assert {t.design_key for t in h200} == {"splitwise-h200", "baseline-h200"}
    assert all(t.profiles and t.profiles["source"].endswith(".csv") for t in h200)
    assert not any(t.profiles for t in tasks if t.design_key == "baseline-a100")
    assert any("measured H200 rows" in n for n in notes)
    t = next(t for t in h200 if t.design_key == "baseline-h200")
    point = runner.make_point(
        model=ModelConf(name="llama2-70b"),
        design=runner.design_point(t.design, (1,)),
        trace=runner.trace_point(t.trace, 1.0, 10.0),
        scheduler=SchedulerConf(),
        slo=SloConf(),
        profiles=t.profiles,
    )
    res = runner.evaluate_point(point)
    assert res["requests"]["completed"] > 0 and res["cost_per_hour"] == 47.5


def test_measured_h200_profiles_picks_the_study_model_and_native_engine(tmp_path):
    """One file per (model, engine) under results/profiles: take the study model's, native first."""
    from characterize.modeling.profiles import reference_profiles, write_profiles
    from experiments.study import measured_h200_profiles

    ref = reference_profiles()
    h200 = ref[(ref["gpu"] == "h100-80gb") & (ref["tp"] == 8)].assign(gpu="h200-141gb")
    llama = h200[h200["model"] == "llama2-70b"]
    bloom = h200[h200["model"] == "bloom-176b"]
    root = tmp_path / "profiles"
    write_profiles(bloom.assign(source="h200; splitbench-native; tp8 shard"), root / "a" / "p.csv")
    write_profiles(llama.assign(source="h200; transformers; tp8 shard"), root / "b" / "p.csv")
    write_profiles(llama.assign(source="h200; splitbench-native; tp8 shard"), root / "c" / "p.csv")
    (root / "d").mkdir()
    (root / "d" / "details.csv").write_text("not,a,profile\n1,2,3\n")
    assert measured_h200_profiles(str(root), "llama2-70b") == str(root / "c" / "p.csv")
    assert measured_h200_profiles(str(root), "bloom-176b") == str(root / "a" / "p.csv")
    assert measured_h200_profiles(str(root / "d"), "llama2-70b") is None
