"""The study: planning (budgets from specs, deduplicated searches), a synthetic end-to-end study
with resume, the multirun point mode, and the smart search against brute force on the REAL
simulator with a tiny trace."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import study as study_app
from experiments.config.checks import study_config
from experiments.config.schemas import CONF_DIR, register
from experiments.study import budget_of, plan, pools_of

register()


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("study", overrides=[f"paths.root={tmp_path}", *overrides])


def test_budgets_come_from_specs_and_searches_are_deduplicated(tmp_path):
    c = study_config(_cfg(tmp_path))
    power, cost = c["study"].budgets
    assert budget_of(power) == {"power_w": 224000.0, "cost_per_hour": None}
    assert budget_of(cost) == {"power_w": None, "cost_per_hour": 1520.0}
    tasks, notes = plan(c)
    # 10 designs (the paper's six, two chunked-prefill baselines, two H200 designs on derived
    # profiles) x 2 traces x 2 budgets = 40 rows; Baseline-H100, Baseline-H100-chunked and
    # Splitwise-HH have the same machines at iso-power and iso-cost (40 DGX-H100 either way);
    # the other designs' budgets give different frontiers: 3 x 2 x 2 + 7 x 2 x 2 = 34 searches.
    assert sum(len(t.labels) for t in tasks) == 40
    assert len(tasks) == 34
    assert any("H200 designs" in n and "DERIVED profiles" in n for n in notes)
    h200 = [t for t in tasks if t.design_key in ("splitwise-h200", "baseline-h200")]
    assert h200 and all(t.design.display.endswith("(derived)") for t in h200)
    assert all(t.profiles and "with-h200-" in t.profiles["source"] for t in h200)
    derived = pd.read_csv(h200[0].profiles["source"])
    assert (
        derived.loc[derived["gpu"] == "h200-141gb", "source"].str.startswith("derived from").all()
    )
    hh = c["designs"]["splitwise-hh"]
    pools = pools_of(hh, c["search"])
    assert [p.power_w for p in pools] == [5600.0, 5600.0]


def test_synthetic_study_end_to_end_and_resume(tmp_path, capsys, synthetic):
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


def test_failing_points_do_not_stop_the_study(tmp_path, synthetic):
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


def test_point_mode_for_multirun(tmp_path, capsys, synthetic):
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
    from _search_reference import brute_force_max_rate

    from experiments import point as pt
    from experiments.cache import PointCache
    from experiments.config.schemas import DesignConf, ModelConf, SchedulerConf, SloConf, TraceConf
    from experiments.provision import Budget, Pool, RateGrid, max_rate_under_budget, min_machines

    design = DesignConf(
        name="splitwise-hh", kind="splitwise", prompt_machine="dgx-h100", token_machine="dgx-h100"
    )
    trace = TraceConf(name="azure-conv-2023")
    cache = PointCache(tmp_path)

    def evaluate(counts, rate):
        point = pt.make_point(
            model=ModelConf(name="llama2-70b"),
            design=pt.design_point(design, counts),
            trace=pt.trace_point(trace, rate, 20.0),
            scheduler=SchedulerConf(),
            slo=SloConf(),
            profiles={"source": "reference"},
        )
        rec = cache.evaluate(point, pt.evaluate_point)
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
    from experiments import point as pt
    from experiments.config.schemas import ModelConf, SchedulerConf, SloConf

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
    point = pt.make_point(
        model=ModelConf(name="llama2-70b"),
        design=pt.design_point(t.design, (1,)),
        trace=pt.trace_point(t.trace, 1.0, 10.0),
        scheduler=SchedulerConf(),
        slo=SloConf(),
        profiles=t.profiles,
    )
    res = pt.evaluate_point(point)
    assert res["requests"]["completed"] > 0 and res["cost_per_hour"] == 47.5


def test_measured_h200_profiles_picks_the_study_model_and_native_engine(tmp_path):
    """One file per (model, engine) under results/profiles: take the study model's, native first."""
    from characterize.modeling.profile_sets import measured_tables
    from characterize.modeling.profiles import reference_profiles, write_profiles

    def measured_h200_profiles(folder, model):
        return measured_tables(folder, model, "h200-141gb")

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
    assert measured_h200_profiles(str(root), "llama2-70b") == [str(root / "c" / "p.csv")]
    assert measured_h200_profiles(str(root), "bloom-176b") == [str(root / "a" / "p.csv")]
    assert measured_h200_profiles(str(root / "d"), "llama2-70b") is None


