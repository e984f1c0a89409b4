"""Every known bad input on every command: ONE line on stderr, the documented exit status (2),
no traceback, and what was there before untouched.

Cases come from every ``tests/bad_inputs_<area>.py`` (a list ``CASES`` of dicts: ``id``,
``argv`` (a console script and its arguments; ``{tmp}`` is a fresh folder, also the working
folder and SPLITBENCH_ROOT), ``files`` (``{relative path: text}`` written first, ``{tmp}``
replaced), ``expect`` (a substring of the error line, ``{tmp}`` replaced), ``exit`` (default
2)).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
SENTINEL = "results/sentinel.txt"


def _load_cases() -> list[dict]:
    cases = []
    for path in sorted(HERE.glob("bad_inputs_*.py")):
        spec = importlib.util.spec_from_file_location(f"_bad_inputs_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for case in mod.CASES:
            cases.append({"exit": 2, "files": {}, **case, "_file": path.name})
    ids = [c["id"] for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate case ids: {sorted(dup)}"
    return cases


CASES = _load_cases()


def _sub(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def test_every_area_file_has_cases():
    files = sorted(p.name for p in HERE.glob("bad_inputs_*.py"))
    assert "bad_inputs_study.py" in files
    for name in files:
        assert any(c["_file"] == name for c in CASES), name


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    for rel, text in case["files"].items():
        p = tmp_path / _sub(rel, tmp_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_sub(text, tmp_path))
    sentinel = tmp_path / SENTINEL
    sentinel.parent.mkdir(parents=True, exist_ok=True)
    sentinel.write_text("from before\n")
    before = sentinel.stat().st_mtime_ns
    argv = [_sub(a, tmp_path) for a in case["argv"]]
    exe = BIN / argv[0]
    assert exe.exists(), f"no console script {argv[0]} in {BIN}"
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [str(exe), *argv[1:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=case.get("timeout", 300),
        stdin=subprocess.DEVNULL,
    )
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == case["exit"], (p.returncode, p.stderr[-2000:])
    assert len(lines) == 1, p.stderr[-3000:]
    assert _sub(case["expect"], tmp_path) in lines[0], lines[0]
    assert sentinel.read_text() == "from before\n" and sentinel.stat().st_mtime_ns == before


def test_a_cache_record_of_the_wrong_shape_is_recomputed_by_the_app(tmp_path):
    """Not an error: a record that parses but has the wrong shape is checked and the point
    recomputed (exit 0), the file rewritten whole."""
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp_path)}
    argv = [
        str(BIN / "splitbench-study"),
        "search=quick",
        "search.duration_s=5",
        "point.design=baseline-h100",
        "point.trace=azure-conv-2023",
        "point.machines=1",
        "point.rate=1",
    ]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    (record,) = (tmp_path / "results" / "cache").rglob("*.json")
    good = json.loads(record.read_text())
    for bad in ("[]", json.dumps({**good, "result": {"throughput_rps": 1.0}})):
        record.write_text(bad)
        p = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert "(cached)" not in p.stdout
        again = json.loads(record.read_text())
        assert again["status"] == "ok" and again["result"]["slo_met"] == good["result"]["slo_met"]


# --- Ctrl-C at any moment (issue 25): every console script, at start-up and mid-run ----------
# As a terminal's Ctrl-C: SIGINT to the command's whole process group, at moments found by
# markers (a compiled module mapped, a file written), not fixed sleeps. Each must end with ONE
# line on stderr starting "interrupted", exit status 130, no traceback, no temporary file left.

_TINY_CHAR = ["model=tiny-llama", "device=cpu", "sweep=tiny", "power=off", "progress=false"]
_CHAR_RUN = "results/profiles/tiny-llama-tp1-native-cpu-tiny"
_TINY_REPLAY = [
    "design=splitwise-hh",
    "design.prompt_machines=1",
    "design.token_machines=1",
    "trace.resample_rate=2",
    "trace.resample_duration_s=20",
    "progress=false",
]
# seconds of simulation (40 req/s for 30 min on a cluster that keeps up: no warnings), so a
# Ctrl-C lands inside the replay
_LONG_REPLAY = [
    "design=splitwise-hh",
    "design.prompt_machines=20",
    "design.token_machines=20",
    "trace.resample_rate=40",
    "trace.resample_duration_s=1800",
    "progress=false",
    "hydra.run.dir={tmp}/run",
]


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def _mapped(part: str):
    """Ready once a compiled module whose path contains ``part`` is loaded in the process."""

    def ready(p, tmp):
        return any(part in ln and ".so" in ln for ln in _maps(p.pid).splitlines())

    return ready


#: the command's heavy imports have begun (common.entry, which guards Ctrl-C, imports no
#: compiled module from site-packages; yaml, numpy or pandas come next)
_IMPORTING = _mapped("/site-packages/")


def _later(ready, seconds: float):
    """Ready ``seconds`` after ``ready`` first is: Hydra's config registration and composition
    (an app's start-up takes about a second past its first imports)."""
    seen: list[float] = []

    def later(p, tmp):
        if not seen and ready(p, tmp):
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= seconds

    return later


def _exists(pattern: str, delay: float = 0.0):
    """Ready once a file matching ``pattern`` (under the test folder) exists, plus ``delay``."""
    return _later(lambda p, tmp: any(tmp.glob(pattern)), delay)


def _rows(relpath: str, n: int):
    """Ready once the file ``relpath`` (under the test folder) has ``n`` lines."""

    def ready(p, tmp):
        try:
            return len((tmp / relpath).read_text().splitlines()) >= n
        except OSError:
            return False

    return ready


def _silent_server():
    """A listening socket that never answers: a load generator's probe waits on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def _ctrl_c(argv: list[str], tmp: Path, ready, limit_s: float = 120.0) -> tuple[int, str]:
    """Start the console script ``argv`` in ``tmp`` (also SPLITBENCH_ROOT), wait until
    ``ready(proc, tmp)``, send Ctrl-C; returns (exit status, stderr)."""
    env = {
        **os.environ,
        "SPLITBENCH_ROOT": str(tmp),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    out, err = tmp / "ctrl_c.stdout", tmp / "ctrl_c.stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        p = subprocess.Popen(
            [str(BIN / argv[0]), *(_sub(a, tmp) for a in argv[1:])],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
        )
    try:
        t0 = time.monotonic()
        while not ready(p, tmp):
            assert p.poll() is None, f"ended ({p.returncode}) before Ctrl-C: {err.read_text()}"
            assert time.monotonic() - t0 < limit_s, "never ready"
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, err.read_text()


def _assert_interrupted(rc: int, err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 130, (rc, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err[-3000:]
    return lines[0]


def _no_temporary_files(tmp: Path) -> None:
    left = [p for p in tmp.rglob(".*") if p.is_file() and p.suffix == ".tmp"]
    assert not left, left


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory) -> Path:
    """A small replay's run folder (the report's input)."""
    tmp = tmp_path_factory.mktemp("replay_run")
    env = {**os.environ, "SPLITBENCH_ROOT": str(tmp), "OMP_NUM_THREADS": "1"}
    run = tmp / "replayed"
    p = subprocess.run(
        [str(BIN / "splitbench-replay"), *_TINY_REPLAY, f"hydra.run.dir={run}"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return run


#: a run of each command long enough to be cut (the report reads the replay_run fixture's run)
_COMMANDS = {
    "traces": ["splitbench-traces", "plot", "mooncake-synthetic", "--out", "{tmp}/plots"],
    "profiles": ["splitbench-profiles", "plot", "--out", "{tmp}/plots"],
    "characterize": ["splitbench-characterize", *_TINY_CHAR],
    "replay": ["splitbench-replay", *_LONG_REPLAY],
    "study": ["splitbench-study", "experiment=tiny", "search.n_jobs=1", "study.report=false"],
    "report": ["splitbench-report", "inputs=[{replayed}]", "output_dir={tmp}/report"],
    "loadgen": ["splitbench-loadgen", "target.base_url=http://127.0.0.1:{port}"],
    "validate": ["splitbench-validate"],
}

_NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="markers read /proc/<pid>/maps (Linux)"
)


def _argv(name: str, tmp: Path, request) -> list[str]:
    argv = list(_COMMANDS[name])
    if name == "characterize" and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    if name == "report":
        run = request.getfixturevalue("replay_run")
        argv = [a.replace("{replayed}", str(run)) for a in argv]
    if name == "loadgen":
        server = _silent_server()
        request.addfinalizer(server.close)
        argv = [a.replace("{port}", str(server.getsockname()[1])) for a in argv]
    return argv


def test_every_console_script_is_guarded_from_its_first_moment():
    """pyproject's scripts enter through common.entry, which imports nothing heavy itself."""
    import tomllib

    from common import entry

    scripts = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {f"splitbench-{n}" for n in _COMMANDS} == set(entry.SCRIPTS)
    for script, target in scripts.items():
        assert target == f"common.entry:{entry.SCRIPTS[script]}", script
    code = "import sys, common.entry; print(sorted(m for m in sys.modules if m.split('.')[0] in ('yaml', 'numpy', 'pandas', 'omegaconf', 'hydra', 'torch', 'traces', 'experiments', 'characterize', 'replay')))"  # noqa: E501
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]", p.stdout


