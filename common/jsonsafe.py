"""The one JSON sanitizer of the suite: every JSON file splitbench writes goes through it.

Rules (one place, so no two writers disagree):
- mappings become dicts with string keys, in sorted key order; tuples, lists and numpy arrays
  become lists;
- numpy scalars become the Python value; dataclasses become dicts of their fields; paths and
  any other object become ``str(obj)``;
- a non-finite float (NaN, +inf, -inf) becomes ``null``: JSON has no such number, and every
  reader of a splitbench file takes ``null`` as "not available / unbounded". Code that needs to
  tell "missed by infinitely much" from "unknown" stores that as its own field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON-safe Python (see the module rules)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):  # numpy array or scalar
        try:
            return jsonable(obj.tolist())
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``jsonable(obj)``: sorted keys; ``indent=None`` is the canonical,
    whitespace-free form that cache keys are hashed from."""
    sep = (",", ":") if indent is None else None
    return json.dumps(jsonable(obj), indent=indent, sort_keys=True, separators=sep, allow_nan=False)
