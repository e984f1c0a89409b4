"""The study's point result is read from the replay's one summary; the cache key's code version
covers whole packages."""

from __future__ import annotations

import importlib.machinery
import shutil
from pathlib import Path

import pytest

from experiments import point as pt

POINT_KEYS = {
    "slo_met", "slo_worst_ratio", "slowdown", "throughput_rps", "goodput_rps", "energy_kwh",
    "mean_power_w", "preemptions", "requests", "cost_per_hour", "provisioned_power_w",
    "trace_requests", "ttft_s", "tbt_s", "e2e_s", "quantiles", "context",
}  # fmt: skip


def _point(slo: dict) -> dict:
    return {
        "model": {"name": "llama2-70b", "tp": 8},
        "design": {
            "name": "b",
            "kind": "baseline",
            "machine": "dgx-h100",
            "machines": 1,
            "prompt_machine": None,
            "token_machine": None,
            "prompt_machines": None,
            "token_machines": None,
            "mixed_pool": True,
        },  # fmt: skip
        "trace": {
            "name": "azure-code-2023",
            "resample_rate": 4.0,
            "resample_duration_s": 15.0,
            "max_context": 2000,
            "seed": 1,
        },  # fmt: skip
        "scheduler": {},
        "slo": slo,
        "profiles": {"source": "reference"},
        "seed": 0,
    }


def test_point_result_keys_and_the_configured_slo():
    paper = pt.evaluate_point(_point({"name": "paper"}))
    assert set(paper) == POINT_KEYS
    assert paper["context"]["policy"] == "clip" and paper["context"]["max_context"] == 2000
    assert paper["context"]["clipped"] > 0
    assert paper["cost_per_hour"] == 38.0 and paper["provisioned_power_w"] == 5600.0
    strict = pt.evaluate_point(
        _point(
            {
                "name": "tight",
                "ttft": [1.01, 1.01, 1.01],
                "tbt": [1.01, 1.01, 1.01],
                "e2e": [1.01, 1.01, 1.01],
            }
        )  # fmt: skip
    )
    assert paper["throughput_rps"] == strict["throughput_rps"]
    assert strict["slo_met"] is False and strict["goodput_rps"] < paper["goodput_rps"]
    assert len(paper["quantiles"]["tbt_s"]) == len(pt.QUANTILE_LEVELS)


def test_code_version_hashes_every_file_of_the_packages(tmp_path, monkeypatch):
    root = tmp_path / "src"
    for pkg in pt._CODE_PACKAGES:
        (root / pkg).mkdir(parents=True)
        (root / pkg / "mod.py").write_text("x = 1\n")
    (root / "experiments").mkdir()
    shutil.copy(pt.__file__, root / "experiments" / "point.py")
    monkeypatch.setattr(pt, "_ROOT", root)
    monkeypatch.setattr(pt, "__file__", str(root / "experiments" / "point.py"))
    v0 = pt.code_version.__wrapped__()
    data = root / "characterize" / "modeling" / "data" / "new_table.csv"
    data.parent.mkdir()
    data.write_text("a,b\n1,2\n")  # a new data file, not a .py, in a sub-folder
    v1 = pt.code_version.__wrapped__()
    assert v1 != v0
    (root / "replay" / "__pycache__").mkdir()
    (root / "replay" / "__pycache__" / "mod.cpython.pyc").write_bytes(b"\0")
    assert pt.code_version.__wrapped__() == v1  # caches do not count
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (root / "replay" / f"mod{suffix}").write_bytes(b"\x7fELF")
    (root / "replay" / "_core_build.json").write_text("{}")
    assert pt.code_version.__wrapped__() == v1  # nor the compiled core's build outputs
    for other in ("report", "study"):  # a new report column or study table changes no point
        (root / "experiments" / other).mkdir()
        (root / "experiments" / other / "mod.py").write_text("x = 1\n")
    assert pt.code_version.__wrapped__() == v1
    Path(root / "traces" / "mod.py").write_text("x = 2\n")
    assert pt.code_version.__wrapped__() != v1


def _mooncake_point(caching: bool) -> dict:
    p = _point({"name": "paper"})
    p["model"] = {"name": "llama3.1-70b", "tp": 8}
    p["trace"] = {"name": "mooncake-conversation", "end_s": 40.0}
    p["scheduler"] = {"prefix_caching": caching, "cache_aware_routing": caching}
    return p


@pytest.mark.filterwarnings("ignore::characterize.modeling.phase.errors.ExtrapolationWarning")
def test_prefix_cached_point_reports_hit_rate_and_extrapolation():
    from characterize.modeling.phase.model_set import _source_set
    from experiments.study.kinds.base import prefix_columns as _prefix_columns

    keys = _source_set("reference").keys()
    on = pt.evaluate_point(_mooncake_point(True))
    # the borrowed fit (Llama-3.1-70B on Llama-2-70B's profiles) leaves the shared set's keys
    assert _source_set("reference").keys() == keys
    assert set(on) == POINT_KEYS | {"prefix_cache", "extrapolated"}
    pc = on["prefix_cache"]
    assert set(pc) == set(pt.PREFIX_CACHE_KEYS)
    assert pc["block_hit_rate"] > 0 and pc["saved_tokens"] > 0 and pc["cache_aware_routing"]
    # Llama-3.1-70B's long prompts and contexts on Llama-2-70B's fit (measured to 8k): noted
    notes = on["extrapolated"]
    assert any("beyond the longest measured prompt" in n for n in notes)
    assert any("longest measured context per request" in n for n in notes)
    cols = _prefix_columns(on)
    assert cols["prefix_hit_rate"] == pc["block_hit_rate"] > 0
    assert cols["prefix_tokens_saved"] == pc["saved_tokens"]
    assert "longest measured prompt" in cols["extrapolated"]
    # caching off: no prefix-cache block, the same extrapolation notes (same trace, same model)
    off = pt.evaluate_point(_mooncake_point(False))
    assert "prefix_cache" not in off and off["extrapolated"]
    assert "prefix_hit_rate" not in _prefix_columns(off)
    assert _prefix_columns({"throughput_rps": 1.0}) == {}
