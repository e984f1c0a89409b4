"""Bad input at the console scripts' file inputs: ONE line ``error: ...`` naming the file and
the row/column or config key, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import pandas as pd
import pytest

from characterize.cli import main as profiles_main
from characterize.modeling.profiles import reference_profiles
from experiments.apps import replay as replay_app
from experiments.apps import report as report_app
from experiments.apps import study as study_app

TINY_REPLAY = [
    "design=splitwise-hh",
    "design.prompt_machines=1",
    "design.token_machines=1",
    "trace.resample_rate=2",
    "trace.resample_duration_s=10",
    "progress=false",
]


def _exit_and_line(capsys, fn, argv) -> str:
    """Run an app's main(argv); assert exit status 2 and one stderr line; return that line."""
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(autouse=True)
def _root(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITBENCH_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def test_replay_profile_csv_with_negative_latency(tmp_path, capsys):
    ref = reference_profiles().copy()
    ref.loc[4, "latency_s"] = -0.01
    path = tmp_path / "neg.csv"
    ref.to_csv(path, index=False)
    line = _exit_and_line(
        capsys, replay_app.main, [*TINY_REPLAY, f"profiles.source={path}", "hydra.run.dir=run"]
    )
    assert "profiles.source: " in line and "neg.csv: row 5: column 'latency_s'" in line
    assert "got -0.01" in line  # a plain number, not np.float64(...)
    assert not (tmp_path / "run").exists()


def test_replay_trace_path_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    line = _exit_and_line(
        capsys,
        replay_app.main,
        [*TINY_REPLAY, "trace=path", f"trace.path={tmp_path / 'folder'}", "hydra.run.dir=run"],
    )
    assert line.startswith("error: trace.path: ") and "is a directory" in line and "folder" in line


def test_study_stops_before_simulating_when_profiles_lack_a_design_gpu(tmp_path, capsys):
    ref = reference_profiles()
    path = tmp_path / "bloom-only.csv"
    ref[ref["model"] == "bloom-176b"].to_csv(path, index=False)
    line = _exit_and_line(
        capsys,
        study_app.main,
        ["experiment=tiny", f"profiles.source={path}", "hydra.run.dir=h"],
    )
    assert line.startswith("error: profiles.source: no phase model for llama2-70b/")
    assert "bloom-only.csv" in line and "none to derive it from" in line
    assert not list(tmp_path.rglob("study.json")) and not list(tmp_path.rglob("points.csv"))


def _run_dir(path, summary: str, requests: bytes | None = None):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(summary)
    if requests is None:
        pd.DataFrame({"request_id": [1]}).to_parquet(path / "requests.parquet")
    else:
        (path / "requests.parquet").write_bytes(requests)
    return path


@pytest.mark.parametrize(
    ("summary", "requests", "expect"),
    [
        ("{}", b"junk", "requests.parquet: cannot read Parquet"),
        ("[1, 2]", None, "summary.json: expected a JSON object, got list"),
    ],
)
def test_report_run_folder_with_bad_files(tmp_path, capsys, summary, requests, expect):
    run = _run_dir(tmp_path / "run", summary, requests)
    line = _exit_and_line(
        capsys, report_app.main, [f"inputs=[{run}]", "output_dir=rep", "hydra.run.dir=h"]
    )
    assert f"{run}/" in line and expect in line
    assert not (tmp_path / "rep").exists()


def test_report_study_json_without_its_sections(tmp_path, capsys):
    (tmp_path / "st" / "s1").mkdir(parents=True)
    (tmp_path / "st" / "s1" / "study.json").write_text("{}")
    line = _exit_and_line(
        capsys, report_app.main, [f"inputs=[{tmp_path / 'st'}]", "hydra.run.dir=h"]
    )
    assert "s1/study.json: not a splitbench study (no 'study' section)" in line


def test_report_output_dir_under_a_file(tmp_path, capsys):
    run = _run_dir(tmp_path / "run", "{}")
    (tmp_path / "afile").write_text("x")
    line = _exit_and_line(
        capsys,
        report_app.main,
        [f"inputs=[{run}]", f"output_dir={tmp_path / 'afile' / 'rep'}", "hydra.run.dir=h"],
    )
    assert "afile" in line


def test_profiles_import_reference_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert profiles_main(["import-reference", str(tmp_path / "afile" / "ref.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'afile'}")
    assert "Errno" not in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.budgets=[{power_kw:-5}]", "study.budgets: power_kw: unknown key"),
        ("study.budgets=[{name:x,power:abc}]", "study.budgets: power: Value 'abc' is not"),
    ],
)
def test_bad_field_inside_a_list_item_names_the_list_key(capsys, override, message):
    line = _exit_and_line(capsys, study_app.main, [override])
    assert line.startswith(f"error: {message}"), line


@pytest.mark.parametrize(
    ("app", "has", "lacks"),
    [
        ("replay", ["design", "trace", "scheduler", "slo"], ["experiment", "search", "shard"]),
        ("study", ["experiment", "search", "design@designs.<key>"], ["shard", "sweep", "power"]),
        ("report", ["slo", "profiles"], ["design", "search", "experiment", "shard"]),
    ],
)
def test_help_lists_only_the_groups_the_app_takes(capsys, app, has, lacks):
    main = {"replay": replay_app.main, "study": study_app.main, "report": report_app.main}[app]
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listed = out.split("config groups")[1].splitlines()[1:]
    groups = {x.split()[0] for x in listed if x.startswith("  ") and x[2] != " "}
    assert set(has) <= groups and not (set(lacks) & groups), groups
    assert "schema" not in out and "contract" not in out.lower()
    assert max(len(line) for line in out.splitlines()) <= 100
