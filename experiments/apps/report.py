"""splitbench-report: read run and/or study folders, write report.md and figures.

    splitbench-report                                   # every study under paths.study_dir
    splitbench-report 'inputs=[results/study/paper-default,results/runs/my-run]'
    splitbench-report output_dir=results/reference inputs=[...]

By default each inputs set gets its own folder under ``paths.report_dir`` (named by the study's
name and overrides, or the inputs joined with ``+``), so no report overwrites another; an
``output_dir`` other than ``paths.report_dir`` is written exactly. Figures of an earlier report
in that folder that this one did not write are removed; a folder holding files no report wrote
is refused (:mod:`experiments.report.manifest`). Figures are PNG and SVG (``formats``)
with each figure's data as CSV beside it. Several studies: a table and a figure compare them,
each labelled by its overrides.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from experiments.apps._cli import launch


def run(cfg: DictConfig) -> Path:
    """Write the report of ``cfg`` (a composed ``report`` config); returns report.md's path."""
    from experiments.config.checks import to_plain
    from experiments.errors import ExperimentError
    from experiments.report.manifest import write_report_folder

    inputs = list(to_plain(cfg.inputs, "inputs"))
    if not inputs:
        study_dir = Path(str(cfg.paths.study_dir))
        inputs = sorted(str(p) for p in study_dir.glob("*") if (p / "study.json").exists())
        if not inputs:
            raise ExperimentError(f"inputs: none given and no study under {study_dir}")
    root = Path(str(cfg.paths.root))
    inputs = [str(p if Path(p).is_absolute() else root / p) for p in inputs]
    out = Path(str(cfg.output_dir))
    out = out if out.is_absolute() else root / out
    base = Path(str(cfg.paths.report_dir))
    per_inputs = out.resolve() == (base if base.is_absolute() else root / base).resolve()
    _check_figures(cfg)
    path = write_report_folder(
        inputs,
        out,
        per_inputs=per_inputs,
        profiles_source=str(cfg.profiles.source),
        model=str(cfg.model.name),
        phase=bool(cfg.phase_figures),
        formats=list(cfg.formats),
        dpi=int(cfg.dpi),
        command="splitbench-report " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
    )
    print(f"report: {path}")
    return path


#: figure file formats and the PNG resolution the report takes
FORMATS = ("png", "svg", "pdf")
DPI_RANGE = (10, 2400)


def _check_figures(cfg: DictConfig) -> None:
    from experiments.errors import ExperimentError

    for f in cfg.formats:
        if f not in FORMATS:
            raise ExperimentError(f"formats: unknown format '{f}' ({', '.join(FORMATS)})")
    lo, hi = DPI_RANGE
    if not lo <= cfg.dpi <= hi:
        raise ExperimentError(f"dpi: must be from {lo} to {hi} (dots per inch), got {cfg.dpi}")


def _validate(cfg: DictConfig) -> None:
    from experiments.config.checks import to_plain

    to_plain(cfg, "")
    _check_figures(cfg)


def main(argv: list[str] | None = None) -> None:
    launch("report", run, _validate, argv)


if __name__ == "__main__":
    main()
