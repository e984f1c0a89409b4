"""splitbench-replay: replay one trace through one cluster design.

    splitbench-replay design=splitwise-hh model=llama2-70b trace=azure-conv-2023 \\
        design.prompt_machines=25 design.token_machines=15 [hydra.run.dir=DIR]

Writes ``requests.parquet`` (contract 4), ``summary.json`` and ``point.json`` (the full config
that produced them, as the study's cache keys it) into the Hydra run dir, and prints the
summary table (both read the replay's one summary, :class:`replay.summary.ReplaySummary`).
A progress bar shows on a terminal (``progress=true`` forces it). Ctrl-C stops the replay with
one line and exit status 130; nothing is written (files are written only after the replay).
Nothing here imports torch; heavy modules are imported inside :func:`run`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from omegaconf import DictConfig

from experiments.apps._cli import launch

#: the tables a replay writes (replay.simulate.ReplayResult.write) besides summary.json
OUTPUT_TABLES = ("requests", "iterations", "request_gaps", "pool_changes")


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Replay ``cfg`` (a composed ``replay`` config); returns the summary.json dict.

    ``run_dir``: where the files go (default: Hydra's run dir inside an app, else cwd).
    """
    from characterize.modeling.phase.errors import ExtrapolationWarning
    from common.atomic import write_json_atomic
    from experiments import point as pt
    from experiments.config.checks import replay_config

    c = replay_config(cfg)
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    run_dir = Path(run_dir)
    point = pt.make_point(
        model=c["model"],
        design=pt.design_point(c["design"]),
        trace=pt.trace_point(c["trace"]),
        scheduler=c["scheduler"],
        serving=c["serving"],
        slo=c["slo"],
        profiles=pt.profiles_identity(c["profiles"]),
        seed=int(cfg.seed),
    )
    progress = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    display = {
        "design": c["design"].display or c["design"].name,
        "trace": c["trace"].display or (c["trace"].name or ""),
    }
    outputs = [run_dir / f"{n}.parquet" for n in OUTPUT_TABLES]
    outputs += [run_dir / "summary.json", run_dir / "point.json"]
    before = {p for p in outputs if p.exists()}
    try:
        with warnings.catch_warnings():
            # the summary lists every extrapolation note ("extrapolated" lines): not also a
            # warning on stderr
            warnings.simplefilter("ignore", ExtrapolationWarning)
            res, _ = pt.simulate_point(point, progress=bool(progress), display=display)
        res.write(run_dir)
        write_json_atomic(run_dir / "point.json", point)
    except BaseException as e:
        for p in outputs:  # a half-written run is removed: nothing partial is kept
            if p not in before:
                p.unlink(missing_ok=True)
        if not isinstance(e, KeyboardInterrupt):
            raise  # a full disk: one line naming the file (experiments.apps._cli.guarded)
        print("interrupted: replay stopped, nothing written (rerun to replay)", file=sys.stderr)
        sys.exit(130)
    from replay.summary import format_summary

    print(format_summary(res.summary))
    print(f"wrote {run_dir / 'requests.parquet'} and {run_dir / 'summary.json'}")
    return res.summary.to_dict()


def _check(cfg: DictConfig) -> None:
    from experiments.config.checks import replay_config

    replay_config(cfg)


def main(argv: list[str] | None = None) -> None:
    launch("replay", run, _check, argv)


if __name__ == "__main__":
    main()
