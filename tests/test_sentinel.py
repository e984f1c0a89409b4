"""The speed sentinel (experiments/validation/sentinel.py): the reference gap it is compared
with, the factor of a rung, the scaled profile and serving terms a rung is simulated with, the
same-runs capacity and R*, and the drift table of the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.validation import sentinel as sn

REF = "results/reference/validation/profile/profiles.csv"


def _probes(path, gaps: dict[int, list[float]]):
    rows = [{"probe": "delta", "streams": n, "seconds": g} for n, gs in gaps.items() for g in gs]
    rows.append({"probe": "alpha", "streams": 1, "seconds": 9.0})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_probe_gap_takes_the_most_streams_the_probes_ran_up_to_the_setting(tmp_path):
    f = _probes(tmp_path / "probes.csv", {1: [0.010, 0.012, 0.011], 4: [0.020, 0.030, 0.022]})
    assert sn.probe_gap(f, 8) == (4, pytest.approx(0.022), 3)
    assert sn.probe_gap(f, 2) == (1, pytest.approx(0.011), 3)
    from experiments.validation.errors import StepError

    with pytest.raises(StepError, match="no delta probe of at most 0"):
        sn.probe_gap(f, 0)


def test_factor_of_a_rung_is_the_median_over_its_repeats():
    assert sn.factor([{"factor": 1.1}, {"factor": 0.9}, {"factor": 1.3}]) == pytest.approx(1.1)
    assert sn.factor([None, {}]) == 1.0  # no sentinel: the engine as profiled


def test_sentinel_ids_are_their_own():
    from experiments.validation.live import prompt_seed
    from experiments.validation.probes import probe_seed

    seeds = {sn.sentinel_seed(0, d, ld, r) for d in ("baseline", "splitwise")
             for ld in ("conv-1R", "code-0.5R") for r in range(2)}  # fmt: skip
    assert len(seeds) == 8
    assert not seeds & {prompt_seed(0, "baseline", "conv-1R", 0), probe_seed(0, "baseline")}


def test_scaled_profile_and_terms(tmp_path):
    src = pd.read_csv(REF)
    out = sn.scaled_profile(REF, 1.25, tmp_path)
    got = pd.read_csv(out)
    assert len(got) == len(src)
    np.testing.assert_allclose(got["latency_s"], src["latency_s"] * 1.25, rtol=1e-8)
    np.testing.assert_allclose(got["latency_std_s"], src["latency_std_s"] * 1.25, rtol=1e-8)
    assert (got["batch_size"] == src["batch_size"]).all()
    assert got["source"].str.endswith("latency x 1.2500 (speed sentinel)").all()
    ov = ["model=m", "serving.iteration_s=0.004", "serving.arrival_s=0.05",
          "serving.kv_load_s_per_token=1e-05", "serving.decode_leg_s=0.02"]  # fmt: skip
    assert sn.scaled_terms(ov, 1.25) == [
        "model=m", "serving.iteration_s=0.005", "serving.arrival_s=0.05",
        "serving.kv_load_s_per_token=1.25e-05", "serving.decode_leg_s=0.02"]  # fmt: skip


def test_applied_as_overhead_adds_the_excess_gap_to_delta0_and_scales_nothing():
    ov = ["model=m", "serving.iteration_s=0.002", "serving.kv_load_s=0.003"]
    recs = [{"factor": 1.2, "probe_gap_s": 0.015}, {"factor": 1.1, "probe_gap_s": 0.015}, None]
    got, f, info = sn.applied(ov, recs, "overhead")
    # the median factor 1.15 over the probe's 15 ms gap: 2.25 ms more per iteration
    assert f == 1.0 and info["sentinel_factor"] == pytest.approx(1.15)
    assert info["sentinel_excess_s"] == pytest.approx(0.015 * 0.15)
    assert got == ["model=m", "serving.kv_load_s=0.003", "serving.iteration_s=0.00425"]
    # a faster engine takes delta0 down, never below 0; no delta0 before: from 0
    got, _, _ = sn.applied(["model=m"], [{"factor": 0.5, "probe_gap_s": 0.02}], "overhead")
    assert got == ["model=m", "serving.iteration_s=0"]
    # scale: the overrides as they are and the factor for replay_argv; no sentinel: unchanged
    assert sn.applied(ov, recs, "scale")[:2] == (ov, pytest.approx(1.15))
    assert sn.applied(ov, [None], "overhead")[:2] == (ov, 1.0)


def test_same_runs_capacity_and_rstar_come_from_the_simulated_rungs(tmp_path):
    """With per-rung simulations the simulated capacity is the overload rung's completions/s
    and R* is interpolated between the simulated rungs, as on the real side; without, the
    prediction's."""
    from test_validate import _default_cfg, _real_dir, _sim_dir

    from experiments.validation.scoring import design_tables
    from experiments.validation.workload import Load

    c = _default_cfg("designs=[baseline]", "compare.bootstrap=100")
    lds = [Load(name="conv-0.6R", trace="azure-conv-2023", rate=0.6),
           Load(name="conv-1.3C", trace="azure-conv-2023", rate=1.3)]  # fmt: skip
    sims, reals, traces = {}, {}, {}
    for ld, scale in zip(lds, (1.0, 5.0), strict=True):
        sims[ld.name] = _sim_dir(tmp_path / f"s-{ld.name}", scale, 1.0)
        reals[ld.name] = [_real_dir(tmp_path / f"r-{ld.name}", scale)]
        traces[ld.name] = tmp_path / f"t-{ld.name}.csv"
        pd.DataFrame({"arrival_s": np.arange(100.0) / ld.rate}).to_csv(traces[ld.name])
    pred = {"capacity_rps": 3.0, "rstar_rps": 1.25}
    _, cap = design_tables(c, "baseline", lds, sims, reals, traces, pred)
    _, same = design_tables(c, "baseline", lds, sims, reals, traces, pred, same_runs=True)
    cap, same = cap.set_index("quantity"), same.set_index("quantity")
    assert cap.loc["capacity_rps", "sim"] == 3.0 and cap.loc["rstar_rps", "sim"] == 1.25
    # the same requests on both sides: the same estimator gives the same value
    assert same.loc["capacity_rps", "sim"] == pytest.approx(same.loc["capacity_rps", "real"])
    assert same.loc["rstar_rps", "sim"] == pytest.approx(same.loc["rstar_rps", "real"])
    assert np.isfinite(same.loc["rstar_rps", "sim"])