@_NEEDS_PROC
@pytest.mark.parametrize("name", list(_COMMANDS))
@pytest.mark.parametrize("moment", ["importing", "composing"])
def test_ctrl_c_at_start_up_is_one_line_and_exit_130(name, moment, tmp_path, request):
    """While the command imports its modules, and about half a second later (Hydra's config
    registration and composition in the apps): ``interrupted``, exit 130."""
    ready = _IMPORTING if moment == "importing" else _later(_IMPORTING, 0.5)
    rc, err = _ctrl_c(_argv(name, tmp_path, request), tmp_path, ready)
    _assert_interrupted(rc, err)
    _no_temporary_files(tmp_path)


#: when each command is surely inside its work: a marker of it having started (factories:
#: a marker remembers when it was first seen)
_MID_RUN = {
    "traces": lambda: _mapped("/matplotlib/"),  # imported by the plot command itself
    "profiles": lambda: _exists("plots/[!.]*"),  # its first figure is written (not its temporary)
    "characterize": lambda: _rows(f"{_CHAR_RUN}/profiles.csv", 2),  # a point is on disk
    "replay": lambda: _exists("run/.hydra/config.yaml", 0.3),  # Hydra calls the replay next
    "study": lambda: _exists("results/cache/**/*.json"),  # its first point is cached
    "report": lambda: _exists("report/**/figures/[!.]*"),  # its first figure table is written
}


