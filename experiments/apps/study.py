"""splitbench-study: the paper's design comparisons, then the report.

    splitbench-study                         # the default study (experiment=paper-default)
    splitbench-study experiment=paper-full   # + iso-throughput and the provisioning heatmap
    splitbench-study experiment=tiny         # seconds-long smoke study
    splitbench-study search.n_jobs=4 search.duration_s=600

Every simulated point is cached under ``paths.cache_dir`` (a rerun recomputes nothing). One
point per job of a Hydra multirun, all jobs writing into the same cache:

    splitbench-study -m hydra/launcher=joblib point.design=splitwise-hh \\
        point.trace=azure-conv-2023 point.prompt_machines=10,20 point.token_machines=8 \\
        point.rate=8,16

Outputs go to ``paths.study_dir/<study.name>/``: study.json, budget.csv (iso-power and
iso-cost), iso_throughput.csv, heatmap.csv, points.csv (every simulated point),
latency_quantiles.csv, config.yaml; then the report into ``paths.report_dir``. A job of a
whole-study multirun (``-m experiment=tiny slo=paper,strict``) writes
``<study.name>--<its overrides>/`` in both, and a point-mode job its ``record.json`` into its
job folder. Failed points are listed as failed (``status``), the first error and the count are
printed, and a study in which every point failed exits with status 2. study.json records each
table's row count and column kinds (``tables``; the report checks the files against it). While
a study runs, ``paths.study_dir/.<name>.lock`` names it (pid, host, start, command): a second
study of the same name stops with one line naming the first (exit 2); the lock of a process
that is gone is taken over (:mod:`common.runlock`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from experiments.apps._cli import launch


def run(cfg: DictConfig, evaluator=None) -> dict:
    """Run the study of ``cfg`` (a composed ``study`` config), then its report; returns its
    tables and paths (:func:`experiments.study.run_study`), or ``{"point": record}`` in point
    mode.

    ``evaluator``: replaces the simulator (``fn(point) -> result dict``; tests). A study in
    which every point failed raises ExperimentError (exit 2) after writing its tables; Ctrl-C
    raises :class:`~experiments.apps._cli.Interrupted` (exit 130).
    """
    from experiments import sweep
    from experiments.apps._cli import Interrupted
    from experiments.cache import write_json_atomic
    from experiments.config.checks import study_config
    from experiments.study import StudyInterrupted, run_point, run_study

    c = study_config(cfg)
    c["point"] = OmegaConf.to_object(cfg.point) if "point" in cfg else None
    if c["point"] is not None and c["point"].design is not None:
        rec = run_point(c, evaluator)
        jd = sweep.job_dir()
        if jd is not None:  # the job's (or run's) own folder keeps its record
            write_json_atomic(jd / "record.json", rec)
        return {"point": rec}
    name, overrides = _study_label(c["study"].name)
    try:
        out = run_study(c, name, evaluator=evaluator, backend=_backend(cfg), overrides=overrides,
                        config_yaml=OmegaConf.to_yaml(cfg, resolve=True))  # fmt: skip
    except StudyInterrupted as e:
        raise Interrupted(str(e)) from None
    out["report"] = _report(c, name, out["dir"]) if c["study"].report else None
    return out


def _report(c: dict, name: str, study_dir):
    """The study's report (``paths.report_dir``; a multirun job: its own folder in it)."""
    from pathlib import Path

    from experiments.report.manifest import write_report_folder

    report_dir = Path(c["paths"].report_dir)
    if name != c["study"].name:  # a multirun job: its own report folder
        report_dir = report_dir / name
    path = write_report_folder(
        [study_dir], report_dir, profiles_source=c["profiles"].source, model=c["model"].name
    )
    print(f"report: {path}")
    return path


def _study_label(st_name: str) -> tuple[str, list[str] | None]:
    """The study's folder name and the job's overrides: ``<name>`` alone, or inside a
    multirun ``<name>--<its overrides>`` (one folder per job, nothing overwritten)."""
    from experiments import sweep

    job = sweep.hydra_job()
    if job is None:  # a single run: its command-line overrides when Hydra runs the app
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return st_name, None  # called as a library: none recorded (the report falls back)
        return st_name, list(HydraConfig.get().overrides.task)
    label = sweep.label_of(job["overrides"])
    return (f"{st_name}--{label}" if label else f"{st_name}--job{job['num']}"), job["overrides"]


def _backend(cfg: DictConfig) -> str:
    """``search.backend`` (joblib when the config has no such key)."""
    return str(OmegaConf.select(cfg, "search.backend", default="joblib") or "joblib")


def _validate(cfg: DictConfig) -> None:
    from experiments.config.checks import study_config
    from experiments.errors import ExperimentError
    from experiments.study import check_backend

    c = study_config(cfg)
    seed = c["search"].seed
    if seed < 0:  # numpy's generators take none: else every point fails
        raise ExperimentError(f"search.seed: must be >= 0, got {seed}")
    check_backend(_backend(cfg))


def main(argv: list[str] | None = None) -> None:
    launch("study", run, _validate, argv, interrupted="interrupted: rerun to resume")


if __name__ == "__main__":
    main()
