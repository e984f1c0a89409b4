"""On-disk cache of simulated points: one JSON file per point, keyed by its FULL config.

A point is a plain dict (design with machine counts, trace with every transform and seed,
scheduler, SLO, profile source, model, code version). Its key is the SHA-256 of the
canonical JSON of that dict, so anything that changes the result changes the key. Each
point is written atomically (temp file in the same folder, then ``os.replace``), so an
interrupted sweep leaves only whole points behind and a rerun recomputes nothing already
done. A point whose evaluation raised is stored with its error (``status: "error"``) and
the sweep goes on; ``retry_errors`` recomputes those. A record that parses but has the wrong
shape (``[]``, a result without ``slo_met``, another key) is checked when read
(:func:`record_problem`) and the point recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.atomic import write_json_atomic as _write_json
from common.jsonsafe import dumps, jsonable

RECORD_VERSION = 1


def canonical_json(obj: Any) -> str:
    """The one serialization a key is hashed from (sorted keys, no whitespace)."""
    return dumps(obj, indent=None)


def point_key(point: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of a point's full config."""
    return hashlib.sha256(canonical_json(point).encode()).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    _write_json(path, obj, indent=1)


def record_problem(rec: Any, key: str | None = None) -> str | None:
    """What is wrong with a stored record's shape (None: a usable record).

    A record is a JSON object with ``status`` "ok" (``result`` an object with a boolean
    ``slo_met``; ``quantiles``, when there, an object of lists) or "error" (``error`` a
    string), and ``key`` the file's key."""
    if not isinstance(rec, dict):
        return f"not a JSON object ({type(rec).__name__})"
    if key is not None and rec.get("key") != key:
        return "key does not match the file"
    status = rec.get("status")
    if status == "error":
        return None if isinstance(rec.get("error"), str) else "error record without 'error'"
    if status != "ok":
        return f"unknown status {status!r}"
    res = rec.get("result")
    if not isinstance(res, dict):
        return "'result' is not an object"
    if not isinstance(res.get("slo_met"), bool):
        return "'result.slo_met' missing or not a boolean"
    q = res.get("quantiles")
    if q is not None and not (isinstance(q, dict) and all(isinstance(v, list) for v in q.values())):
        return "'result.quantiles' is not an object of lists"
    return None


@dataclass
class CacheStats:
    """What one cache object did: hits, fresh evaluations, failed evaluations."""

    hits: int = 0
    evaluated: int = 0
    errors: int = 0
    invalid: int = 0  # records that parsed but had the wrong shape: recomputed
    seconds: float = 0.0  # wall time spent in fresh evaluations


@dataclass
class PointCache:
    """A folder of ``<key[:2]>/<key>.json`` point records.

    ``directory=None`` or ``enabled=False`` evaluates every time (nothing read or written).
    """

    directory: Path | None
    enabled: bool = True
    retry_errors: bool = False
    stats: CacheStats = field(default_factory=CacheStats)

    def path(self, key: str) -> Path:
        assert self.directory is not None
        return Path(self.directory) / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored record of ``key``, or None (absent, unreadable, or an error to retry)."""
        if not self.enabled or self.directory is None:
            return None
        p = self.path(key)
        try:
            with p.open() as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        if record_problem(rec, key) is not None:
            self.stats.invalid += 1
            return None
        if rec.get("status") == "error" and self.retry_errors:
            return None
        return rec

    def put(self, key: str, record: dict) -> None:
        if self.enabled and self.directory is not None:
            write_json_atomic(self.path(key), record)

    def evaluate(self, point: Mapping[str, Any], fn: Callable[[Mapping[str, Any]], dict]) -> dict:
        """The record of ``point``: from disk, or by calling ``fn(point)`` and storing it.

        The record is ``{"key", "point", "status": "ok"|"error", "result", "error",
        "elapsed_s"}``; an exception in ``fn`` becomes ``status: "error"`` with its
        one-line message (and the traceback's last lines), never an exception here.
        """
        key = point_key(point)
        rec = self.get(key)
        if rec is not None:
            self.stats.hits += 1
            return rec
        t0 = time.perf_counter()
        try:
            result = fn(point)
            rec = {"status": "ok", "result": result, "error": None}
        except Exception as e:  # noqa: BLE001 - a crashed point is data, the sweep goes on
            tb = traceback.format_exc().strip().splitlines()[-6:]
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            rec = {"status": "error", "result": None, "error": msg, "traceback": tb}
            self.stats.errors += 1
        elapsed = time.perf_counter() - t0
        self.stats.evaluated += 1
        self.stats.seconds += elapsed
        rec.update(
            {
                "key": key,
                "point": jsonable(point),
                "elapsed_s": round(elapsed, 3),
                "record_version": RECORD_VERSION,
            }
        )
        self.put(key, rec)
        return json.loads(canonical_json(rec))
