"""The compiled core (replay/_core.py): it gives the same replays as the Python source, byte for
byte, and a build is never used once its source has changed."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import replay
from replay import _core

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _digests(pure: bool) -> dict:
    env = dict(os.environ)
    env.pop(_core.ENV, None)
    if pure:
        env[_core.ENV] = "1"
    out = subprocess.run(
        [sys.executable, str(HERE / "_core_digests.py")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    _core.choose()[0] != "compiled",
    reason=f"the compiled core is not built here: {_core.choose()[1]}",
)
def test_compiled_core_replays_match_the_source_byte_for_byte():
    # eight replays: prefix caching with cache-aware routing, uncached-only transfers and the
    # mixed pool; round-robin and random routing; the vllm policy; preemptions; sequential mixed;
    # the vllm policy on Splitwise designs with every serving term (replay.serving) set
    compiled, source = _digests(pure=False), _digests(pure=True)
    assert compiled["core"] == "compiled" and source["core"] == "source"
    assert len(compiled["digests"]) == 8
    assert compiled["digests"] == source["digests"]


def test_ci_builds_the_compiled_core():
    # CI installs with Cython and gcc: the README's speed figures are the compiled core's
    if not os.environ.get("CI"):
        pytest.skip("outside CI the build may be absent (the source then runs)")
    assert replay.core_status()["core"] == "compiled", replay.core_status()


def _package_copy(tmp_path: Path) -> Path:
    pkg = tmp_path / "replay"
    pkg.mkdir()
    for m in _core.CORE_MODULES:
        shutil.copy(ROOT / "replay" / f"{m}.py", pkg / f"{m}.py")
    return pkg


SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _fake_build(pkg: Path) -> None:
    suffix = SUFFIX
    record = {}
    for m in _core.CORE_MODULES:
        (pkg / f"{m}{suffix}").write_bytes(b"")
        record[m] = _core.source_digest(pkg / f"{m}.py")
    (pkg / _core.BUILD_RECORD).write_text(json.dumps(record))


def test_choose_takes_a_build_only_of_the_current_source(tmp_path):
    pkg = _package_copy(tmp_path)
    kind, why = _core.choose(pkg, {})
    assert kind == "source" and "not compiled" in why
    _fake_build(pkg)
    assert _core.choose(pkg, {}) == ("compiled", "compiled from the current source")
    assert _core.choose(pkg, {_core.ENV: "0"})[0] == "compiled"
    assert _core.choose(pkg, {_core.ENV: "1"}) == ("source", f"{_core.ENV} is set")
    with open(pkg / "machine.py", "a") as f:
        f.write("\n# edited after the build\n")
    kind, why = _core.choose(pkg, {})
    assert kind == "source" and why.startswith("replay/machine.py changed since the build")
    (pkg / _core.BUILD_RECORD).write_text("{not json")
    kind, why = _core.choose(pkg, {})
    assert kind == "source" and "unreadable" in why


def test_choose_needs_every_compiled_module(tmp_path):
    # a compiled module imports its neighbours' C types: one missing means the source for all
    pkg = _package_copy(tmp_path)
    _fake_build(pkg)
    (pkg / f"routing{SUFFIX}").unlink()
    assert _core.choose(pkg, {}) == ("source", "replay/routing: no compiled module")


def test_pure_python_switch_loads_every_core_module_from_its_source():
    env = dict(os.environ, **{_core.ENV: "1"})
    code = (
        "import json, sys, replay, replay.simulate\n"
        "mods = {m: sys.modules['replay.' + m].__file__ for m in replay._core.CORE_MODULES}\n"
        "print(json.dumps([replay.core_status(), mods]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    status, mods = json.loads(out.stdout)
    assert status == {"core": "source", "why": f"{_core.ENV} is set"}
    assert all(f.endswith(f"replay/{m}.py") for m, f in mods.items()), mods


def test_the_build_hook_and_the_cache_key_name_the_same_modules_and_record():
    # setup.py and experiments/point.py cannot import replay (numpy, pandas at import): their
    # copies of the names must stay equal to replay/_core.py's
    import ast

    from experiments import point

    consts = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    assert consts["CORE_MODULES"] == _core.CORE_MODULES
    assert consts["BUILD_RECORD"] == _core.BUILD_RECORD == point._CORE_BUILD_RECORD
    assert all((ROOT / "replay" / f"{m}.pxd").exists() for m in _core.CORE_MODULES)
