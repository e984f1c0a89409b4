"""The report's one set of cell and table helpers: a number cell, a change in percent, a
configuration's machines, markdown tables (of a DataFrame with a format per column, or of cells
already formatted). Every section formats through these, so a cell reads the same everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the note under every table that can show ``none``
NONE_NOTE = "`none`: no rate of the search grid meets the SLO (no ratio then: `-`)."


def _missing(x) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):  # not a scalar
        return False


def num(x, spec: str = ".2f") -> str:
    """``x`` formatted by ``spec``; ``-`` for a missing value; a number written as text is read
    as one; text that is no number stays as it is."""
    if _missing(x):
        return "-"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        pass
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


def text(v) -> str:
    """A text cell: ``-`` for None (and the ``np.nan`` object), else ``str(v)``."""
    return "-" if v is None or v is np.nan else str(v)


def pct(x) -> str:
    """A change as a signed percentage with one decimal (``+12.5%``); ``-`` when missing."""
    if _missing(x):
        return "-"
    v = round(100.0 * float(x), 1)
    return f"{v + 0.0:+.1f}%"  # + 0.0: no "-0.0%"


def truthy(v) -> bool:
    """A True/False cell of a study table (written as text by CSV)."""
    return str(v).strip().lower() in ("true", "1", "1.0")


def config_text(r) -> str:
    """A configuration's machines: ``2P + 3T`` (prompt + token machines) or ``8``; ``-``."""
    if pd.notna(r.get("prompt_machines")) and pd.notna(r.get("token_machines")):
        return f"{int(r['prompt_machines'])}P + {int(r['token_machines'])}T"
    return "-" if pd.isna(r.get("machines")) else f"{int(r['machines'])}"


def md_rows(header: list[str], rows: list[list[str]], align: list[bool] | None = None) -> str:
    """A markdown table of already formatted cells; ``align[i]``: right-align column i (default:
    the first column left, the others right)."""
    align = align or [False] + [True] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if a else "---" for a in align) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def md_table(df: pd.DataFrame, cols: list[tuple[str, str, str]]) -> str:
    """A markdown table of ``df``: cols = (column, header, format spec); spec ``""``: a text
    cell, left-aligned; else :func:`num`, right-aligned."""
    rows = [
        [text(r.get(c)) if f == "" else num(r.get(c), f) for c, _, f in cols]
        for _, r in df.iterrows()
    ]
    return md_rows([h for _, h, _ in cols], rows, [f != "" for _, _, f in cols])
