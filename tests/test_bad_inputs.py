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
import subprocess
import sys
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
