"""One load run: the plan sent to the server, its records written to the run folder as they
come (atomically, every ``client.checkpoint_s``), the summary through the simulator's metric
code. The door is :mod:`experiments.apps.loadgen` (``splitbench-loadgen``)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from experiments.config.loadgen import LoadgenConfig
from experiments.errors import ExperimentError, Interrupted


def _written(path: Path, write) -> None:
    """Run ``write()`` (which writes ``path`` atomically); an OSError (a full disk has no file
    name) becomes one line naming ``path``."""
    try:
        write()
    except OSError as e:
        reason = (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]
        raise ExperimentError(f"{path}: cannot write: {reason}") from None


class _RunFiles:
    """The run folder's files: ``loadgen.json`` when the run starts, the record tables at every
    checkpoint and at the end (each written atomically)."""

    def __init__(self, run_dir: Path, meta: dict, opts) -> None:
        self.run_dir, self.meta, self.opts = run_dir, meta, opts

    def started(self, state) -> None:
        from common.atomic import write_json_atomic

        self.meta["model"] = state.model
        path = self.run_dir / "loadgen.json"
        _written(path, lambda: write_json_atomic(path, self.meta))
        n = len(state.records)
        print(
            f"loadgen: {n} requests over {state.records[-1].arrival_s if n else 0:.1f} s to "
            f"{self.opts.base_url} (model '{state.model}', at most {self.opts.max_outstanding} "
            "outstanding); Ctrl-C stops and keeps the results",
            flush=True,
        )

    def checkpoint(self, state) -> None:  # every client.checkpoint_s (a copy), and at the end
        from common.atomic import write_parquet_atomic
        from experiments.loadgen import records

        req, tok = records.request_table(state.records), records.token_table(state.records)
        for name, df in (("requests.parquet", req), ("tokens.parquet", tok)):
            path = self.run_dir / name
            _written(path, lambda df=df, path=path: write_parquet_atomic(df, path))


def _summary(conf: LoadgenConfig, state, opts, info: dict, warm: int, cpu: float, wall: float):
    """The run's summary: the simulator's metric code on the records, the client's own block."""
    from experiments.loadgen import records

    req = records.request_table(state.records)
    tok = records.token_table(state.records)
    summary = records.summarize(req, tok, trim=float(conf.trim))
    summary["loadgen"] = records.client_block(req, state, cpu, wall)
    summary["loadgen"]["model"] = state.model
    summary["loadgen"]["base_url"] = opts.base_url
    summary["loadgen"]["warmup_requests"] = warm
    summary["loadgen"]["arrival_definition"] = (
        "arrival_s = scheduled send time; TTFT/E2E include client lag"
    )
    summary["trace_info"] = info
    summary["context"] = info["context"]
    summary["display"] = {
        "design": str(conf.display or conf.target.name),
        "trace": str(conf.trace.display or conf.trace.name or ""),
    }
    summary["source"] = "measured: splitbench-loadgen against a real endpoint"
    return summary


def run_load(conf: LoadgenConfig, run_dir: Path, command: str) -> tuple[dict, bool]:
    """Send the load of ``conf``; write ``loadgen.json``, ``requests.parquet``,
    ``tokens.parquet`` and ``summary.json`` into ``run_dir``. Returns (summary, whether Ctrl-C
    stopped the run: the partial results are written). Ctrl-C before any request of the trace
    was sent raises :class:`Interrupted`; a server that cannot be used, ExperimentError."""
    import asyncio

    from common.atomic import write_json_atomic
    from experiments.loadgen import client
    from experiments.loadgen.plan import client_options, load_plan

    if conf.client.cpus is not None:
        os.sched_setaffinity(0, list(conf.client.cpus))
    df, info = load_plan(conf)
    opts = client_options(conf)
    plan = [
        client.Record(
            int(r.request_id),
            float(r.arrival_s) / opts.speedup,
            int(r.prompt_tokens),
            int(r.output_tokens),
        )
        for r in df.itertuples(index=False)
    ]
    c = conf.client
    warm = [
        client.Record(-1 - i, 0.0, int(c.warmup_prompt_tokens), int(c.warmup_output_tokens))
        for i in range(int(c.warmup_requests))
    ]
    files = _RunFiles(
        run_dir, {"config": conf.record, "trace_info": info, "command": command}, opts
    )
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    try:
        state = asyncio.run(
            client.replay(
                plan,
                opts,
                checkpoint_s=float(c.checkpoint_s),
                warmup=warm,
                install_sigint=True,
                on_progress=files.checkpoint,
                on_start=files.started,
            )
        )
    except client.LoadgenError as e:
        raise ExperimentError(str(e)) from None
    if not state.started:  # Ctrl-C during the probe or the warm-up: nothing of the trace sent
        raise Interrupted(
            f"interrupted during the {state.phase} of {opts.base_url}: no request of the trace "
            "was sent, nothing measured"
        )
    wall = time.perf_counter() - w0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    summary = _summary(conf, state, opts, info, len(warm), cpu, wall)
    path = run_dir / "summary.json"
    _written(path, lambda: write_json_atomic(path, summary))
    return summary, state.stopped_by == "interrupt"