def test_drift_table_reads_profiles_and_sentinels(tmp_path):
    from test_validate import _default_cfg

    from experiments.validation.report.drift_sections import drift_rows, drift_section
    from experiments.validation.steps import Steps
    from experiments.validation.workload import Load

    c = _default_cfg("designs=[baseline,splitwise]", "repeats=1")
    steps = Steps(tmp_path / "run", log=lambda s: None)
    src = pd.read_csv(REF)
    for design, f in (("baseline", 1.0), ("splitwise", 1.2)):
        p = steps.path(f"profile-{design}")
        p.mkdir(parents=True)
        src.assign(latency_s=src["latency_s"] * f).to_csv(p / "profiles.csv", index=False)
        steps.results[f"fit-{design}"] = {"source": str(p / "profiles.csv")}
    ld = Load(name="conv-1R", trace="azure-conv-2023", rate=1.0)
    rep = steps.path("replay-splitwise-conv-1R-r0")
    rep.mkdir(parents=True)
    (rep / "sentinel.json").write_text(json.dumps(
        {"streams": 8, "gap_s": 0.033, "probe_gap_s": 0.030, "factor": 1.1, "n_gaps": 400,
         "probe_n_gaps": 380, "t_s": 0.0}))  # fmt: skip
    rows = drift_rows(c, steps, [ld])
    assert [(r["design"], r["what"]) for r in rows] == [("splitwise", "profile_ratio"),
                                                        ("splitwise", "sentinel")]  # fmt: skip
    assert rows[0]["value"] == pytest.approx(1.2) and rows[0]["n"] == len(src)
    assert rows[1]["value"] == pytest.approx(1.1) and "33.00 ms vs 30.00 ms" in rows[1]["note"]
    text = "\n".join(drift_section(c, rows))
    assert "Sentinel factors: 1.100-1.100 over 1 runs" in text and "speed_sentinel" in text


def test_a_bracketed_rung_takes_the_mean_of_its_readings_and_the_drift_row_shows_both():
    from types import SimpleNamespace

    from experiments.validation.live import bracketed
    from experiments.validation.report.drift_sections import drift_section

    before = {"streams": 8, "gap_s": 0.018, "probe_gap_s": 0.02, "factor": 0.9, "n_gaps": 400,
              "probe_n_gaps": 400, "t_s": 0.0}  # fmt: skip
    after = {**before, "gap_s": 0.022, "factor": 1.1, "t_s": 40.0}
    s = bracketed(before, after)
    assert s["factor"] == pytest.approx(1.0) and s["factor_before"] == 0.9
    assert s["after"]["factor"] == 1.1 and s["gap_s"] == 0.018
    # the rung's factor (median over repeats) reads the bracketed one
    assert sn.factor([s]) == pytest.approx(1.0)
    rows = [{"design": "baseline", "what": "sentinel", "load": "x", "repeat": 0, "value": 1.0,
             "n": 400, "note": "before 0.900, after 1.100"}]  # fmt: skip
    for mode, says in (("overhead", "speed_sentinel_as=overhead"),
                       ("scale", "speed_sentinel_as=scale")):  # fmt: skip
        c = SimpleNamespace(probes=SimpleNamespace(sentinel_streams=8, sentinel_after=True),
                            simulate=SimpleNamespace(speed_sentinel=True,
                                                     speed_sentinel_as=mode))  # fmt: skip
        text = "\n".join(drift_section(c, rows))
        assert "right after the run" in text and "before 0.900, after 1.100" in text
        # the section says how the simulation applied the sentinel, as configured
        assert says in text and ("added to the served per-iteration overhead" in text) == (
            mode == "overhead")