def test_h200_profile_set_merges_measured_tables_and_prints_them(tmp_path, capsys):
    from characterize.modeling.profile_sets import SetSpec, resolve
    from characterize.modeling.profiles import (
        ProfileError,
        read_profiles,
        reference_profiles,
        write_profiles,
    )

    ref = reference_profiles()
    h200 = ref[(ref["gpu"] == "h100-80gb") & (ref["tp"] == 8)].assign(gpu="h200-141gb")
    root = tmp_path / "measured"
    a, b = root / "a.csv", root / "b.csv"
    write_profiles(h200[h200["model"] == "llama2-70b"].assign(source="h200 run a"), a)
    write_profiles(h200[h200["model"] == "bloom-176b"].assign(source="h200 run b"), b)
    spec = SetSpec(measured_dir=str(root))
    got = resolve(spec, "llama2-70b", 8, ["a100-80gb", "h200-141gb"], str(tmp_path))
    merged = read_profiles(got.path)
    out = capsys.readouterr().out
    llama = int((h200["model"] == "llama2-70b").sum())
    assert f"merged 1 measured table(s) ({llama} rows) with the 'paper' profiles" in out
    assert str(a) in out and str(b) not in out  # the study model's table only
    assert got.kinds() == {"a100-80gb": "reference", "h200-141gb": "measured"}
    assert len(merged) == len(ref) + llama  # the reference rows keep the DGX-A100 reference
    write_profiles(h200[h200["model"] == "llama2-70b"].assign(source="h200 run c"), root / "c.csv")
    with pytest.raises(ProfileError, match="measures the same h200-141gb point as"):
        resolve(spec, "llama2-70b", 8, ["h200-141gb"], str(tmp_path))


# --- failed points, Ctrl-C, backends, sweeps ---------------------------------------------------


def test_failed_points_are_shown_as_failed_not_as_slo_misses(tmp_path, capsys, synthetic):
    def flaky(point):
        if point["design"]["name"] == "splitwise-hh":
            raise RuntimeError("boom")
        return synthetic(point)

    cfg = _cfg(tmp_path, "experiment=tiny", "study.report=false")
    out = study_app.run(cfg, evaluator=flaky)
    text = capsys.readouterr().out
    failed = [p for p in out["tables"]["points"] if p["status"] == "failed"]
    assert failed and all(
        p["slo_met"] is None and p["error"] == "RuntimeError: boom" for p in failed
    )
    ok = [p for p in out["tables"]["points"] if p["status"] == "ok"]
    assert ok and all(isinstance(p["slo_met"], bool) for p in ok)
    heat = out["tables"]["heatmap"]  # the heatmap is of splitwise-hh: its simulated cells failed
    assert {h["status"] for h in heat if h["evaluated"]} == {"failed"}
    assert all(h["slo_met"] is None for h in heat if h["status"] == "failed")
    assert {h["status"] for h in heat if not h["evaluated"]} <= {"inferred"}
    n = out["meta"]["simulations"]["failed_points"]
    assert n == len(failed) + sum(h["status"] == "failed" for h in heat)
    assert f"first failure: RuntimeError: boom ({n} points failed)" in text
    budget = {(r["budget"], r["design"]): r for r in out["tables"]["budget"]}
    assert budget[("iso-power", "splitwise-hh")]["failed_points"] > 0
    assert budget[("iso-power", "baseline-h100")]["failed_points"] == 0
    import pandas as pd

    csv = pd.read_csv(out["dir"] / "points.csv")
    assert set(csv.loc[csv["status"] == "failed", "design"]) == {"splitwise-hh"}
    assert csv.loc[csv["status"] == "failed", "slo_met"].isna().all()


def test_a_study_in_which_every_point_failed_raises_after_writing_its_tables(tmp_path):
    from experiments.errors import ExperimentError

    def broken(point):
        raise ValueError("expected non-negative integer")

    cfg = _cfg(tmp_path, "experiment=tiny", "study.report=false")
    with pytest.raises(ExperimentError, match=r"all \d+ points failed; first: ValueError: exp"):
        study_app.run(cfg, evaluator=broken)
    assert (tmp_path / "results" / "study" / "tiny" / "points.csv").exists()


