"""The report's sections of the dependent studies (issue 13) on small synthetic studies of the
named experiments (robustness, scheduler, sensitivity, seeds; two models' seeds): each section,
figure and CSV is there, names the command that made it, and its numbers are the study tables'
(the seed intervals recomputed here from variants.csv + budget.csv, the tornado's bars from
variant_ratios.csv, the batch and load tables from batch.csv and load.csv)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.apps import study as study_app
from experiments.config.schemas import CONF_DIR, register
from experiments.report import format as fm
from experiments.report import load_inputs
from experiments.report.describe import study_command
from experiments.report.plotting import Figures
from experiments.report.sections import study_extra_sections
from experiments.report.sections.headline import headline_section
from experiments.report.sections.load import load_section
from experiments.report.sections.seeds import interval_text
from experiments.study.tables import QUANTILE_LEVELS

register()
SPEED = {"dgx-a100": 1.0, "dgx-h100": 2.0, "dgx-h100-cap": 1.8}
#: a small study: 4-DGX-H100 iso-power budget, three designs, both traces
SMALL = [
    "search=quick",
    "study.budgets=[{name: iso-power, reference_machine: dgx-h100, reference_count: 4, "
    "power: true, cost: false}]",
    "study.designs=[baseline-a100,baseline-h100,splitwise-hh]",
]


def _factor(point: dict) -> float:
    """A deterministic factor in [0.7, 1.3] on a point's capacity from everything a variant can
    change (settings, seed, trace, design kind): variants move the headline ratios."""
    d, t = point["design"], dict(point["trace"])
    for k in ("resample_rate", "resample_duration_s", "resample_requests"):
        t.pop(k, None)
    key = json.dumps(
        [d["kind"], d.get("mixed_pool"), d.get("machine_policy"), t, point["scheduler"],
         point["profiles"], point["seed"]],
        sort_keys=True, default=str,
    )  # fmt: skip
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return 0.7 + 0.6 * (h % 1000) / 999


def evaluator(point: dict) -> dict:
    """Stand-in for the simulator: capacity from machines and GPU speed times :func:`_factor`;
    the SLO met up to it; completions saturate at 1.2x it; attainment falls past it."""
    d, rate = point["design"], point["trace"]["resample_rate"]
    if d["kind"] == "baseline":
        cap = 0.9 * d["machines"] * SPEED[d["machine"]]
    else:
        cap = min(
            1.6 * d["prompt_machines"] * SPEED[d["prompt_machine"]],
            2.4 * d["token_machines"] * SPEED[d["token_machine"]] ** 0.5,
        )
    cap *= _factor(point)
    load = rate / cap
    thr = min(rate, 1.2 * cap)
    att = 1.0 if load <= 1 else max(0.0, 1.0 - 0.8 * (load - 1.0))
    n_q = len(QUANTILE_LEVELS)
    q = [i / (n_q - 1) for i in range(n_q)]
    return {
        "slo_met": load <= 1.0,
        "slo_worst_ratio": load,
        "throughput_rps": thr,
        "goodput_rps": thr * att,
        "trace_requests": int(10 * rate),
        "ttft_s": {"p50": 0.2 * (1 + load), "p99": 0.5 * (1 + load) ** 2},
        "tbt_s": {"p50": 0.03, "p99": 0.05 * (1 + load)},
        "e2e_s": {"p50": 3.0 * (1 + load), "p99": 8.0 * (1 + load) ** 2},
        "quantiles": {
            "ttft_s": [0.05 + x for x in q],
            "tbt_s": [0.02 + x / 50 for x in q],
            "e2e_s": [1.0 + 10 * x for x in q],
        },
    }


def _study(root, experiment: str, extra: list[str] = ()):
    over = [f"experiment={experiment}", *SMALL, *extra]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("study", overrides=[*over, f"paths.root={root}", "study.report=false"])
    d = study_app.run(cfg, evaluator=evaluator)["dir"]
    hyd = d / "hydra" / "2026-01-01_00-00-00" / ".hydra"
    hyd.mkdir(parents=True, exist_ok=True)
    (hyd / "overrides.yaml").write_text(
        "\n".join(f"- '{o}'" for o in [*over, f"paths.root={root}"]) + "\n"
    )
    return d


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("sb13")
    dirs = {
        "robustness": _study(root, "robustness", ["study.load_factors=[0.5,1.0,1.5,2.0]"]),
        "scheduler": _study(root, "scheduler"),
        "sensitivity": _study(root, "sensitivity"),
        "seeds": _study(root, "seeds"),
        "seeds-bloom": _study(root, "seeds", ["model=bloom-176b"]),
    }
    return root, dirs


def _read(d, name) -> pd.DataFrame:
    return pd.read_csv(d / f"{name}.csv")


@pytest.fixture(scope="module")
def report(studies):
    root, dirs = studies
    loaded, _ = load_inputs(list(dirs.values()))
    out = root / "report"
    figs = Figures(out, formats=("svg",), dpi=60)
    md = headline_section(figs, loaded)
    for s in loaded:
        md += [f"## Study `{s['label']}`", ""] + study_extra_sections(figs, s, loaded)
    return {"md": "\n".join(md), "out": out, "studies": {s["dir"]: s for s in loaded}, "figs": figs}


def _slug(report, d) -> str:
    return report["studies"][d]["slug"]


def test_every_section_figure_and_command(studies, report):
    _, dirs = studies
    md = report["md"]
    for head in (
        "## Headline ratios with their seed intervals",
        "### Trace mismatch: provisioned for one trace, serving another",
        "### Token distribution: prompt and output lengths scaled",
        "### Load: SLO attainment and P99 latency against the request rate",
        "### Batch jobs: throughput per dollar and per kW, no latency SLO",
        "### Scheduler: what JSQ and the mixed pool buy",
        "### Sensitivity: how far each modelling assumption swings the headline ratios",
        "### Seeds: the headline ratios over re-sampling seeds",
    ):
        assert md.count(head) == (2 if head.startswith("### Seeds") else 1), head
    fig = report["out"] / "figures"
    rob, sen = _slug(report, dirs["robustness"]), _slug(report, dirs["sensitivity"])
    for name in (f"{rob}_load", f"{rob}_batch", f"{sen}_azure-code-2023_tornado",
                 f"{sen}_azure-conv-2023_tornado"):  # fmt: skip
        assert (fig / f"{name}.svg").stat().st_size > 0 and (fig / f"{name}.csv").exists()
        assert f"figures/{name}.svg" in md
    assert (fig / "headline_intervals.csv").exists()
    # every table names the study command that made it (output places left out)
    for key, exp in (("robustness", "robustness"), ("scheduler", "scheduler"),
                     ("sensitivity", "sensitivity"), ("seeds", "seeds")):  # fmt: skip
        cmd = study_command(report["studies"][dirs[key]])
        assert cmd.startswith(f"splitbench-study experiment={exp} search=quick ")
        assert "paths.root" not in cmd and f"Made by `{cmd}`" in md
    # studies labelled without repeating what their name says (experiment, model)
    labels = sorted(s["label"] for s in report["studies"].values())
    assert labels == ["robustness-llama2-70b study.load_factors=[0.5,1.0,1.5,2.0]",
                      "scheduler-llama2-70b", "seeds-bloom-176b",
                      "seeds-llama2-70b", "sensitivity-llama2-70b"]  # fmt: skip


def _seed_values(d) -> pd.DataFrame:
    """Every seed's headline ratio, recomputed from the max rates of budget.csv (seed 0) and
    variants.csv (the seed variants)."""
    b = _read(d, "budget")
    b = b[b["budget"] == "iso-power"]
    v = _read(d, "variants")
    rows = []
    for tr in b["trace"].unique():
        for seed, t in [("0", b[b["trace"] == tr])] + [
            (name, v[(v["trace"] == tr) & (v["variant"] == name)]) for name in v["variant"].unique()
        ]:
            rate = t.set_index("design")["max_rate"]
            for des in ("splitwise-hh",):
                for bl in ("baseline-a100", "baseline-h100"):
                    rows.append({"trace": tr, "design": des, "vs": bl, "seed": seed,
                                 "ratio": rate[des] / rate[bl]})  # fmt: skip
    return pd.DataFrame(rows)


def test_seed_intervals_are_min_median_max_over_the_seeds(studies, report):
    _, dirs = studies
    iv = pd.read_csv(report["out"] / "figures" / "headline_intervals.csv")
    assert set(iv["model"]) == {"llama2-70b", "bloom-176b"}
    spread = 0
    for key, model in (("seeds", "llama2-70b"), ("seeds-bloom", "bloom-176b")):
        want = _seed_values(dirs[key])
        assert set(want["seed"]) == {"0", "seed-1", "seed-2", "seed-3", "seed-4"}
        got = iv[iv["model"] == model]
        assert len(got) == 4  # 2 traces x splitwise-hh x 2 baselines
        for _, r in got.iterrows():
            w = want[(want["trace"] == r["trace"]) & (want["vs"] == r["vs"])]["ratio"]
            assert r["seeds"] == 5
            assert r["min"] == pytest.approx(w.min(), rel=1e-5)
            assert r["max"] == pytest.approx(w.max(), rel=1e-5)
            assert r["median"] == pytest.approx(np.median(w), rel=1e-5)
            seed0 = want[(want["trace"] == r["trace"]) & (want["vs"] == r["vs"])
                         & (want["seed"] == "0")]["ratio"].iloc[0]  # fmt: skip
            assert r["ratio_seed0"] == pytest.approx(seed0, rel=1e-5)
            spread += r["max"] > r["min"] + 1e-9
    assert spread > 0  # the seeds do move the ratios here: an interval, not one draw
    # the combined table: both models side by side, the interval as the markdown shows it
    md = report["md"].split("## Headline ratios with their seed intervals")[1].split("\n## ")[0]
    assert "| trace | comparison | Llama-2-70B | BLOOM-176B |" in md
    r = iv[(iv["model"] == "bloom-176b") & (iv["vs"] == "baseline-h100")].iloc[0]
    ll = iv[(iv["model"] == "llama2-70b") & (iv["trace"] == r["trace"])
            & (iv["vs"] == "baseline-h100")].iloc[0]  # fmt: skip
    row = (f"| {r['trace_display']} | Splitwise-HH / Baseline-H100 | {interval_text(ll)} | "
           f"{interval_text(r)} |")  # fmt: skip
    assert row in md


def test_tornado_bars_span_each_groups_variants(studies, report):
    _, dirs = studies
    sen = _slug(report, dirs["sensitivity"])
    bars = pd.read_csv(report["out"] / "figures" / f"{sen}_tornado_bars.csv")
    vr = _read(dirs["sensitivity"], "variant_ratios")
    var = bars[bars["kind"] == "variant"]
    assert set(var["group"]) == set(vr["group"])  # every assumption group, no seed or token one
    assert len(var) == vr.groupby(["trace", "design", "vs", "group"]).ngroups
    for _, b in var.iterrows():
        g = vr[(vr["trace"] == b["trace"]) & (vr["design"] == b["design"]) & (vr["vs"] == b["vs"])
               & (vr["group"] == b["group"])]  # fmt: skip
        assert b["lo"] == pytest.approx(min(0.0, g["change"].min()), abs=1e-6)
        assert b["hi"] == pytest.approx(max(0.0, g["change"].max()), abs=1e-6)
    assert (var["hi"] - var["lo"]).max() > 0.05
    # the noise floor: the llama seeds study's spread relative to its seed 0, per comparison
    band = bars[bars["kind"] == "seed band"]
    assert len(band) == 4 and set(band["source"]) == {"seeds-llama2-70b"}
    iv = pd.read_csv(report["out"] / "figures" / "headline_intervals.csv")
    iv = iv[iv["model"] == "llama2-70b"]
    for _, b in band.iterrows():
        r = iv[(iv["trace"] == b["trace"]) & (iv["vs"] == b["vs"])].iloc[0]
        assert b["lo"] == pytest.approx(min(0.0, r["min"] / r["ratio_seed0"] - 1), abs=1e-5)
        assert b["hi"] == pytest.approx(max(0.0, r["max"] / r["ratio_seed0"] - 1), abs=1e-5)
    assert "Grey band: the spread of the same ratio over the re-sampling seeds" in report["md"]
    # the tables: every variant's ratio and its change; every design's max rate under it
    sec = report["md"].split("### Sensitivity: how far")[1].split("\n### ")[0]
    for _, r in vr.iterrows():
        assert f"{r['ratio']:.2f}x ({fm.pct(r['change'])})" in sec
    v = _read(dirs["sensitivity"], "variants")
    assert len(v) == 14 * 3 * 2
    for _, r in v.iterrows():
        tail = "(n/a)" if not r["applies"] else f"({fm.pct(r['change'])})"
        assert f"| {r['group']} | {r['variant_label']} |" in sec
        assert f"{r['max_rate']:.2f} {tail}" in sec


def test_mismatch_batch_load_and_scheduler_tables_are_the_studys(studies, report):
    _, dirs = studies
    md = report["md"]
    names = {"azure-code-2023": "Coding", "azure-conv-2023": "Conversation"}
    m = _read(dirs["robustness"], "mismatch")
    assert len(m) == 6  # 3 designs x 2 directions
    for _, r in m.iterrows():
        row = (f"| {names[r['source_trace']]} | {r['trace_display']} | {r['design_display']} | "
               f"{fm.config_text(r)} | {r['max_rate']:.2f} | {r['own_rate']:.2f} | "
               f"{fm.pct(r['change'])} |")  # fmt: skip
        assert row in md, row

    batch = _read(dirs["robustness"], "batch")
    for _key, g in batch.groupby(["trace", "design"]):
        best = g.loc[g["requests_per_dollar"].idxmax()]
        kw = g.loc[g["rps_per_kw"].idxmax()]
        row = (f"| {best['trace_display']} | {best['design_display']} | {fm.config_text(best)} | "
               f"{best['requests_per_dollar']:,.0f} | {best['throughput_rps']:.2f} | "
               f"{fm.config_text(kw)} | {kw['rps_per_kw']:.3f} |")  # fmt: skip
        assert row in md, row

    # load: the first rate whose attainment is below 0.9, from load.csv
    load = _read(dirs["robustness"], "load")
    t = pd.read_csv(
        report["out"] / "figures" / f"{_slug(report, dirs['robustness'])}_load_table.csv"
    )
    assert len(t) == load.groupby(["trace", "design"]).ngroups
    drops = 0
    for _, r in t.iterrows():
        g = load[(load["trace"] == r["trace"]) & (load["design"] == r["design"])].sort_values(
            "rate"
        )
        below = g[g["slo_attainment"] < 0.9]
        if below.empty:
            assert pd.isna(r["first_rate_below"])
            continue
        drops += 1
        assert r["first_rate_below"] == pytest.approx(below["rate"].iloc[0], rel=1e-5)
        prev = g[g["rate"] < below["rate"].iloc[0]]
        if len(prev):
            lo, hi = prev["rate"].iloc[-1], below["rate"].iloc[0]
            assert lo <= r["rate_below_interpolated"] <= hi
    assert drops > 0  # the curves go past saturation
    fig = pd.read_csv(report["out"] / "figures" / f"{_slug(report, dirs['robustness'])}_load.csv")
    att = fig[fig["metric"].str.startswith("SLO attainment")]
    assert len(att) == len(load) and np.allclose(
        np.sort(att["value"]), np.sort(load["slo_attainment"])
    )

    # scheduler: every variant's max rate and its change, per trace and design
    v = _read(dirs["scheduler"], "variants")
    assert set(v["variant"]) == {"no-mixed-pool", "round-robin", "random"}
    sec = md.split("### Scheduler: what JSQ and the mixed pool buy")[1].split("\n### ")[0]
    for _, r in v.iterrows():
        cell = (f"{r['max_rate']:.2f} (n/a)" if not r["applies"]
                else f"{r['max_rate']:.2f} ({fm.pct(r['change'])})")  # fmt: skip
        assert cell in sec
    assert (v.loc[~v["applies"], "design"].str.startswith("baseline")).all()
    vr = _read(dirs["scheduler"], "variant_ratios")
    r = vr[vr["variant"] == "random"].iloc[0]
    assert f"{r['ratio']:.2f}x ({fm.pct(r['change'])})" in sec


@pytest.mark.slow
def test_sections_are_deterministic(studies, report):
    _, dirs = studies
    out = report["out"].parent / "report2"
    loaded, _ = load_inputs(list(dirs.values()))
    figs = Figures(out, formats=("svg",), dpi=60)
    md = headline_section(figs, loaded)
    for s in loaded:
        md += [f"## Study `{s['label']}`", ""] + study_extra_sections(figs, s, loaded)
    assert "\n".join(md) == report["md"]
    a = {p.name: p.read_bytes() for p in (report["out"] / "figures").iterdir()}
    b = {p.name: p.read_bytes() for p in (out / "figures").iterdir()}
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_an_optional_table_without_a_column_is_one_line_error(studies, tmp_path):
    import shutil

    from experiments.errors import ExperimentError

    _, dirs = studies
    d = tmp_path / "robustness"
    shutil.copytree(dirs["robustness"], d)
    load = pd.read_csv(d / "load.csv").drop(columns=["slo_attainment"])
    load.to_csv(d / "load.csv", index=False)
    with pytest.raises(ExperimentError, match=r"load\.csv: missing column 'slo_attainment'"):
        load_inputs([d])
    (d / "load.csv").unlink()  # an absent optional table is no error: no load section
    meta = json.loads((d / "study.json").read_text())  # (one the study did not record)
    meta["tables"].pop("load")
    (d / "study.json").write_text(json.dumps(meta))
    (s,), _ = load_inputs([d])
    assert s["load"].empty and load_section(Figures(tmp_path / "out"), s) == []
    assert not s["mismatch"].empty


def test_extrapolation_section_counts_points_by_kind():
    import pandas as pd

    from experiments.report.sections.extrapolation import extrapolation_section

    dec = "PhaseModel(m, g, tp=8): decode of batch 99 with 131025 context tokens is beyond"
    pre = "PhaseModel(m, g, tp=8): prefill of 40000 batch tokens is beyond the fitted range"
    pts = pd.DataFrame(
        {"status": ["ok", "ok", "ok", "failed"], "extrapolated": [dec, f"{dec}; {pre}", None, None]}
    )
    md = "\n".join(extrapolation_section({"points": pts, "meta": {}}))
    assert "2 of 3 simulated points" in md
    assert "| decode step | 2 |" in md and "| prefill batch | 1 |" in md
    assert "single prompt" not in md
    old = "\n".join(
        extrapolation_section({"points": pts[["status"]], "meta": {"code_version": "v"}})
    )
    assert "no extrapolation notes" in old and "`v`" in old
    none = pd.DataFrame({"status": ["ok"], "extrapolated": [None]})
    assert "None of the 1 points" in "\n".join(extrapolation_section({"points": none, "meta": {}}))


def test_prefix_section_reads_the_variants_at_the_same_load(tmp_path):
    import pandas as pd

    from experiments.report.plotting import Figures
    from experiments.report.sections.prefix import prefix_section

    budget = pd.DataFrame([{"trace": "t", "design": "hh", "budget": "iso-power", "max_rate": 10.0,
                            "throughput_rps": 9.5}])  # fmt: skip
    variants = pd.DataFrame(
        [
            {"trace": "t", "design": "hh", "design_display": "HH", "group": "prefix caching",
             "variant": "pc", "variant_label": "prefix caching", "applies": True,
             "prompt_machines": 2, "token_machines": 3, "machines": 5, "max_rate": 11.0,
             "change": 0.1, "at_source_rate_prefix_hit_rate": 0.25,
             "at_source_rate_prefix_saved_fraction": 0.2, "at_source_rate_ttft_p50_s": 0.4,
             "at_source_rate_ttft_p99_s": 3.0, "at_source_rate_throughput_rps": 9.6},
        ]
    )  # fmt: skip
    lq = pd.DataFrame(
        [{"trace": "t", "design": "hh", "metric": "ttft_s", "rate": 10.0, "quantile": q,
          "value_s": v} for q, v in ((0.5, 0.5), (0.99, 4.0))]
    )  # fmt: skip
    s = {"variants": variants, "budget": budget, "latency_quantiles": lq, "slug": "x",
         "meta": {"study": {"variant_budget": "iso-power", "name": "x"}},
         "overrides": ["experiment=mooncake-prefix"], "label": "x"}  # fmt: skip
    md = "\n".join(prefix_section(Figures(tmp_path, ["png"], 72), s))
    assert (
        "| HH | 2P + 3T | no prefix cache (default) | 10.00 | - | - | 0.500 | 4.00 | 9.50 |" in md
    )
    assert "| HH | 2P + 3T | prefix caching | 11.00 (+10.0%) | 25.0% | 20.0% | 0.400 | 3.00 |" in md
    assert (tmp_path / "figures" / "x_prefix_cache.csv").exists()
    assert "Made by `splitbench-study experiment=mooncake-prefix`" in md


def test_compare_names_a_study_whose_rows_repeat_another():
    import pandas as pd

    from experiments.report.plotting import Figures
    from experiments.report.sections.compare import compare_section

    def study(label, rates):
        b = pd.DataFrame(
            [{"trace": "t", "trace_display": "T", "budget": "iso-power", "design": d,
              "design_display": d, "max_rate": r} for d, r in rates.items()]
        )  # fmt: skip
        return {"label": label, "budget": b}

    full = study("full", {"A": 1.0, "B": 2.0, "C": 3.0})
    sub = study("sub", {"A": 1.0, "B": 2.0})  # its rows all stand in `full`
    other = study("other", {"A": 1.5, "B": 2.0})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        md = "\n".join(compare_section(Figures(Path(d), ["png"], 60), [full, sub, other]))
    assert "`sub` (= `full`)" in md
    assert "| T | iso-power | A | 1.00 | 1.50 |" in md  # `sub` is not a column
