"""``splitbench-profiles`` end to end, in-process: fit (text and JSON), import-reference, plot,
and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from characterize.cli import main
from characterize.modeling.profiles import (
    metadata_path,
    read_profiles,
    reference_profiles,
    write_profiles,
)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    ref = reference_profiles()
    sub = ref[(ref.model == "llama2-70b") & (ref.gpu == "a100-80gb") & (ref.tp == 8)]
    path = tmp_path_factory.mktemp("p") / "small.csv"
    write_profiles(sub, path)
    return path


def test_fit_json_rows(small_csv, capsys):
    assert main(["fit", "--source", str(small_csv), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["phase"] for r in rows] == ["prefill", "decode"]
    for r in rows:
        assert {"model", "gpu", "tp", "phase", "points", "mape", "max_error"} <= set(r)
        assert r["model"] == "llama2-70b" and r["gpu"] == "a100-80gb" and r["tp"] == 8
        assert 0 < r["mape"] < 0.10  # fractions
        assert r["max_error"] >= r["mape"]
    assert rows[0]["points"] == 13 and rows[1]["points"] == 19


def test_fit_text_reference(capsys):
    assert main(["fit"]) == 0
    out = capsys.readouterr().out
    assert "held-out error" in out and "mape_%" in out
    assert out.count("llama2-70b") >= 18
    assert "power fallback" in out and "h100-80gb" in out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100  # fits 100 columns by default
    rows = {tuple(ln.split()[:4]): ln.split() for ln in lines if ln.startswith(("llama2", "bloom"))}
    # fallback power is marked in the row itself; measured power shows its held-out error
    assert rows[("llama2-70b", "h100-80gb", "8", "decode")][9] == "fallback"
    assert rows[("llama2-70b", "a100-80gb", "8", "decode")][9] != "fallback"
    # a row's note is numbered, its text below the table
    assert any(ln.startswith("[1] ") for ln in lines)


def test_fit_wide_shows_every_column(capsys):
    assert main(["fit", "--wide"]) == 0
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if "mape_%" in ln).split()
    assert {"power_points", "power_mape_%", "power_max_%", "outliers", "note"} <= set(header)
    assert max(map(len, out.splitlines())) > 100


def test_import_reference(tmp_path, capsys):
    out = tmp_path / "ref.csv"
    assert main(["import-reference", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    back = read_profiles(out)
    pd.testing.assert_frame_equal(back, reference_profiles())
    meta = json.loads(metadata_path(out).read_text())
    assert "perf_model.csv" in meta["source"]


@pytest.mark.slow
def test_plot_writes_pngs(small_csv, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--source", str(small_csv), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["llama2-70b_a100-80gb_tp8.png"]
    data = (out / files[0]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["fit", "--source", "/no/such.csv"], "no such profile file"),
        (["fit", "--bogus"], "unrecognized arguments"),
        ([], "required"),
        (["import-reference"], "required"),
    ],
)
def test_errors_one_line_exit_2(argv, expect, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expect in err


def test_bad_profile_file_names_row_and_column(tmp_path, capsys):
    ref = reference_profiles().head(40).copy()
    ref.loc[7, "latency_s"] = -0.5
    path = tmp_path / "bad.csv"
    ref.to_csv(path, index=False)
    assert main(["fit", "--source", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "bad.csv: row 8: column 'latency_s'" in err
