"""The report: ``report.md`` plus seaborn figures (PNG + SVG), each figure's data as CSV beside it.

Reads any set of study folders (``study.json`` + CSVs from ``splitbench-study``) and run folders
(``summary.json`` + ``requests.parquet`` from ``splitbench-replay``); it reads results from the
study's tables and the run's summary and never recomputes a metric they hold. Modules:

- :mod:`.inputs`: reading and checking the folders; :mod:`.labels`: study labels (overrides)
  and folder names;
- :mod:`.markdown`: the document and :func:`write_report`; :mod:`.manifest`: the report folder
  (what a report wrote there);
- :mod:`.sections`: one module per section, in the document's order;
- :mod:`.format`: the one set of cell and table helpers; :mod:`.describe`: what a section says
  about a study (its command, model, variant groups, display names);
- :mod:`.study_figures`, :mod:`.variant_figures`, :mod:`.phase_figures`: the figures;
  :mod:`.plotting`: saving, style, palettes, axes.

To add a report metric: the study writes it as a column of its table
(:mod:`experiments.study.tables`); the section that shows it adds a column to its table here.

Output is deterministic for the same inputs (no timestamps; SVG ids salted with a constant).
seaborn/matplotlib are imported inside the plotting functions only.
"""

from experiments.report.inputs import load_inputs
from experiments.report.markdown import report_folder, write_report

__all__ = ["load_inputs", "report_folder", "write_report"]
