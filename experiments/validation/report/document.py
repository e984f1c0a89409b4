"""``report.md`` assembled from its sections, and every report file written into the run dir and
the published folder (the package doc lists them)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.atomic import write_json_atomic, write_text_atomic
from experiments.validation import engine_accounting
from experiments.validation.iteration_audit import audit, step_rungs
from experiments.validation.report.audit_sections import audit_section
from experiments.validation.report.drift_sections import DRIFT_COLUMNS, drift_rows, drift_section
from experiments.validation.report.error_sections import (
    contention_rows,
    contention_section,
    judged_sections,
    judged_tables,
    plot_noise,
    repeat_sections,
    summary_table,
)
from experiments.validation.report.run_sections import (
    handover_section,
    phase_model_sections,
    profile_decode,
    run_section,
    traces_table,
    versions,
)
from experiments.validation.report.serving_sections import serving_section, serving_table


@dataclass
class Contents:
    """What one report writes: the document and its tables (None: that table has no rows)."""

    text: str
    versions: dict
    traces: pd.DataFrame
    serving: pd.DataFrame
    errors: pd.DataFrame | None  # repeat_errors.csv
    summary: pd.DataFrame | None
    judged: pd.DataFrame | None  # errors.csv
    capacity: pd.DataFrame | None
    figs: list  # (published name, the compare step's png)
    profile: str | None  # the phase profile behind the fit
    calibrated: bool
    contention: pd.DataFrame  # contention.csv (the real runs' CPU run delay)
    drift: pd.DataFrame  # drift.csv (the engine's speed over the run)
    audit: pd.DataFrame  # iteration_audit.csv (real iterations vs the iteration model)
    engine: pd.DataFrame  # engine_accounting.csv (the engines' own counters per rung)
    by_design: dict  # each design's loads


def compare_outputs(c, loads, steps) -> tuple[list[pd.DataFrame], list]:
    """(each compare step's error table, its CDF figures as (published name, png))."""
    parts, figs = [], []
    for design in c.designs:
        for ld in loads:
            name = f"compare-{design}-{ld.name}"
            f = steps.path(name) / "errors.csv"
            if name in steps.results and f.is_file():
                parts.append(pd.read_csv(f))
                png = steps.path(name) / "cdf.png"
                if png.is_file():
                    figs.append((f"cdf-{design}-{ld.name}.png", png))
    return parts, figs


def write_report(c, loads, steps, run_dir: Path, out_dir: Path | None, argv: list[str],
                 by_design: dict | None = None):  # fmt: skip
    """Write the report files (package doc); returns the number of error rows. ``by_design``:
    each design's loads (a ladder places them per design)."""
    parts, figs = compare_outputs(c, loads, steps)
    traces = traces_table(loads, steps, by_design if c.ladder.enabled else None)
    ver = versions()
    L = run_section(c, ver, traces) + phase_model_sections(c, steps)
    src = steps.results.get("fit-baseline") or steps.results.get("fit-splitwise") or {}
    dec = profile_decode(src.get("source"))
    cal = steps.results.get("calibrate-splitwise")
    if cal:
        L += handover_section(c, cal, src)
    serving = serving_table(c, steps)
    L += serving_section(c, steps, serving)
    df = summ = None
    if parts:
        df = pd.concat(parts, ignore_index=True)
        summ = summary_table(df)
        L += repeat_sections(c, steps, df, traces, dec, figs)
    else:
        L += ["No simulated run to compare with (profile.mode=skip or simulate.enabled=false).",
              ""]  # fmt: skip
    jerr, jcap = judged_tables(c, steps)
    L += judged_sections(c, jerr, jcap)
    every = list(
        {ld.name: ld for lds in (by_design or {"": loads}).values() for ld in lds}.values()
    )
    L += contention_section(c, steps, every)
    contention = pd.DataFrame(contention_rows(c, steps, every))
    drift = pd.DataFrame(drift_rows(c, steps, every), columns=DRIFT_COLUMNS)
    L += drift_section(c, drift.to_dict("records"))
    rungs = step_rungs(c, steps, by_design or {d: loads for d in c.designs})
    audit_df = audit(rungs)
    L += audit_section(audit_df)
    engine_df = engine_accounting.table(rungs)
    L += engine_accounting.section(engine_df)
    L += ["## Command and versions", "", "```", " ".join(argv), "```", "",
          "```json", json.dumps(ver, indent=1, sort_keys=True), "```", ""]  # fmt: skip
    out = Contents("\n".join(L) + "\n", ver, traces, serving, df, summ, jerr, jcap, figs,
                   src.get("source"), bool(cal), contention, drift, audit_df, engine_df,
                   by_design or {d: loads for d in c.designs})  # fmt: skip
    for d in [run_dir] + ([out_dir] if out_dir is not None else []):
        publish(out, d, c, steps, published=d != run_dir)
    return len(df) if df is not None else 0


def publish(r: Contents, d: Path, c, steps, published: bool) -> None:
    """Every report file into ``d``; ``published`` (not the run dir): the records behind them
    too (the probes' raw records, the CDF figures, the real runs, the profile, the calibration)."""
    d.mkdir(parents=True, exist_ok=True)
    write_text_atomic(d / "report.md", r.text)
    write_json_atomic(d / "versions.json", r.versions)
    if len(r.traces):
        write_text_atomic(d / "traces.csv", r.traces.to_csv(index=False))
    if len(r.serving):
        write_text_atomic(d / "serving.csv", r.serving.to_csv(index=False, float_format="%.6g"))
        if published:  # the probes' raw records beside the terms
            for design in c.designs:
                f = steps.path(f"probe-{design}") / "probes.csv"
                if f"probe-{design}" in steps.results and f.is_file():
                    shutil.copyfile(f, d / f"probes-{design}.csv")
    if len(r.contention):
        write_text_atomic(d / "contention.csv",
                          r.contention.to_csv(index=False, float_format="%.4g"))  # fmt: skip
    if len(r.drift):
        write_text_atomic(d / "drift.csv", r.drift.to_csv(index=False, float_format="%.4g"))
    if len(r.audit):
        write_text_atomic(d / "iteration_audit.csv",
                          r.audit.to_csv(index=False, float_format="%.4g"))  # fmt: skip
    if len(r.engine):
        write_text_atomic(d / "engine_accounting.csv",
                          r.engine.to_csv(index=False, float_format="%.4g"))  # fmt: skip
    if r.judged is not None:
        write_text_atomic(d / "errors.csv", r.judged.to_csv(index=False, float_format="%.6g"))
    if r.capacity is not None:
        write_text_atomic(d / "capacity.csv", r.capacity.to_csv(index=False, float_format="%.6g"))
    if r.errors is not None:
        write_text_atomic(d / "repeat_errors.csv",
                          r.errors.to_csv(index=False, float_format="%.6g"))  # fmt: skip
        write_text_atomic(d / "summary.csv", r.summary.to_csv(index=False, float_format="%.6g"))
        plot_noise(r.errors, d / "noise.png")
        if published:
            for n, png in r.figs:
                shutil.copyfile(png, d / n)
    if published:
        copy_records(r, d, c, steps)


def copy_records(r: Contents, d: Path, c, steps) -> None:
    """The records behind a published report: the real runs' per-request records (to recompute
    and audit), the phase profile behind the fit, the KV calibration's records, and what
    :mod:`experiments.validation.recompute` needs to recompute the judged tables."""
    from experiments.validation.recompute import publish_inputs

    for name in sorted(n for n in steps.results if n.startswith("replay-")):
        run = steps.path(name) / "run"
        for f in (run / "requests.parquet", run / "tokens.parquet",
                  run / "summary.json", steps.path(name) / "records.json"):  # fmt: skip
            if f.is_file():
                (d / "runs" / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, d / "runs" / name / f.name)
    # the first design's profile as profile/, every other design's own (profile.per_design) as
    # profile/<design>/
    srcs = [(design, (steps.results.get(f"fit-{design}") or {}).get("source"))
            for design in c.designs]  # fmt: skip
    seen: dict[str, str] = {}
    for design, prof in [("", r.profile), *srcs]:
        if not prof or prof in seen or not Path(prof).is_file():
            continue
        seen[prof] = str(Path("profile", design, "profiles.csv"))
        pd_ = d / "profile" / design
        pd_.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prof, pd_ / "profiles.csv")
        meta = Path(prof).with_name("profiles.meta.json")
        if meta.is_file():
            shutil.copyfile(meta, pd_ / "profiles.meta.json")
    if r.calibrated:
        cdir = steps.path("calibrate-splitwise")
        for n in ("kv_transfer.csv", "kv_transfer.json"):
            if (cdir / n).is_file():
                shutil.copyfile(cdir / n, d / n)
    shutil.rmtree(d / "sims", ignore_errors=True)  # no rung of an earlier publication stays
    publish_inputs(c, steps, d, seen, r.by_design)
