"""A finished study on disk: its tables (``<name>.csv``, :mod:`experiments.study.tables`),
study.json (what ran, with each table's row count and column kinds: the report checks the
files by it) and config.yaml, and the lines printed at the end."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from common.atomic import write_text_atomic
from common.units import w_to_kw
from experiments.errors import ExperimentError
from experiments.study.tables import (
    HEADLINE_BASELINES,
    LATENCY_TABLE,
    OPTIONAL_TABLES,
    TABLES,
    ratio_column,
)


def write_study(c, name, tasks, notes, results, ctx, t0, *, overrides=None, config_yaml=None):
    """Assemble and write the study's tables and study.json into ``<paths.study_dir>/<name>``,
    print its summary; returns ``{"dir", "tables", "meta"}`` (ExperimentError, after writing,
    when every point failed)."""
    from experiments.study.assemble import assemble, latency_rows

    wall = time.perf_counter() - t0
    tables = assemble(c, tasks, results)
    out = Path(c["paths"].study_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    written = _write_tables(out, tables, latency_rows(results, tasks))
    # every point looked at: the searches' points and the heatmap's simulated cells
    looked = [*tables["points"], *(h for h in tables["heatmap"] if h.get("evaluated"))]
    failed = [p for p in looked if p.get("status") == "failed"]
    context = context_summary(results, tasks)
    meta = _meta(c, name, overrides, notes, ctx, results, looked, failed, context)
    meta["tables"] = written
    meta["wall_s"] = round(wall, 1)
    from experiments.cache import write_json_atomic

    write_json_atomic(out / "study.json", meta)
    if config_yaml is not None:
        write_text_atomic(out / "config.yaml", config_yaml)
    sims = meta["simulations"]
    print(
        f"study {name}: {sims['evaluated']} simulated, {sims['cache_hits']} from cache, "
        f"{len(failed)} of {len(looked)} points failed, {wall:.0f} s -> {out}"
    )
    if failed:
        print(f"first failure: {failed[0]['error']} ({len(failed)} points failed)")
    for line in _context_lines(context):
        print(line)
    for note in notes:
        print(f"note: {note}")
    sys.stdout.flush()
    if looked and len(failed) == len(looked):
        raise ExperimentError(
            f"study {name}: all {len(failed)} points failed; first: {failed[0]['error']} "
            f"(tables in {out})"
        )
    print_budget(tables["budget"])
    return {"dir": out, "tables": tables, "meta": meta}


def _write_tables(out: Path, tables: dict, latency: list[dict]) -> dict:
    """Write every table (the optional ones when not empty); their study.json records."""
    import pandas as pd

    written = {}
    for tname in TABLES:
        written[tname] = write_csv(pd.DataFrame(tables[tname]), out / f"{tname}.csv")
    for tname in OPTIONAL_TABLES:
        if tables[tname]:
            written[tname] = write_csv(pd.DataFrame(tables[tname]), out / f"{tname}.csv")
    written[LATENCY_TABLE] = write_csv(pd.DataFrame(latency), out / f"{LATENCY_TABLE}.csv")
    return written


def _meta(c, name, overrides, notes, ctx, results, looked, failed, context) -> dict:
    """study.json's content (less ``tables`` and ``wall_s``)."""
    from experiments.point import code_version

    st = c["study"]
    return {
        "study": asdict(st),
        "label": name,
        "overrides": overrides,
        "notes": notes,
        "model": asdict(c["model"]),
        "scheduler": asdict(c["scheduler"]),
        "slo": asdict(c["slo"]),
        "serving": asdict(c["serving"]),
        "profiles": ctx.profiles,
        "search": asdict(c["search"]),
        "designs": {k: asdict(c["designs"][k]) for k in {*st.designs, *st.extra_designs}},
        "traces": {k: asdict(c["traces"][k]) for k in st.traces},
        "code_version": code_version(),
        "versions": versions(),
        "tasks": [
            {k: v for k, v in r.items() if k not in ("points", "cells", "config_rates")}
            for r in results
        ],
        "simulations": {
            "evaluated": sum(r["evaluated"] for r in results),
            "cache_hits": sum(r["cache_hits"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "failed_points": len(failed),
            "points": len(looked),
        },
        "context": context,
    }


def context_summary(results: list[dict], tasks) -> dict:
    """Per trace, what the context-window policy did over every point simulated: requests
    clipped or rejected and the tokens removed (the ``context`` block of point results)."""
    out: dict[str, dict] = {}
    seen: set = set()
    for task, res in zip(tasks, results, strict=True):
        for p in res.get("points", []):
            r = p.get("result") or {}
            key = r.get("_key")
            if key in seen:
                continue
            seen.add(key)
            ctx = r.get("context")
            if not isinstance(ctx, dict):
                continue
            t = out.setdefault(
                task.trace_key,
                {"policy": ctx.get("policy"), "max_context": ctx.get("max_context"), "points": 0,
                 "requests": 0, "clipped": 0, "clipped_tokens": 0, "rejected": 0,
                 "rejected_tokens": 0},
            )  # fmt: skip
            t["points"] += 1
            t["requests"] += int(r.get("trace_requests") or 0)
            for k in ("clipped", "clipped_tokens", "rejected", "rejected_tokens"):
                v = ctx.get(k)
                t[k] += int(v) if isinstance(v, int | float) and v == v else 0
    return out


def _context_lines(summary: dict) -> list[str]:
    lines = []
    for trace, t in summary.items():
        n = t["requests"] or 1
        lines.append(
            f"context ({t['policy']} at {t['max_context']} tokens), {trace}: "
            f"{t['clipped']} of {t['requests']} requests clipped ({100 * t['clipped'] / n:.1f}%, "
            f"{t['clipped_tokens']} tokens removed), {t['rejected']} rejected "
            f"({t['rejected_tokens']} tokens) over {t['points']} simulated points"
        )
    return lines


def write_csv(df, path: Path) -> dict:
    """Write a study table; returns its record for study.json: ``rows`` and each column's kind
    (:func:`column_kind`)."""
    write_text_atomic(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return {"rows": len(df), "columns": {str(c): column_kind(df[c]) for c in df.columns}}


def column_kind(col) -> str:
    """``number``, ``bool`` or ``text``: what every non-empty cell of a table column is."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(col.dtype):
        return "number"
    vals = [v for v in col if v is not None and not (isinstance(v, float) and v != v)]
    if vals and all(isinstance(v, bool) for v in vals):
        return "bool"
    if vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return "number"
    return "text"


def versions() -> dict:
    """Python's and the packages' versions a study ran with (study.json ``versions``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("splitbench", "numpy", "pandas", "hydra-core", "omegaconf", "joblib", "seaborn",
                "matplotlib"):  # fmt: skip
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def print_budget(rows: list[dict]) -> None:
    """The budget table on the terminal (each design against the headline baselines)."""
    if not rows:
        return
    vs = "".join(f"{'vs ' + b.split('-')[-1].upper():>8}" for b in HEADLINE_BASELINES)
    sets = any(r.get("profile_set") for r in rows)  # several profile sets: <set>/<design>
    dw = 34 if sets else 17
    print(
        f"{'trace':<16}{'budget':<11}{'set/design' if sets else 'design':<{dw}}{'config':>10}"
        f"{'req/s':>8}"
        f"{'$/h':>8}{'kW':>7}{vs}"
    )

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    for r in rows:
        cfg = (
            f"{r['prompt_machines']}+{r['token_machines']}"
            if r["prompt_machines"]
            else f(r["machines"], "d")
        )
        ratios = "".join(
            f"{f(r[ratio_column('max_rate', b)], '.2f'):>8}" for b in HEADLINE_BASELINES
        )
        design = f"{r['profile_set']}/{r['design']}" if sets else r["design"]
        print(
            f"{r['trace']:<16}{r['budget']:<11}{design:<{dw}}{cfg:>10}"
            f"{f(r['max_rate'], '.1f'):>8}{f(r['cost_per_hour'], '.0f'):>8}"
            f"{f(r['power_w'] and w_to_kw(r['power_w']), '.0f'):>7}{ratios}"
        )
    sys.stdout.flush()
