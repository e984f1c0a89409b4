"""Profile sets (characterize.modeling.profile_sets): each GPU a design needs is measured, else
composed, else derived, and every output says which; a study names its set (profiles=paper /
profiles=aic) and may compare further sets; bad engine, version or dtype is one line listing what
exists. Composed tables here are small fakes written under tmp folders (the reference H100/A100
rows scaled), in the layout of characterize/modeling/data/composed."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from characterize.modeling.profile_sets import (
    ProfileSetError,
    SetSpec,
    check_aic,
    composed_catalog,
    kind_of,
    resolve,
)
from characterize.modeling.profiles import reference_profiles, write_profiles
from experiments.config.checks import study_config
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError
from experiments.study import plan

register()

COMPOSED = "composed from measured operator latencies: aiconfigurator-core 0.12.0 ({})"


def _llama(gpu: str, scale: float, as_gpu: str | None = None) -> pd.DataFrame:
    ref = reference_profiles()
    rows = ref[(ref["gpu"] == gpu) & (ref["model"] == "llama2-70b") & (ref["tp"] == 8)]
    return rows.assign(
        gpu=as_gpu or gpu,
        latency_s=rows["latency_s"] * scale,
        energy_j=rows["energy_j"] * scale,
        source=COMPOSED.format(f"{as_gpu or gpu}, vllm"),
    )


@pytest.fixture
def composed(tmp_path):
    """vllm 0.10.0 (fp8, H100) and 0.11.0 (bf16: A100, H100, H200), sglang 0.5.1 (bf16, H100)."""
    root = tmp_path / "composed"
    v = root / "vllm-0.11.0"
    write_profiles(_llama("a100-80gb", 0.4), v / "a100-80gb" / "llama2-70b-bf16-tp8.csv")
    write_profiles(_llama("h100-80gb", 0.4), v / "h100-80gb" / "llama2-70b-bf16-tp8.csv")
    h200 = _llama("h100-80gb", 0.3, "h200-141gb")
    write_profiles(h200, v / "h200-141gb" / "llama2-70b-bf16-tp8.csv")
    old = root / "vllm-0.10.0" / "h100-80gb" / "llama2-70b-fp8-tp8.csv"
    write_profiles(_llama("h100-80gb", 0.35), old)
    sg = _llama("h100-80gb", 0.45).assign(source=COMPOSED.format("h100-80gb, sglang"))
    write_profiles(sg, root / "sglang-0.5.1" / "h100-80gb" / "llama2-70b-bf16-tp8.csv")
    return root


def test_catalog_latest_version_and_one_line_errors_listing_what_exists(composed):
    cat = composed_catalog(composed)
    assert sorted(cat) == ["sglang", "vllm"]
    assert sorted(cat["vllm"]) == ["0.10.0", "0.11.0"]
    assert check_aic("vllm", "latest", "bf16", composed) == "0.11.0"
    assert check_aic("vllm", "0.10.0", "fp8", composed) == "0.10.0"
    cases = [
        (("tgi", "latest", "bf16"), "profiles.engine: no composed profiles for engine 'tgi'",
         "(have: sglang, vllm)"),
        (("vllm", "0.9", "bf16"), "profiles.engine_version: no composed vllm version '0.9'",
         "(have: 0.10.0, 0.11.0)"),
        (("vllm", "latest", "nvfp4"), "profiles.dtype: no composed vllm tables in dtype 'nvfp4'",
         "(have: bf16, fp8)"),
        (("vllm", "0.11.0", "fp8"), "profiles.dtype: no composed vllm-0.11.0 tables in dtype",
         "(have: bf16)"),
    ]  # fmt: skip
    for args, start, listing in cases:
        with pytest.raises(ProfileSetError) as e:
            check_aic(*args, composed)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(start) and msg.endswith(listing), msg


def test_each_gpu_measured_else_composed_else_derived(composed, tmp_path, capsys):
    spec = SetSpec(set="aic", engine="vllm", composed_dir=str(composed))
    gpus = ["a100-80gb", "h100-80gb", "h200-141gb", "b200-180gb"]
    got = resolve(spec, "llama2-70b", 8, gpus, tmp_path / "out")
    assert got.kinds() == {
        "a100-80gb": "composed",
        "h100-80gb": "composed",
        "h200-141gb": "composed",
        "b200-180gb": "derived",  # no B200 table: derived from the set's closest GPU (H200)
    }
    assert got.label == "aic vllm 0.11.0 bf16"
    table = pd.read_csv(got.path)
    b200 = table[table["gpu"] == "b200-180gb"]
    assert len(b200) and b200["source"].str.startswith("derived from composed from").all()
    assert "(h200-141gb -> b200-180gb" in b200["source"].iloc[0]
    assert "b200-180gb profiles: 32 DERIVED rows" in capsys.readouterr().out
    # a measured H200 table of THIS engine wins over the composed one; another engine's does not
    measured = tmp_path / "measured"
    other = _llama("h100-80gb", 0.5, "h200-141gb").assign(source="h200; sglang 0.5.1; tp8")
    write_profiles(other, measured / "sglang" / "profiles.csv")
    spec = SetSpec(set="aic", engine="vllm", composed_dir=str(composed), measured_dir=str(measured))
    assert resolve(spec, "llama2-70b", 8, ["h200-141gb"], tmp_path / "out").kinds() == {
        "h200-141gb": "composed"
    }
    mine = _llama("h100-80gb", 0.25, "h200-141gb").assign(source="h200; vLLM 0.11.0; tp8")
    write_profiles(mine, measured / "vllm" / "profiles.csv")
    got = resolve(spec, "llama2-70b", 8, ["h100-80gb", "h200-141gb"], tmp_path / "out")
    assert got.kinds() == {"h100-80gb": "composed", "h200-141gb": "measured"}
    assert got.gpus["h200-141gb"].tables == (str(measured / "vllm" / "profiles.csv"),)
    assert "h200-141gb: measured (h200; vLLM 0.11.0; tp8)" in got.note()
    # the paper set: base rows are the reference, then measured (any engine), then derived
    paper = SetSpec(measured_dir=str(measured / "vllm"))
    got = resolve(paper, "llama2-70b", 8, ["a100-80gb", "h200-141gb", "b200-180gb"], tmp_path)
    assert got.kinds() == {
        "a100-80gb": "reference",
        "h200-141gb": "measured",
        "b200-180gb": "derived",
    }
    assert got.path.endswith(".csv") and "with-h200-b200-" in got.path
    # a GPU the base covers keeps the base itself (the points' cache keys do not change)
    assert resolve(paper, "llama2-70b", 8, ["a100-80gb", "h100-80gb"], tmp_path).path == "reference"


def test_kind_of_reads_the_source_text():
    assert kind_of(COMPOSED.format("x")) == "composed"
    assert kind_of("derived from splitwise-paper-dgx (h100-80gb -> h200-141gb, ...)") == "derived"
    assert kind_of("splitwise-paper-dgx (splitwise-sim perf_model.csv @8f99e7d)") == "reference"
    assert kind_of("h200; splitbench-native; tp8 shard") == "measured"


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("study", overrides=[f"paths.root={tmp_path}", *overrides])


def test_study_on_an_aic_set_says_which_profile_each_gpu_has(composed, tmp_path):
    c = study_config(
        _cfg(
            tmp_path,
            "profiles=aic",
            f"profiles.composed_dir={composed}",
            "study.traces=[azure-conv-2023]",
            "study.designs=[baseline-a100,baseline-h100,splitwise-hh]",
            "study.extra_designs=[baseline-h200]",
            "+design@designs.baseline-b200=baseline-b200",
            "+study.profile_sets=[{name: sglang, engine: sglang, slo_reference: reference, "
            "designs: [baseline-h100, splitwise-hh, baseline-b200]}]",
        )
    )
    tasks, notes = plan(c)
    own = c["profiles"]  # the own set's resolved base: composed tables + the set's A100
    assert own.source.endswith(".csv") and own.slo_reference_source == own.source
    by = {(t.design_key, t.labels[0]["profile_set"]): t for t in tasks}
    assert by[("baseline-h100", "vllm-bf16")].profiles is None  # the base covers it
    assert by[("baseline-h100", "sglang")].profiles["source"].endswith(".csv")
    assert by[("baseline-h100", "sglang")].profiles["slo_reference"]["source"] == "reference"
    assert by[("baseline-b200", "sglang")].design.display == "Baseline-B200 (derived)"
    text = " ".join(notes)
    assert "profile set 'vllm-bf16' = aic vllm 0.11.0 bf16" in text
    assert "a100-80gb: composed; h100-80gb: composed; h200-141gb: composed" in text
    assert "slowdown reference: the set's own a100-80gb tp8 (composed)" in text
    assert "profile set 'sglang' = aic sglang 0.5.1 bf16" in text
    assert "b200-180gb: derived; h100-80gb: composed" in text
    assert "(the paper's DGX-A100: fixed per-request targets)" in text
    assert "B200 designs (baseline-b200) run on DERIVED profiles" in text


def test_bad_engine_version_dtype_is_one_line(composed, tmp_path):
    base = ["profiles=aic", f"profiles.composed_dir={composed}"]
    for over, msg in [
        ("profiles.engine=tgi", "profiles.engine: no composed profiles for engine 'tgi'"),
        ("profiles.engine_version=9", "profiles.engine_version: no composed vllm version '9'"),
        ("profiles.dtype=int4", "profiles.dtype: no composed vllm tables in dtype 'int4'"),
        ("profiles.set=nope", "profiles.set: unknown set 'nope' (known: paper, aic)"),
    ]:
        with pytest.raises(ExperimentError) as e:
            study_config(_cfg(tmp_path, *base, over))
        assert str(e.value).startswith(msg) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(ExperimentError, match=r"^study.profile_sets\[0\].engine: no composed "):
        plan(
            study_config(
                _cfg(tmp_path, *base, "+study.profile_sets=[{name: x, engine: tgi, designs: []}]")
            )
        )


def test_paper_and_reference_name_the_same_set(tmp_path):
    a = study_config(_cfg(tmp_path, "profiles=paper"))["profiles"]
    b = study_config(_cfg(tmp_path, "profiles=reference"))["profiles"]
    assert (a.set, a.source, a.slo_reference_source) == (b.set, b.source, b.slo_reference_source)


def _synthetic(point: dict) -> dict:
    """Monotone stand-in for the simulator: capacity grows with machines, faster on later GPUs
    and on the composed sets (their profile files), so the sets differ."""
    from tests.conftest import synthetic_point

    speed = {"dgx-a100": 1.0, "dgx-h100": 2.0, "dgx-h200": 2.5, "dgx-b200": 4.0}
    d = dict(point["design"])
    fast = 1.5 if str(point["profiles"]["source"]).endswith(".csv") else 1.0
    for k in ("machine", "prompt_machine", "token_machine"):
        if d.get(k):
            d[k] = "dgx-h100" if speed[d[k]] * fast >= 2.0 else "dgx-a100"
    return synthetic_point({**point, "design": d})


def test_study_with_profile_sets_reports_them_side_by_side(composed, tmp_path):
    from experiments.apps import study as study_app

    cfg = _cfg(
        tmp_path,
        "experiment=tiny",
        f"profiles.composed_dir={composed}",
        "study.heatmap=false",
        "study.iso_throughput_rates={}",
        "+study.profile_sets=[{name: vllm, engine: vllm, "
        "designs: [baseline-a100, baseline-h100, splitwise-hh, baseline-h200]}]",
    )
    out = study_app.run(cfg, evaluator=_synthetic)
    budget = pd.DataFrame(out["tables"]["budget"])
    assert set(budget["profile_set"]) == {"paper", "vllm"}
    vllm = budget[budget["profile_set"] == "vllm"].set_index(["budget", "design"])
    # ratios are within one set: the vllm set's own Baseline-H100 is its 1.0
    assert vllm.loc[("iso-power", "baseline-h100"), "max_rate_vs_baseline-h100"] == 1.0
    assert vllm.loc[("iso-power", "baseline-h200"), "profile_kinds"] == "h200-141gb: composed"
    text = out["report"].read_text()
    assert "## Does phase splitting pay with today's engines?" in text
    assert (
        "| vllm | aic vllm 0.11.0 bf16 | llama2-70b | a100-80gb: composed, h100-80gb: composed"
        in text
    )
    assert "arXiv 2601.06288" in text and "### Which designs win" in text
    assert "### What changed" in text and "| vllm | llama2-70b | h200-141gb | composed |" in text
    # the study section's latency CDFs are the own set's: one curve per design, no other set's
    cdf = pd.read_csv(next(out["report"].parent.glob("figures/*_cdf.csv")))
    cdf = cdf[cdf["kind"] == "cdf"]
    assert "Baseline-H200" not in set(cdf["design"])
    assert not cdf.duplicated(["design", "metric", "quantile"]).any()


def test_latest_takes_each_gpu_from_the_newest_version_that_has_it(composed, tmp_path):
    """AIConfigurator measured older GPUs with older engine versions: a GPU the newest version
    lacks comes from the newest one that has it, and the set says so."""
    from characterize.modeling.profile_sets import composed_tables

    a100 = _llama("a100-80gb", 0.5)
    write_profiles(a100, composed / "vllm-0.9.0" / "a100-80gb" / "llama2-70b-bf16-tp8.csv")
    (composed / "vllm-0.11.0" / "a100-80gb" / "llama2-70b-bf16-tp8.csv").unlink()
    got = composed_tables("vllm", "latest", "bf16", "llama2-70b", 8, composed)
    assert {g: v for g, (v, _) in got.items()} == {
        "a100-80gb": "0.9.0",
        "h100-80gb": "0.11.0",
        "h200-141gb": "0.11.0",
    }
    assert composed_tables("vllm", "0.11.0", "bf16", "llama2-70b", 8, composed).keys() == {
        "h100-80gb",
        "h200-141gb",
    }
    # a model spec of its own per dtype (<model>-<dtype>) finds the dtype's tables
    assert composed_tables("vllm", "latest", "fp8", "llama2-70b-fp8", 8, composed).keys() == {
        "h100-80gb"
    }
    a100 = a100.assign(source=COMPOSED.format("a100-80gb, vllm 0.9.0"))
    write_profiles(a100, composed / "vllm-0.9.0" / "a100-80gb" / "llama2-70b-bf16-tp8.csv")
    spec = SetSpec(set="aic", engine="vllm", composed_dir=str(composed))
    got = resolve(spec, "llama2-70b", 8, ["a100-80gb", "h100-80gb"], tmp_path)
    assert got.kind_texts() == {"a100-80gb": "composed (vllm 0.9.0)", "h100-80gb": "composed"}


def test_the_packaged_composed_tables_resolve_for_every_engine(tmp_path):
    """The committed tables (H5's composition): each engine's latest set covers H100 and H200."""
    cat = composed_catalog()
    if not cat:
        pytest.skip("no composed tables in this checkout")
    for engine in sorted(cat):
        spec = SetSpec(set="aic", engine=engine)
        got = resolve(spec, "llama2-70b", 8, ["h100-80gb", "h200-141gb"], tmp_path, quiet=True)
        assert got.kinds() == {"h100-80gb": "composed", "h200-141gb": "composed"}, engine


def test_a_study_on_one_aic_set_says_which_in_its_notes(composed, tmp_path):
    c = study_config(
        _cfg(
            tmp_path,
            "profiles=aic",
            f"profiles.composed_dir={composed}",
            "profiles.slo_reference_source=reference",
            "study.traces=[azure-conv-2023]",
            "study.designs=[baseline-h100,splitwise-hh]",
            "study.extra_designs=[]",
        )
    )
    tasks, notes = plan(c)
    assert all("profile_set" not in t.labels[0] for t in tasks)  # one set: no set columns
    assert c["profiles"].slo_reference_source == "reference"
    assert notes == [
        "profile set 'vllm-bf16' = aic vllm 0.11.0 bf16, llama2-70b: h100-80gb: composed; "
        "slowdown reference: a100-80gb tp8 of 'reference' (the paper's DGX-A100: fixed "
        "per-request targets)"
    ]