@_NEEDS_PROC
@pytest.mark.parametrize("name", list(_MID_RUN))
def test_ctrl_c_mid_run_is_one_line_and_exit_130(name, tmp_path, request):
    """Inside the command's work: its own line (or ``interrupted``), exit 130, what was
    finished kept and nothing half-written (the load generator's and validation's own
    mid-run Ctrl-C are tested beside their apps)."""
    rc, err = _ctrl_c(_argv(name, tmp_path, request), tmp_path, _MID_RUN[name]())
    line = _assert_interrupted(rc, err)
    _no_temporary_files(tmp_path)
    if name == "characterize":  # the points measured so far stay, in a whole table
        rows = (tmp_path / _CHAR_RUN / "profiles.csv").read_text().splitlines()
        assert len(rows) >= 2 and rows[0].startswith("model,")
    if name == "replay":  # its own line once the replay runs; nothing written either way
        assert line in ("interrupted", "interrupted: replay stopped, nothing written (rerun to replay)"), line  # noqa: E501
        assert not (tmp_path / "run" / "requests.parquet").exists()
    if name == "study":
        assert re.fullmatch(r"interrupted: \d+ points cached, rerun to resume", line), line


def test_characterize_writes_where_profiles_measured_reads(tmp_path):
    """One results folder (issue 25): with SPLITBENCH_ROOT set, a profile measured from another
    working folder goes under the root, where ``profiles=measured`` finds it."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    env = {**os.environ, "SPLITBENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=elsewhere,
            env={**env, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    p = run("splitbench-characterize", *_TINY_CHAR, "fit=false")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (root / _CHAR_RUN / "profiles.csv").is_file()
    assert not (elsewhere / "results").exists()
    p = run(
        "splitbench-replay",
        "model=tiny-llama",
        "gpu=cpu",
        "design=baseline",
        "design.machines=1",
        "profiles=measured",
        "profiles.slo_reference_source=${profiles.source}",
        "profiles.slo_reference_gpu=cpu",
        "profiles.slo_reference_tp=1",
        "trace=azure-code-2023",
        "trace.end_s=10",
        "progress=false",
        f"hydra.run.dir={root / 'run'}",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    point = json.loads((root / "run" / "point.json").read_text())
    assert point["profiles"]["source"] == str(root / "results" / "profiles")
    assert point["profiles"]["tables"] == ["tiny-llama-tp1-native-cpu-tiny/profiles.csv"]


def test_characterize_and_profiles_measured_name_one_folder(monkeypatch, tmp_path):
    """The folder characterize writes is the one profiles=measured reads, whatever the root."""
    from hydra import compose, initialize_config_dir

    from experiments.config import characterize as char_conf
    from experiments.config.schemas import CONF_DIR
    from experiments.config.schemas import register as register_shared

    monkeypatch.setenv("SPLITBENCH_ROOT", str(tmp_path / "sb"))
    monkeypatch.chdir(tmp_path)
    char_conf.register()
    register_shared()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        measured = compose("replay", overrides=["profiles=measured"]).profiles
        for extra in ([], ["paths.root=/data/sb"]):
            written = char_conf.out_dir(compose("characterize", overrides=extra))
            reread = compose("replay", overrides=["profiles=measured", *extra]).profiles
            assert written == str(reread.source) == str(reread.measured_dir), extra
        assert str(measured.source) == str(tmp_path / "sb" / "results" / "profiles")
        rel = compose("characterize", overrides=["out_dir=mine"])
        assert char_conf.out_dir(rel) == str(tmp_path / "sb" / "mine")  # under the root, as all


def test_a_ctrl_c_python_swallows_still_ends_the_work(capfd):
    """A Ctrl-C that lands in a __del__ or a weakref callback (matplotlib's, in the report) is
    swallowed by Python ("Exception ignored in ...", the work goes on): inside a command's work
    it still ends as KeyboardInterrupt once the work returns, and no traceback is printed."""
    from common import entry

    class Dies:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here, inside __del__

    with pytest.raises(KeyboardInterrupt), entry.interruptible():
        Dies()
    assert "Traceback" not in capfd.readouterr().err
