"""The report: ``report.md`` plus seaborn figures (PNG + SVG), each figure's data as CSV beside it.

Reads any set of study folders (``study.json`` + CSVs from ``splitbench-study``) and run folders
(``summary.json`` + ``requests.parquet`` from ``splitbench-replay``); it reads results from the
study's tables and the run's summary and never recomputes a metric they hold. Modules:

- :mod:`.inputs`: reading and checking the folders, study labels (overrides), context counts;
- :mod:`.study_figures`: a study's figures, the runs' CDFs, the comparison of studies;
- :mod:`.phase_figures`: the phase characterization (profile points + fitted model);
- :mod:`.markdown`: the sections and :func:`write_report`;
- :mod:`.plotting`: saving, style, palettes, axes.

Output is deterministic for the same inputs (no timestamps; SVG ids salted with a constant).
seaborn/matplotlib are imported inside the plotting functions only.
"""

from experiments.report.inputs import load_inputs
from experiments.report.markdown import report_folder, write_report

__all__ = ["load_inputs", "report_folder", "write_report"]
