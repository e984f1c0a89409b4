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
    from experiments.report.inputs import input_folders
    from experiments.report.manifest import output_folder, write_report_folder
    from experiments.report.plotting import check_figure_options

    root = Path(str(cfg.paths.root))
    inputs = input_folders(to_plain(cfg.inputs, "inputs"), Path(str(cfg.paths.study_dir)), root)
    out, per_inputs = output_folder(
        Path(str(cfg.output_dir)), Path(str(cfg.paths.report_dir)), root
    )
    check_figure_options(list(cfg.formats), cfg.dpi)
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


def _validate(cfg: DictConfig) -> None:
    from experiments.config.checks import to_plain
    from experiments.report.plotting import check_figure_options

    to_plain(cfg, "")
    check_figure_options(list(cfg.formats), cfg.dpi)


def main(argv: list[str] | None = None) -> None:
    launch("report", run, _validate, argv)


if __name__ == "__main__":
    main()
