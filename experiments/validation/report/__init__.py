"""The validation report: ``report.md``, its CSVs and figures, from the finished steps of a run.

Written into the run dir and, with ``report_dir`` set, also there (``make validate`` publishes to
``results/reference/validation/``):
- ``errors.csv`` and ``capacity.csv``: the judge's tables (issue 22;
  :mod:`experiments.validation.judge`, paired per-request bootstrap intervals, P99 and throughput
  marked unscored where they cannot be judged), from the ``judge-<design>`` steps;
- ``repeat_errors.csv``: every design x load x metric x stat (sim, real mean/min/max, relative error,
  noise = the real repeats' relative half-range, targets);
- ``summary.csv``: one row per design and load, the README's table (P50/P90 errors of TTFT, TBT,
  E2E, throughput error, the largest noise of those);
- ``iteration_audit.csv``: the real iterations against the simulator's iteration model at the
  real batch (:mod:`experiments.validation.iteration_audit`; baseline2 where its records name
  each request's instance);
- ``engine_accounting.csv``: the engines' own counters per rung and instance (queue and prefill
  time per request, steps; :mod:`experiments.validation.engine_accounting`);
- ``traces.csv``: the loads (trace, rate, duration, requests, mean tokens after scaling);
- ``cdf-<design>-<load>.png`` (sim dashed, real solid) and ``noise.png`` (|error| beside noise);
- ``runs/<replay step>/``: each real run's ``requests.parquet``, ``tokens.parquet``,
  ``summary.json`` and ``records.json`` (prefix-cache counters, run-delay, load);
- ``versions.json`` and the exact command in ``report.md``.

The report assembles its sections (:mod:`.document`) from :mod:`.run_sections` (what was run),
:mod:`.serving_sections` (the serving component), :mod:`.error_sections` (the errors),
:mod:`.drift_sections` (the engine's speed) and :mod:`.audit_sections` (the iteration audit).
"""

from __future__ import annotations

from experiments.validation.report.document import write_report
from experiments.validation.report.error_sections import plot_noise, summary_markdown, summary_table
from experiments.validation.report.run_sections import versions

__all__ = ["write_report", "summary_table", "summary_markdown", "versions", "plot_noise"]
