"""Cached steps of a validation run directory.

Each step writes into ``<run dir>/<step>/`` and, when it finishes, ``step.json``:
``{"step", "key", "config", "inputs", "result", "wall_s"}``. ``key`` is the SHA-256 of the step's
config and the keys of the steps it reads, so a rerun skips a step whose config and inputs did
not change (and reruns everything downstream of one that did). A step that fails or is
interrupted (KeyboardInterrupt passes through unchanged: the app says "interrupted", exit 130)
leaves no ``step.json`` (its folder may hold partial output, which the rerun
replaces); every step finished before it keeps its output.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.atomic import write_json_atomic
from common.jsonsafe import dumps
from experiments.validation.errors import StepError

STAMP = "step.json"
#: packages whose own error classes carry a one-line user message
_OUR_PACKAGES = ("experiments.", "replay.", "traces.", "characterize.", "common.")


def _one_line_error(e: BaseException) -> bool:
    """A user error of called code (one of the suite's own error classes, or a file error
    naming its path), which becomes the step's one line; anything else is a crash."""
    if isinstance(e, OSError):
        return bool(e.filename)
    mod = type(e).__module__ or ""
    return mod.startswith(_OUR_PACKAGES) and type(e).__name__.endswith("Error")


def step_key(config: dict, input_keys: Sequence[str] = ()) -> str:
    text = dumps({"config": config, "inputs": list(input_keys)}, indent=None)
    return hashlib.sha256(text.encode()).hexdigest()


class Steps:
    """Runs steps in ``run_dir``; ``log`` gets one line per step (ran / reused / failed)."""

    def __init__(self, run_dir: str | Path, log: Callable[[str], None] = print):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.keys: dict[str, str] = {}
        self.results: dict[str, dict] = {}
        self.ran: list[str] = []
        self.reused: list[str] = []

    def path(self, name: str) -> Path:
        return self.dir / name

    def cached(self, name: str, config: dict, inputs: Sequence[str] = ()) -> dict | None:
        key = step_key(config, [self.keys[i] for i in inputs])
        try:
            st = json.loads((self.path(name) / STAMP).read_text())
        except (OSError, ValueError):
            return None
        return st if st.get("key") == key else None

    def run(
        self,
        name: str,
        config: dict,
        fn: Callable[[Path], dict | None],
        inputs: Sequence[str] = (),
        cache: bool = True,
    ) -> dict:
        """Run ``fn(step_dir)`` unless a finished step with the same key is there."""
        for i in inputs:
            if i not in self.keys:
                raise StepError(name, f"needs step '{i}', which has not run")
        key = step_key(config, [self.keys[i] for i in inputs])
        d = self.path(name)
        if cache:
            st = self.cached(name, config, inputs)
            if st is not None:
                self.keys[name] = key
                self.results[name] = st.get("result") or {}
                self.reused.append(name)
                self.log(f"[{name}] reused ({d})")
                return self.results[name]
        (d / STAMP).unlink(missing_ok=True)
        d.mkdir(parents=True, exist_ok=True)
        self.log(f"[{name}] running")
        t0 = time.monotonic()
        try:
            result = fn(d) or {}
        except StepError:
            raise
        except Exception as e:  # noqa: BLE001 - user errors of called code become one line
            if _one_line_error(e):
                from common.errors import error_line

                raise StepError(name, error_line(e)) from None
            raise
        wall = time.monotonic() - t0
        write_json_atomic(
            d / STAMP,
            {"step": name, "key": key, "config": config, "inputs": list(inputs),
             "result": result, "wall_s": wall},
        )  # fmt: skip
        self.keys[name] = key
        self.results[name] = result
        self.ran.append(name)
        self.log(f"[{name}] done in {wall:.1f} s")
        return result
