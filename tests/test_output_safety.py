"""Nothing lost, nothing silent (issue 25): a full disk names the output file, the report never
deletes or overwrites a file it did not write, two studies of one name do not run at once, a
multirun goes on past a job whose config cannot be composed, and the replay says an
extrapolation once."""

from __future__ import annotations

import csv
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common import runlock
from common.atomic import atomic_path, write_json_atomic, write_text_atomic
from common.errors import error_line

BIN = Path(sys.executable).parent
TINY_REPLAY = [
    "design=baseline-h100",
    "design.machines=1",
    "trace.resample_rate=2",
    "trace.resample_duration_s=5",
    "progress=false",
]


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITBENCH_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _full_disk(monkeypatch, names: tuple[str, ...]):
    """os.replace into a file named in ``names`` fails as a full disk does: ENOSPC, no file
    name (the write before it is where a real disk fills; the error is the same)."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name in names:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- a full disk ---------------------------------------------------------------------------


def test_atomic_write_errors_name_the_destination_not_the_temporary_file(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(OSError) as e, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] ...")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert error_line(e.value) == f"{target}: No space left on device"
    with pytest.raises(PermissionError) as e, atomic_path(target) as tmp:
        raise PermissionError(errno.EACCES, "Permission denied", tmp)
    assert e.value.filename == str(target) and ".tmp" not in error_line(e.value)
    assert list(tmp_path.iterdir()) == []  # no temporary file left, no target


def test_atomic_write_refuses_to_replace_a_folder_or_a_special_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_text_atomic(tmp_path / "d", "x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_json_atomic(fifo, {})
    assert fifo.is_fifo()  # still the FIFO, not swapped for a regular file


def test_traces_convert_on_a_full_disk_names_the_output(tmp_path, monkeypatch, capsys):
    from traces.cli import main

    out = tmp_path / "x.parquet"
    _full_disk(monkeypatch, ("x.parquet",))
    assert main(["convert", "azure-conv-2023", str(out)]) == 2
    line = _one_error_line(capsys)
    assert line == f"error: {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_replay_on_a_full_disk_names_the_output_and_keeps_nothing_partial(
    root, monkeypatch, capsys
):
    from experiments.apps import replay

    _full_disk(monkeypatch, ("summary.json",))
    with pytest.raises(SystemExit) as e:
        replay.main([*TINY_REPLAY, "hydra.run.dir=run"])
    assert e.value.code == 2
    line = _one_error_line(capsys)
    assert line == f"error: {root / 'run' / 'summary.json'}: No space left on device"
    left = sorted(p.name for p in (root / "run").iterdir() if p.is_file())
    assert not [n for n in left if n.endswith((".parquet", ".json", ".tmp"))], left


def test_study_on_a_full_disk_names_the_table(root, monkeypatch, capsys):
    from experiments.apps import study

    _full_disk(monkeypatch, ("points.csv",))
    with pytest.raises(SystemExit) as e:
        study.main(["experiment=tiny", "study.designs=[baseline-h100]", "study.heatmap=false"])
    assert e.value.code == 2
    line = _one_error_line(capsys)
    study_dir = root / "results" / "study"
    assert line == f"error: {study_dir / 'tiny' / 'points.csv'}: No space left on device"
    assert not (study_dir / ".tiny.lock").exists()  # the lock goes with the run


# --- the report's folder ---------------------------------------------------------------------


def _study(root: Path) -> Path:
    from experiments.apps import study

    study.main(
        [
            "experiment=tiny",
            "study.designs=[baseline-h100]",
            "study.heatmap=false",
            "study.report=false",
        ]  # fmt: skip
    )
    return root / "results" / "study" / "tiny"


def _report(argv) -> None:
    from experiments.apps import report

    report.main([*argv, "phase_figures=false", "formats=[svg]"])


def test_report_refuses_a_folder_it_did_not_write_and_deletes_nothing(root, capsys):
    st = _study(root)
    capsys.readouterr()
    mine = root / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "plot.png").write_text("my figure\n")
    with pytest.raises(SystemExit) as e:
        _report([f"inputs=[{st}]", f"output_dir={mine}"])
    assert e.value.code == 2
    line = _one_error_line(capsys)
    assert "is not a splitbench report folder" in line and "figures/plot.png" in line
    assert (mine / "figures" / "plot.png").read_text() == "my figure\n"
    assert sorted(p.name for p in mine.rglob("*")) == ["figures", "plot.png"]
    notes = root / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("# my notes\n")
    with pytest.raises(SystemExit):
        _report([f"inputs=[{st}]", f"output_dir={notes}"])
    assert "notes/report.md was not written by splitbench-report" in _one_error_line(capsys)
    assert (notes / "report.md").read_text() == "# my notes\n"


def test_report_rewrites_only_what_a_report_wrote(root, capsys):
    st = _study(root)
    capsys.readouterr()
    out = root / "rep"
    _report([f"inputs=[{st}]", f"output_dir={out}"])
    manifest = json.loads((out / ".splitbench-report.json").read_text())
    assert manifest["complete"] and "report.md" in manifest["files"]
    figs = sorted(f for f in manifest["files"] if f.startswith("figures/"))
    assert figs and all((out / f).is_file() for f in figs)
    (out / "figures" / "old-figure.svg").write_text("x")  # a report's, from an earlier run
    man = {"complete": True, "files": [*manifest["files"], "figures/old-figure.svg"]}
    (out / ".splitbench-report.json").write_text(json.dumps(man))
    _report([f"inputs=[{st}]", f"output_dir={out}"])
    assert not (out / "figures" / "old-figure.svg").exists()  # stale, the report's own: gone
    (out / "figures" / "user.txt").write_text("mine\n")
    with pytest.raises(SystemExit):
        _report([f"inputs=[{st}]", f"output_dir={out}"])
    assert "figures/user.txt was not written by splitbench-report" in _one_error_line(capsys)
    assert (out / "figures" / "user.txt").read_text() == "mine\n"


def test_a_report_cut_short_can_be_rerun(root, capsys):
    """A report stopped midway (Ctrl-C, a full disk) left figures its manifest does not list
    yet: they are newer than its start mark, so the rerun takes them as the report's."""
    st = _study(root)
    out = root / "rep"
    _report([f"inputs=[{st}]", f"output_dir={out}"])
    manifest = json.loads((out / ".splitbench-report.json").read_text())
    (out / ".splitbench-report.json").write_text(json.dumps({**manifest, "complete": False}))
    (out / "figures" / "half.svg").write_text("x")  # written after the start mark, then cut
    _report([f"inputs=[{st}]", f"output_dir={out}"])
    assert not (out / "figures" / "half.svg").exists()
    assert json.loads((out / ".splitbench-report.json").read_text())["complete"]