def test_context_policy_is_summarised_per_trace(tmp_path, capsys, synthetic):
    def with_context(point):
        res = synthetic(point)
        res["trace_requests"] = 100
        res["context"] = {
            "policy": "clip",
            "max_context": 4096,
            "clipped": 8,
            "clipped_tokens": 800,
            "rejected": 0,
            "rejected_tokens": 0,
        }
        return res

    cfg = _cfg(tmp_path, "experiment=tiny", "study.report=false", "study.heatmap=false")
    out = study_app.run(cfg, evaluator=with_context)
    ctx = out["meta"]["context"]["azure-conv-2023"]
    n = ctx["points"]
    assert n > 0 and ctx["requests"] == 100 * n and ctx["clipped"] == 8 * n
    assert ctx["clipped_tokens"] == 800 * n and ctx["policy"] == "clip"
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("context"))
    assert line.startswith("context (clip at 4096 tokens), azure-conv-2023: ")
    assert f"{8 * n} of {100 * n} requests clipped (8.0%, {800 * n} tokens removed)" in line
    # the study states its choice: clip, in its own config
    assert out["meta"]["traces"]["azure-conv-2023"]["context_policy"] == "clip"


def test_progress_bar_counts_searches_and_points(tmp_path, capsys, synthetic):
    from experiments.study import context_of as _context
    from experiments.study import run_tasks

    c = study_config(_cfg(tmp_path, "experiment=tiny", "study.heatmap=false"))
    tasks, _ = plan(c)
    ctx = _context(c, synthetic)
    res = run_tasks(ctx, tasks, 1, report=True, progress=True)
    err = capsys.readouterr().err
    assert f"{len(tasks)}/{len(tasks)}" in err and "search" in err
    assert len(res) == len(tasks) and all(r is not None for r in res)
    assert ctx.progress_file is None  # removed


@pytest.mark.parametrize("backend", ["ray", "submitit"])
def test_cluster_backends_fill_the_same_cache(tmp_path, synthetic, backend):
    """The same searches on a local Ray cluster / submitit's local executor give the same
    answers as joblib, through the one point cache (a rerun here simulates nothing)."""
    import sys

    import cloudpickle

    from experiments.study import context_of as _context
    from experiments.study import run_tasks

    mod = pytest.importorskip(backend)
    conftest = sys.modules[synthetic.__module__]
    c = study_config(_cfg(tmp_path, "experiment=tiny", "study.heatmap=false"))
    tasks, _ = plan(c)
    tasks = tasks[:3]
    if backend == "ray":
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(conftest)
        mod.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        cloudpickle.register_pickle_by_value(conftest)
    try:
        remote = run_tasks(
            _context(c, synthetic), tasks, 2, backend=backend, work_dir=tmp_path / "jobs"
        )
    finally:
        if backend == "ray":
            mod.shutdown()
    local = run_tasks(_context(c, synthetic), tasks, 1)
    assert [r["rate"] for r in remote] == [r["rate"] for r in local]
    assert [r["best"] for r in remote] == [r["best"] for r in local]
    assert sum(r["evaluated"] for r in remote) > 0 and sum(r["evaluated"] for r in local) == 0


def test_unknown_backend_is_a_one_line_error(tmp_path):
    from experiments.apps._cli import precheck
    from experiments.apps.study import _validate
    from experiments.errors import ExperimentError

    with pytest.raises(ExperimentError, match=r"^search.backend: unknown value 'dask' \(known"):
        precheck("study", [f"paths.root={tmp_path}", "search.backend=dask"], _validate)


def test_sweep_label_and_headline():
    from experiments import sweep

    assert sweep.label_of(["experiment=tiny", "slo=strict", "profiles.source=/a/b.csv"]) == (
        "profiles.source=_a_b.csv,slo=strict"
    )
    rec = {"status": "error", "error": "ValueError: x", "result": None, "key": "k"}
    assert sweep.headline({"point": rec}) == ("failed", "ValueError: x", {})
    ok = {"status": "ok", "error": None, "result": {"slo_met": True, "throughput_rps": 2.5}}
    assert sweep.headline(ok) == ("ok", None, {"slo_met": True, "throughput_rps": 2.5})
    summary = {
        "throughput_rps": 1.0,
        "slo": {"name": "paper", "all_ok": False, "worst_ratio": 1.5},
        "requests": {"completed": 3},
    }
    assert sweep.headline(summary)[2] == {
        "completed": 3,
        "slo_met": False,
        "slo_worst_ratio": 1.5,
        "throughput_rps": 1.0,
    }


