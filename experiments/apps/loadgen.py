"""splitbench-loadgen: replay a trace open-loop against a real OpenAI-compatible server.

    splitbench-loadgen target.base_url=http://127.0.0.1:8000 trace=azure-conv-2023 \\
        trace.end_s=60 lengths.prompt_scale=0.25 lengths.output_scale=0.25

The trace goes through the same trace group and transforms as a replay (window, rate scaling,
re-sampling, context limit), then ``lengths`` scales token counts (a big model's trace on a
small model). Every request is a streamed ``/v1/completions`` call with an exact-length
token-id prompt and ``max_tokens`` = ``min_tokens`` = its output length with ``ignore_eos``
(see :mod:`experiments.loadgen.client`). The config is typed (:mod:`experiments.config.loadgen`,
checked by :func:`experiments.config.checks.loadgen_config`); the run is
:func:`experiments.loadgen.run.run_load`. The run dir gets ``requests.parquet`` (contract 4 plus
status), ``tokens.parquet``, ``summary.json`` (through the simulator's metric code, so
``splitbench-report 'inputs=[<run dir>]'`` reads it) and ``loadgen.json``.

A separate app rather than a ``target=`` option of ``splitbench-replay``: a replay is a
design + profiles + scheduler simulation and a pure function of its config (cached, byte-
identical); a load run has none of those, talks to a network endpoint, and its numbers are
measurements. They share the trace and paths groups and the output format.

An unreachable endpoint, a server that is not OpenAI-compatible or a wrong model name is one
line before the run (exit 2); failed requests (HTTP errors, dropped or malformed streams,
timeouts) are records with a status and a reason. The records so far reach the run dir every
``client.checkpoint_s`` seconds during the run (atomically: a crash or a kill keeps what
finished). Ctrl-C at any moment (probe, warm-up, run) cancels what is in flight, keeps what was
measured (the tables and summary of the requests sent) and exits 130 with one line saying it was
interrupted. A file that cannot be written (a full disk) is one line naming it, exit 2.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from omegaconf import DictConfig

from experiments.apps._cli import launch
from experiments.config.checks import check_loadgen, loadgen_config
from experiments.errors import Interrupted


def check_config(cfg: DictConfig) -> None:
    """The load generator's own groups (target, lengths, client, trim, seed) checked: one line
    naming the first bad key (the validation app checks its loads with it)."""
    check_loadgen(cfg)


def _run_dir(run_dir) -> Path:
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    return Path(run_dir)


def _client_line(summary: dict) -> str:
    lg = summary["loadgen"]
    st = lg["status"]
    if math.isnan(lg["cpu_ms_per_request"]):
        return "no request sent"
    flying = f", {st['in_flight']} in flight" if st["in_flight"] else ""
    return (
        f"{st['ok']} ok, {lg['short']} short, {lg['failed']} failed, {st['interrupted']} "
        f"interrupted, {st['not_sent']} not sent{flying}; lag max {lg['lag_s']['max']:.3f} "
        f"s; CPU {lg['cpu_ms_per_request']:.2f} ms/request"
    )


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Run the load of ``cfg`` (a composed ``loadgen`` config); returns the summary dict."""
    from experiments.loadgen.run import run_load
    from replay.summary import format_summary

    conf = loadgen_config(cfg)
    run_dir = _run_dir(run_dir)
    command = "splitbench-loadgen " + " ".join(sys.argv[1:])
    summary, stopped = run_load(conf, run_dir, command)
    print(format_summary(summary))
    print(f"client      {_client_line(summary)}")
    print(f"wrote {run_dir / 'requests.parquet'}, tokens.parquet and summary.json")
    if stopped:
        lg = summary["loadgen"]
        st = lg["status"]
        raise Interrupted(
            f"interrupted: {st['ok'] + st['short']} requests finished, {lg['failed']} failed, "
            f"{st['interrupted']} cut in flight, {st['not_sent']} not sent; the partial results "
            f"are in {run_dir}"
        )
    return summary


def _check(cfg: DictConfig) -> None:
    loadgen_config(cfg)


def main(argv: list[str] | None = None) -> None:
    launch("loadgen", run, _check, argv)


if __name__ == "__main__":
    main()