def test_report_checks_the_study_tables_against_the_study_record(root, capsys):
    st = _study(root)
    capsys.readouterr()
    meta = json.loads((st / "study.json").read_text())
    rows = meta["tables"]["points"]["rows"]
    assert rows > 2 and meta["tables"]["points"]["columns"]["rate"] == "number"
    good = (st / "points.csv").read_text()
    lines = good.splitlines(keepends=True)
    cases = {
        "".join(lines[:2]): f"points.csv: 1 data rows, study.json records {rows}",
        "": f"points.csv: 0 data rows, study.json records {rows}",
        good[: len(good) // 2]: "points.csv: ends inside a row (a truncated file)",
    }
    header = lines[0].rstrip("\n").split(",")
    cells = lines[1].rstrip("\n").split(",")
    cells[header.index("rate")] = "fast"
    cases[lines[0] + ",".join(cells) + "\n" + "".join(lines[2:])] = (
        "points.csv: data row 1, column 'rate': not a number: 'fast'"
    )
    for text, expect in cases.items():
        (st / "points.csv").write_text(text)
        with pytest.raises(SystemExit) as e:
            _report([f"inputs=[{st}]", f"output_dir={root / 'rep'}"])
        assert e.value.code == 2
        assert expect in _one_error_line(capsys)
        assert not (root / "rep").exists()
    # a table the study did not write (an earlier study's of the same name) is not read
    (st / "points.csv").write_text(good)
    (st / "variants.csv").write_text("trace,design\nstale,x\n")
    _report([f"inputs=[{st}]", f"output_dir={root / 'rep'}"])
    assert "stale" not in (root / "rep" / "report.md").read_text()


# --- two studies of one name ---------------------------------------------------------------


def test_lock_names_a_live_holder_and_takes_over_a_dead_ones_lock(tmp_path):
    path = tmp_path / ".s.lock"
    mine = runlock.holder_info()
    assert runlock.acquire(path, mine) is None
    # a live process of this host holds it: refused, naming it
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = {**mine, "pid": sleeper.pid, "started": "2026-01-01T00:00:00Z"}
        path.write_text(json.dumps(other))
        held = runlock.acquire(path, mine)
        assert held == other and f"pid {sleeper.pid} on host" in runlock.describe(held)
    finally:
        sleeper.kill()
        sleeper.wait()
    # its process is gone: taken over
    assert runlock.acquire(path, mine) is None
    assert json.loads(path.read_text()) == mine
    runlock.release(path, mine)
    assert not path.exists()
    # another host's lock cannot be checked from here: believed
    far = {**mine, "host": socket.gethostname() + "-elsewhere"}
    path.write_text(json.dumps(far))
    assert runlock.acquire(path, mine) == far
    runlock.release(path, mine)  # not ours: left alone
    assert path.exists()


def test_second_study_of_the_same_name_is_refused_while_the_first_runs(root, capsys):
    from experiments.apps import study

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = root / "results" / "study" / ".tiny.lock"
    lock.parent.mkdir(parents=True)
    holder = {**runlock.holder_info(), "pid": sleeper.pid, "command": "splitbench-study x=1"}
    lock.write_text(json.dumps(holder))
    try:
        with pytest.raises(SystemExit) as e:
            study.main(["experiment=tiny", "study.designs=[baseline-h100]", "study.heatmap=false"])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert e.value.code == 2
    line = _one_error_line(capsys)
    assert f"study.name: study 'tiny' is being run by pid {sleeper.pid} on host" in line
    assert "splitbench-study x=1" in line and str(lock) in line
    folder = root / "results" / "study" / "tiny"  # holds only Hydra's run folder: no table
    assert not [p.name for p in folder.glob("*") if p.name != "hydra"]


# --- a multirun with a job Hydra cannot compose ----------------------------------------------


def _run(tmp_path, *argv):
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_multirun_runs_the_good_jobs_and_records_an_unknown_option(tmp_path):
    p = _run(tmp_path, "splitbench-replay", "-m", "design=baseline-h100,nope", *TINY_REPLAY[1:])
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errs = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(errs) == 1 and errs[0].startswith("error: job 1 (design=nope "), p.stderr
    assert "design: unknown option 'nope' (known: baseline" in errs[0]
    (table,) = (tmp_path / "results" / "multirun" / "replay").glob("*/sweep.csv")
    rows = list(csv.DictReader(table.open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed")]
    assert rows[1]["error"].startswith("design: unknown option 'nope'")
    assert (table.parent / "0" / "summary.json").exists()
    assert "sweep: 2 jobs, 1 failed" in p.stdout


def test_multirun_of_only_bad_jobs_writes_the_table_and_exits_2(tmp_path):
    p = _run(tmp_path, "splitbench-replay", "-m", "design=nope,nope2", "design.machines=1")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errs = [x for x in p.stderr.splitlines() if x.strip()]
    assert [e.split(":")[0] for e in errs] == ["error", "error"]
    assert "sweep: 2 jobs, 2 failed" in p.stdout


# --- the replay's extrapolation note ---------------------------------------------------------


def test_replay_says_an_extrapolation_once(tmp_path):
    p = _run(
        tmp_path,
        "splitbench-replay",
        "design=baseline-h100",
        "design.machines=2",
        "trace=mooncake-conversation",
        "model=llama3.1-70b",
        "trace.resample_rate=2",
        "trace.resample_duration_s=20",
        "progress=false",
        "hydra.run.dir=run",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ExtrapolationWarning" not in p.stderr and "beyond" not in p.stderr, p.stderr
    notes = [x for x in p.stdout.splitlines() if "beyond" in x]
    assert notes and all(x.startswith("extrapolated ") for x in notes), p.stdout
    assert len(set(notes)) == len(notes)  # each said once