def _sub(tmp_path, *argv, timeout=300):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    exe = Path(sys.executable).parent / argv[0]
    return subprocess.run(
        [str(exe), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )


def _sweep_rows(tmp_path, app):
    import csv

    (table,) = (tmp_path / "results" / "multirun" / app).glob("*/sweep.csv")
    return list(csv.DictReader(table.open())), table.parent


@pytest.mark.slow
def test_multirun_with_a_bad_replay_point_runs_the_others_and_writes_the_sweep_table(tmp_path):
    p = _sub(
        tmp_path,
        "splitbench-replay",
        "-m",
        "design.token_machines=-1,1",
        "design.prompt_machines=1",
        "trace.resample_rate=2",
        "trace.resample_duration_s=5",
        "progress=false",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: job 0 (design.token_machines=-1 design.prompt_machines=1 trace.resample_rate=2 "
        "trace.resample_duration_s=5 progress=False): design.token_machines: must be >= 1, got -1"
    ]
    rows, sweep_dir = _sweep_rows(tmp_path, "replay")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "failed"), ("1", "ok")]
    assert rows[0]["error"] == "design.token_machines: must be >= 1, got -1"
    assert int(rows[1]["completed"]) > 0 and rows[1]["slo_met"] in ("True", "False")
    assert (sweep_dir / "1" / "summary.json").exists()
    assert json.loads((sweep_dir / "0" / "job.json").read_text())["status"] == "failed"
    assert "sweep: 2 jobs, 1 failed" in p.stdout


@pytest.mark.slow
def test_point_mode_multirun_records_each_job_and_all_failed_exits_2(tmp_path):
    common = [
        "search=quick",
        "search.duration_s=5",
        "point.design=splitwise-hh",
        "point.trace=azure-conv-2023",
        "point.prompt_machines=1",
        "point.rate=2",
    ]
    p = _sub(tmp_path, "splitbench-study", "-m", *common, "point.token_machines=-1,1")
    assert p.returncode == 0, p.stderr[-2000:]
    rows, sweep_dir = _sweep_rows(tmp_path, "study")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    rec = json.loads((sweep_dir / "1" / "record.json").read_text())
    assert rec["status"] == "ok" and rec["point"]["design"]["token_machines"] == 1
    assert not (sweep_dir / "0" / "record.json").exists()
    bad = _sub(tmp_path, "splitbench-study", "-m", *common, "point.token_machines=-1,-2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 2


@pytest.mark.slow
def test_whole_study_multirun_gives_each_job_its_folder(tmp_path):
    p = _sub(
        tmp_path,
        "splitbench-study",
        "-m",
        "experiment=tiny",
        "slo=paper,strict",
        "study.designs=[baseline-h100,splitwise-hh]",
        "study.heatmap=false",
        "study.report=false",
        "search.duration_s=5",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    studies = tmp_path / "results" / "study"
    names = sorted(d.name for d in studies.iterdir())
    label = "search.duration_s=5,slo={},study.designs=[baseline-h100,splitwise-hh],study.heatmap=False,study.report=False"
    assert names == sorted(f"tiny--{label.format(s)}" for s in ("paper", "strict"))
    for n in names:
        meta = json.loads((studies / n / "study.json").read_text())
        assert meta["label"] == n and "experiment=tiny" in meta["overrides"]
    slos = {json.loads((studies / n / "study.json").read_text())["slo"]["name"] for n in names}
    assert slos == {"paper", "strict"}
    rows, _ = _sweep_rows(tmp_path, "study")
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(int(r["evaluated"]) for r in rows)


@pytest.mark.slow
def test_ctrl_c_during_a_study_is_one_line_and_exit_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    exe = Path(sys.executable).parent / "splitbench-study"
    p = subprocess.Popen(
        [str(exe), "experiment=tiny", "search.n_jobs=2", "study.report=false"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    cache = tmp_path / "results" / "cache"
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.rglob("*.json")):
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    n = len(list(cache.rglob("*.json")))
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # (shown whole when it is not one line)
    line = lines[0]
    m = re.fullmatch(r"interrupted: (\d+) points cached, rerun to resume", line)
    assert m and 1 <= int(m.group(1)) <= n, line
    assert not (tmp_path / "results" / "study" / "tiny" / "study.json").exists()


def test_study_prints_the_measured_tables_it_runs_on(tmp_path, capsys, synthetic):
    """A measured (or CPU smoke) profile never enters a study unseen: the study names it."""
    from characterize.modeling.profiles import reference_profiles, write_profiles

    folder = tmp_path / "results" / "profiles" / "run-1"
    folder.mkdir(parents=True)
    write_profiles(reference_profiles(), folder / "profiles.csv")
    cfg = _cfg(
        tmp_path, "experiment=tiny", "study.report=false", "study.heatmap=false",
        "profiles=measured",
    )  # fmt: skip
    study_app.run(cfg, evaluator=synthetic)
    out = capsys.readouterr().out
    assert f"profiles: 1 measured table(s) from {tmp_path / 'results' / 'profiles'}: " in out
    assert "run-1/profiles.csv" in out
