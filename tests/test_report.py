"""The report on tiny runs: synthetic studies plus a real tiny replay run -> one report folder
per inputs set, report.md, PNG + SVG figures whose data CSVs hold what the figures claim, the
comparison of several studies labelled by their overrides, the context-policy counts,
deterministic output, no stale figures, one-line input errors."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import replay as replay_app
from experiments.apps import report as report_app
from experiments.apps import study as study_app
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError
from experiments.report import load_inputs, write_report
from experiments.study.tables import QUANTILE_LEVELS

register()
N_Q = len(QUANTILE_LEVELS)
#: the synthetic point that raises (its heatmap cell must show as failed, not as a miss)
FAIL_AT = (1, 1)


def _study(root, extra: list[str], synthetic):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "study",
            overrides=[f"paths.root={root}", "experiment=tiny", "study.report=false", *extra],
        )
    d = study_app.run(cfg, evaluator=partial(synthetic, fail_at=FAIL_AT))["dir"]
    # what Hydra leaves in the study folder when the app runs from the command line
    hyd = d / "hydra" / "2026-01-01_00-00-00" / ".hydra"
    hyd.mkdir(parents=True, exist_ok=True)
    lines = [f"- {o}" for o in ["experiment=tiny", *extra, f"paths.root={root}"]]
    (hyd / "overrides.yaml").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic):
    root = tmp_path_factory.mktemp("sb")
    study = _study(root, [], synthetic)
    strict = _study(tmp_path_factory.mktemp("sb-strict"), ["slo=strict"], synthetic)
    reject = _study(
        tmp_path_factory.mktemp("sb-reject"),
        ["traces.azure-conv-2023.context_policy=reject"],
        synthetic,
    )
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        rcfg = compose(
            "replay",
            overrides=[
                "design=splitwise-hh",
                "design.prompt_machines=1",
                "design.token_machines=1",
                "trace.resample_rate=2",
                "trace.resample_duration_s=10",
                "progress=false",
            ],
        )
    run_dir = root / "runs" / "hh"
    replay_app.run(rcfg, run_dir=run_dir)
    return {"root": root, "study": study, "strict": strict, "reject": reject, "run": run_dir}


def _csv(out, name) -> pd.DataFrame:
    return pd.read_csv(out / "figures" / f"{name}.csv")


@pytest.mark.slow
def test_report_from_study_and_run(inputs):
    study, run_dir = inputs["study"], inputs["run"]
    out = inputs["root"] / "report"
    path = write_report([study, run_dir], out, per_inputs=False, phase=False)
    assert path == out / "report.md"
    md = path.read_text()
    assert "## Study `tiny`" in md and "## Replay runs" in md
    assert "**Conversation trace, iso-power**" in md and "**Conversation trace, iso-cost**" in md
    assert "x Baseline-A100" in md and "x Baseline-H100" in md
    assert "### Iso-throughput" in md and "### Provisioning heatmap" in md
    assert "config.yaml" in md and "code `splitbench-" in md
    for name in (
        "tiny_throughput",
        "tiny_heatmap",
        "tiny_azure-conv-2023_cdf",
        "tiny_azure-conv-2023_slo_vs_rate",
        "runs_cdf",
    ):
        for ext in ("png", "svg", "csv"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
        assert f"figures/{name}.png" in md
    budget = pd.read_csv(study / "budget.csv")
    points = pd.read_csv(study / "points.csv")
    iso = budget[budget["budget"] == "iso-power"]
    assert set(iso["design"]) == {"baseline-a100", "baseline-h100", "splitwise-hh", "splitwise-ha"}
    assert iso[iso["design"] == "baseline-h100"].iloc[0]["max_rate_vs_baseline-h100"] == 1.0
    for _, r in iso.iterrows():
        assert f"| {r['design_display']} |" in md

    # throughput bars: exactly the study's budget table (read, not recomputed)
    bars = _csv(out, "tiny_throughput")
    want = budget[["design_display", "budget", "max_rate"]].dropna()
    got = bars.merge(want, on=["design_display", "budget"], suffixes=("", "_want"))
    assert len(got) == len(want) and np.allclose(got["max_rate"], got["max_rate_want"])

    # CDFs: each design's quantiles at its best iso-power rate, and the SLO's limits marked
    cdf = _csv(out, "tiny_azure-conv-2023_cdf")
    curves = cdf[cdf["kind"] == "cdf"]
    best = iso.dropna(subset=["max_rate"])
    assert set(curves["design"]) == set(best["design_display"])
    assert curves.groupby(["design", "metric"]).size().eq(N_Q).all()
    marks = cdf[cdf["kind"] == "slo_limit"].set_index(["metric", "quantile"])["limit"]
    assert marks[("TTFT (s)", 0.99)] == 6.0 and marks[("TBT (s, token-weighted)", 0.5)] == 1.25
    assert len(marks) == 9

    # SLO vs rate: the worst ratios of the points table at each design's best configuration
    slo = _csv(out, "tiny_azure-conv-2023_slo_vs_rate")
    hh = best[best["design"] == "splitwise-hh"].iloc[0]
    pts = points[
        (points["design"] == "splitwise-hh")
        & (points["task"] == "budget")
        & (points["prompt_machines"] == hh["prompt_machines"])
        & (points["token_machines"] == hh["token_machines"])
    ]
    s_hh = slo[slo["design"] == hh["design_display"]].sort_values("rate")
    assert np.allclose(s_hh["rate"], sorted(set(pts["rate"])))
    assert np.allclose(
        s_hh["slo_worst_ratio"], pts.drop_duplicates("rate").sort_values("rate")["slo_worst_ratio"]
    )
    assert ((s_hh["slo_worst_ratio"] <= 1) == s_hh["slo_met"]).all()

    # heatmap: the crashed cell is failed (not a miss), simulated cells apart from inferred
    heat = _csv(out, "tiny_heatmap")
    cell = heat[(heat["prompt"] == FAIL_AT[0]) & (heat["token"] == FAIL_AT[1])].iloc[0]
    assert cell["status"] == "failed" and cell["source"] == "simulated"
    assert (heat["status"] == "failed").sum() == 1
    raw = pd.read_csv(study / "heatmap.csv")
    assert (heat["source"] == "simulated").sum() == raw["evaluated"].astype(bool).sum()
    ok = heat[heat["status"] != "failed"]
    assert (ok["status"] == np.where(ok["slo_met"], "met", "missed")).all()
    assert heat["cost_if_met"].notna().sum() == (heat["status"] == "met").sum()
    assert "1 cell(s) failed" in md and "points in the study's points table failed" in md

    # the run's CDF: token-weighted TBT, the same numbers as the run's summary percentiles
    summary = json.loads((run_dir / "summary.json").read_text())
    rc = _csv(out, "runs_cdf")
    rc = rc[rc["kind"] == "cdf"]
    for metric, key in (("TBT (s, token-weighted)", "tbt_s"), ("TTFT (s)", "ttft_s")):
        m = rc[rc["metric"] == metric].set_index("quantile")["value_s"]
        for q, p in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            assert m[q] == pytest.approx(summary[key][p], rel=1e-5), (metric, q)  # CSV: %.6g
    assert set(rc.loc[rc["metric"].str.startswith("TBT"), "definition"]) == {"token-weighted"}
    assert "TBT: token-weighted (every gap" in md

    # context policy: per trace, the counts summed over the study's points
    ctx_pts = points[points["error"].isna()]
    clipped, removed = (
        int(ctx_pts["context_clipped"].sum()),
        int(ctx_pts["context_clipped_tokens"].sum()),
    )
    assert clipped > 0
    assert "### Context window: clipped and rejected requests" in md
    row = next(line for line in md.splitlines() if line.startswith("| Conversation | clip |"))
    assert f"| {clipped:,} |" in row and f"| {removed:,} |" in row
    assert "<!-- PLACE: headline ratios under context_policy=reject -->" in md

    # deterministic: a second report is byte-identical (markdown, CSV and SVG), and a stale
    # figure of an earlier report in the folder is removed
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "figures" / "old_study_heatmap.png").write_bytes(b"stale")
    write_report([study, run_dir], out, per_inputs=False, phase=False)
    second = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    for name in first:
        if not name.endswith(".png"):
            assert first[name] == second[name], name


@pytest.mark.slow
def test_several_studies_compared_by_their_overrides(inputs):
    out = inputs["root"] / "compare"
    path = write_report(
        [inputs["study"], inputs["strict"], inputs["reject"]], out, per_inputs=False, phase=False
    )
    md = path.read_text()
    labels = ["tiny", "tiny slo=strict", "tiny traces.azure-conv-2023.context_policy=reject"]
    assert "## Studies compared" in md and "(0)" not in md and "(1)" not in md
    for lab in labels:
        assert f"## Study `{lab}`" in md and f"`{lab}`" in md
    comp = _csv(out, "studies_compare")
    assert list(dict.fromkeys(comp["study"])) == labels
    for lab, key in zip(labels, ("study", "strict", "reject"), strict=True):
        b = pd.read_csv(inputs[key] / "budget.csv")
        c = comp[comp["study"] == lab].merge(
            b, on=["design_display", "budget"], suffixes=("", "_b")
        )
        assert len(c) == len(b)
        assert np.allclose(c["max_rate"], c["max_rate_b"], equal_nan=True)
    # the strict SLO sustains less than the paper's for some design
    a = comp[comp["study"] == labels[0]].set_index(["budget", "design_display"])["max_rate"]
    s = comp[comp["study"] == labels[1]].set_index(["budget", "design_display"])["max_rate"]
    assert (s.fillna(0) <= a.fillna(0)).all() and (s.fillna(0) < a.fillna(0)).any()
    # each study's figures under its own name (no collision between two studies named tiny)
    for sl in ("tiny", "tiny_slo=strict"):
        assert (out / "figures" / f"{sl}_heatmap.csv").exists()
    # clip and reject side by side, from the two studies' tables
    assert "<!-- PLACE" not in md
    sec = md.split("## Context policy: how the headline ratios change under `reject`")[1]
    assert "x baseline-h100 (clip)" in sec and "x baseline-h100 (reject)" in sec
    row = next(line for line in md.splitlines() if line.startswith("| Conversation | reject |"))
    assert "| 0 |" in row  # nothing clipped under reject


def test_labels_fall_back_to_the_differing_config(inputs, tmp_path):
    import shutil

    dirs = []
    for key in ("study", "strict"):
        d = tmp_path / key
        shutil.copytree(inputs[key], d, ignore=shutil.ignore_patterns("hydra"))
        dirs.append(d)
    studies, _ = load_inputs(dirs)
    a, b = (s["label"] for s in studies)
    assert a != b and a.startswith("tiny ") and "slo." in b
    assert studies[0]["slug"] != studies[1]["slug"]


@pytest.mark.slow
def test_report_app_one_folder_per_study_and_phase_figures(inputs):
    root = inputs["root"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfgs = [
            compose(
                "report",
                overrides=[f"paths.root={root}", f"inputs=[{d}]", "formats=[png]", *extra],
            )
            for d, extra in (
                (inputs["study"], []),
                (inputs["strict"], ["phase_figures=false"]),
            )
        ]
    path = report_app.run(cfgs[0])
    assert path == root / "results" / "report" / "tiny" / "report.md"
    strict = report_app.run(cfgs[1])
    assert strict == root / "results" / "report" / "tiny_slo=strict" / "report.md"
    assert path.exists() and "## Phase characterization" in path.read_text()
    assert "## Phase characterization" not in strict.read_text()
    md = path.read_text()
    assert "held-out error" in md
    fig = path.parent / "figures"
    for name in ("phase_prefill_latency", "phase_decode_latency", "phase_power"):
        assert (fig / f"{name}.png").stat().st_size > 0

    pre = pd.read_csv(fig / "phase_prefill_latency.csv")
    assert set(pre["kind"]) == {"model", "profile"}
    assert set(pre["x_unit"]) == {"prompt tokens", "requests"}
    assert set(pre.groupby("sweep")["x_unit"].nunique()) == {1}

    dec = pd.read_csv(fig / "phase_decode_latency.csv")
    model = dec[dec["kind"] == "model"]
    for g, grp in model.groupby("gpu"):
        twin = grp["same_as"].dropna().unique()
        if len(twin):
            other = model[model["gpu"] == twin[0]]
            assert np.allclose(grp["latency_s"].to_numpy(), other["latency_s"].to_numpy())
            assert f"{g}'s curves are identical to {twin[0]}'s" in md
    # the reference H100 and H100-pcap decode curves coincide: the figure must say so
    assert set(model.loc[model["gpu"] == "h100-80gb-pcap", "same_as"]) == {"h100-80gb"}

    pw = pd.read_csv(fig / "phase_power.csv")
    meas = pw[pw["kind"] == "profile"]
    assert len(meas) > 0 and meas["power_w"].gt(0).all()
    assert set(meas["gpu"]) == {"a100-80gb"}  # the only GPU with measured power
    scaled = pw[(pw["kind"] == "model") & (pw["power_source"] != "measured")]
    assert len(scaled) and scaled["label"].str.contains("A100 shape scaled").all()
    assert "not measurements" in md and "A100 reference's power shape" in md


def test_run_context_and_tbt_definition(inputs, tmp_path):
    import shutil

    run = tmp_path / "run-ctx"
    shutil.copytree(inputs["run"], run)
    summary = json.loads((run / "summary.json").read_text())
    summary["context"] = {"policy": "clip", "max_context": 4096, "clipped": 1257,
                          "clipped_tokens": 345678, "rejected": 0, "rejected_tokens": 0}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    md = write_report([run], tmp_path / "out", per_inputs=False, phase=False).read_text()
    n = summary["trace"]["requests"]
    assert (
        f"| clip at 4096 tokens: 1,257 of {n:,} clipped (345,678 tokens), 0 rejected (0 tokens) |"
        in md
    )
    # without the gap tables the TBT CDF falls back to per-request means, and says so
    (run / "iterations.parquet").unlink()
    out = write_report([run], tmp_path / "out2", per_inputs=False, phase=False)
    d = pd.read_csv(out.parent / "figures" / "runs_cdf.csv")
    tbt = d[(d["kind"] == "cdf") & d["metric"].str.startswith("TBT")]
    assert len(tbt) and set(tbt["definition"]) == {
        "per-request mean, weighted by gaps (no iterations.parquet)"
    }
    assert "TBT: per-request mean" in out.read_text()


def test_heatmap_cells_read_a_status_or_error_column():
    from experiments.report.study_figures import heatmap_cells

    heat = pd.DataFrame(
        {"design": "d", "trace": "t", "rate": 2.0, "prompt": [1, 1, 2, 2], "token": [1, 2, 1, 2],
         "slo_met": [False, False, True, True], "evaluated": [True, False, True, False],
         "cost_per_hour": [1.0, 2.0, 3.0, 4.0], "error": ["ValueError: x", None, None, None]}
    )  # fmt: skip
    cells = heatmap_cells(heat, pd.DataFrame())
    assert list(cells["status"]) == ["failed", "missed", "met", "met"]
    assert list(cells["source"]) == ["simulated", "inferred", "simulated", "inferred"]
    assert list(cells["cost_if_met"].fillna(-1)) == [-1, -1, 3.0, 4.0]
    heat = heat.drop(columns=["error"]).assign(status=["ok", "failed", "ok", "ok"])
    assert list(heatmap_cells(heat, pd.DataFrame())["status"]) == ["missed", "failed", "met", "met"]


def test_log_axis_has_readable_ticks():
    from experiments.report.plotting import log_axis, style

    plt, _ = style()

    def labels(ys):
        fig, ax = plt.subplots()
        ax.plot(range(len(ys)), ys)
        log_axis([ax], "y")
        fig.canvas.draw()
        lo, hi = ax.get_ylim()
        out = [
            t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
            if lo <= v <= hi
        ]  # fmt: skip
        plt.close(fig)
        return out

    assert {"0.5", "1", "2"} <= set(labels([0.3, 1.0, 4.0]))  # 1-2-5 of each decade
    assert {"1", "10", "20"} <= set(labels([0.5, 30.0]))
    narrow = labels([0.02, 0.04])  # under a decade: a few plain ticks, not one or a dozen
    assert 2 <= len(narrow) <= 6 and all("e" not in t and "^" not in t for t in narrow)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ExperimentError, match="inputs: no such folder"):
        write_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExperimentError, match="holds no study.json"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "study.json").write_text("{not json")
    with pytest.raises(ExperimentError, match="study.json: cannot read JSON"):
        write_report([bad], tmp_path / "out")
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("[]")
    (run / "requests.parquet").write_bytes(b"PAR1")
    with pytest.raises(ExperimentError, match="summary.json: expected a JSON object"):
        write_report([run], tmp_path / "out")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ExperimentError, match="is a file"):
        write_report([tmp_path / "file.txt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
