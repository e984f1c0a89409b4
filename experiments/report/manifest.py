"""The report folder's manifest: which files splitbench-report wrote there.

A report rewrites ``report.md`` and removes the files of ``figures/`` that it did not write
this time (nothing stale stays beside it). So that it never overwrites or deletes a file it
did not write, the folder keeps ``.splitbench-report.json`` (the files the last report wrote,
and whether it finished), and :func:`write_report_folder` refuses, in one line, a folder whose
``report.md`` or ``figures/`` holds a file no report wrote. Accepted as a report folder
besides: an empty or new folder, or (from before the manifest) one whose ``report.md`` is a
splitbench report, its ``figures/`` counted as that report's. The manifest is written with
``complete: false`` before a report starts and completed after it: the files of a report
that was cut short (Ctrl-C, a full disk) are the ones newer than that mark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_json_atomic
from experiments.errors import ExperimentError
from experiments.report.markdown import REPORT_HEADING, check_out_dir, write_report

MANIFEST = ".splitbench-report.json"


def output_folder(output_dir: Path, report_dir: Path, root: Path) -> tuple[Path, bool]:
    """(the folder to write into, whether each inputs set gets its own folder under it):
    ``output_dir`` (relative ones under ``root``) is the base of per-inputs folders when it is
    ``report_dir`` (the default), else written exactly."""
    out = output_dir if output_dir.is_absolute() else root / output_dir
    base = report_dir if report_dir.is_absolute() else root / report_dir
    return out, out.resolve() == base.resolve()


def report_folder(inputs: Sequence[str | os.PathLike], out_dir: Path, per_inputs: bool) -> Path:
    """The folder the report of ``inputs`` goes to (``out_dir`` itself, or its inputs set's
    folder under it, as :func:`experiments.report.write_report` names it). Reads the inputs:
    a bad one is an ExperimentError before anything is written."""
    from experiments.report.inputs import load_inputs
    from experiments.report.labels import inputs_slug

    studies, runs = load_inputs(inputs)
    return Path(out_dir) / inputs_slug(studies, runs) if per_inputs else Path(out_dir)


def owned_files(folder: Path) -> set[str]:
    """The files (relative to ``folder``) a report may rewrite or remove there; ExperimentError
    naming the first file in the way when ``folder`` holds files no report wrote."""
    if not folder.is_dir():
        return set()
    figs = folder / "figures"
    present = sorted(
        p.relative_to(folder).as_posix()
        for p in (figs.iterdir() if figs.is_dir() else ())
        if p.is_file()
    )
    report_md = folder / "report.md"
    if report_md.is_file():
        present.insert(0, "report.md")
    manifest = folder / MANIFEST
    if not manifest.exists():
        if not present:
            return set()
        if report_md.is_file() and _is_report(report_md):  # a report from before the manifest
            return set(present)
        first = folder / present[0]
        raise ExperimentError(
            f"output_dir: {folder} is not a splitbench report folder ({first} was not written "
            "by splitbench-report and would be replaced or removed); choose another output_dir"
        )
    rec = _read(manifest)
    owned = set(rec["files"])
    if not rec["complete"]:  # a cut report: what it wrote is newer than its start mark
        mark = manifest.stat().st_mtime
        owned |= {f for f in present if (folder / f).stat().st_mtime >= mark}
    foreign = [f for f in present if f not in owned]
    if foreign:
        raise ExperimentError(
            f"output_dir: {folder / foreign[0]} was not written by splitbench-report (not in "
            f"{manifest}); move it away or choose another output_dir"
        )
    return owned


def _is_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == REPORT_HEADING
    except OSError:
        return False


def _read(path: Path) -> dict:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot read JSON ({e})".splitlines()[0]) from None
    ok = (
        isinstance(rec, dict)
        and isinstance(rec.get("files"), list)
        and all(isinstance(f, str) for f in rec["files"])
        and isinstance(rec.get("complete"), bool)
    )
    if not ok:
        raise ExperimentError(f"{path}: not a splitbench-report manifest ('files', 'complete')")
    return rec


def _written(folder: Path) -> list[str]:
    figs = folder / "figures"
    files = (
        [p.relative_to(folder).as_posix() for p in figs.iterdir() if p.is_file()]
        if figs.is_dir()
        else []
    )
    if (folder / "report.md").is_file():
        files.append("report.md")
    return sorted(files)


def write_report_folder(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    per_inputs: bool = True,
    **kw,
) -> Path:
    """:func:`experiments.report.write_report` into a folder that holds nothing but an earlier
    report's files, keeping its manifest; returns report.md's path."""
    check_out_dir(Path(out_dir))
    folder = report_folder(inputs, Path(out_dir), per_inputs)
    owned = owned_files(folder)
    manifest = folder / MANIFEST
    write_json_atomic(manifest, {"complete": False, "files": sorted(owned)})
    path = write_report(inputs, out_dir, per_inputs=per_inputs, **kw)
    write_json_atomic(manifest, {"complete": True, "files": _written(path.parent)})
    return path
