"""splitbench-loadgen: replay a trace open-loop against a real OpenAI-compatible server.

    splitbench-loadgen target.base_url=http://127.0.0.1:8000 trace=azure-conv-2023 \\
        trace.end_s=60 lengths.prompt_scale=0.25 lengths.output_scale=0.25

The trace goes through the same trace group and transforms as a replay (window, rate scaling,
re-sampling, context limit), then ``lengths`` scales token counts (a big model's trace on a
small model). Every request is a streamed ``/v1/completions`` call with an exact-length
token-id prompt and ``max_tokens`` = ``min_tokens`` = its output length with ``ignore_eos``
(see :mod:`experiments.loadgen.client`). The run dir gets ``requests.parquet`` (contract 4 plus
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
import os
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from experiments.apps._cli import Interrupted, launch
from experiments.errors import ExperimentError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _num(cfg, key: str, *, lo=None, gt=None, null=False, integer=False):
    v = OmegaConf.select(cfg, key)
    if v is None:
        if null:
            return None
        raise ExperimentError(f"{key}: must be set")
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (integer and not isinstance(v, int))
    ):
        raise ExperimentError(
            f"{key}: must be {'an integer' if integer else 'a number'}, got {v!r}"
        )
    if lo is not None and v < lo:
        raise ExperimentError(f"{key}: must be >= {lo}, got {v}")
    if gt is not None and not v > gt:
        raise ExperimentError(f"{key}: must be > {gt}, got {v}")
    return v


def check_config(cfg: DictConfig) -> None:
    """Raise ExperimentError naming the key of the first bad value."""
    t = cfg.target
    u = urlparse(str(t.base_url))
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ExperimentError(f"target.base_url: must be http(s)://host:port, got '{t.base_url}'")
    if u.hostname not in LOCAL_HOSTS and not t.allow_remote:
        raise ExperimentError(
            f"target.base_url: '{u.hostname}' is not this machine (set target.allow_remote=true)"
        )
    if t.prompt_mode not in ("ids", "text"):
        raise ExperimentError(f"target.prompt_mode: must be ids or text, got '{t.prompt_mode}'")
    _num(cfg, "target.vocab_size", gt=0, integer=True)
    _num(cfg, "target.min_token_id", lo=0, integer=True)
    if t.min_token_id >= t.vocab_size:
        raise ExperimentError("target.min_token_id: must be below target.vocab_size")
    _num(cfg, "target.max_model_len", lo=2, integer=True)
    for k in ("prompt_scale", "output_scale"):
        _num(cfg, f"lengths.{k}", gt=0)
    for k in ("max_prompt_tokens", "max_output_tokens"):
        _num(cfg, f"lengths.{k}", lo=1, null=True, integer=True)
    c = "client"
    _num(cfg, f"{c}.max_outstanding", lo=1, integer=True)
    for k in ("request_timeout_s", "connect_timeout_s", "speedup", "checkpoint_s"):
        _num(cfg, f"{c}.{k}", gt=0)
    _num(cfg, f"{c}.lag_warn_s", lo=0)
    _num(cfg, f"{c}.max_requests", lo=1, null=True, integer=True)
    _num(cfg, f"{c}.max_duration_s", gt=0, null=True)
    _num(cfg, f"{c}.warmup_requests", lo=0, integer=True)
    _num(cfg, f"{c}.warmup_prompt_tokens", lo=1, integer=True)
    _num(cfg, f"{c}.warmup_output_tokens", lo=1, integer=True)
    if cfg.client.cpus is not None:
        cpus = list(cfg.client.cpus)
        have = os.sched_getaffinity(0)
        bad = [x for x in cpus if not isinstance(x, int) or x not in have]
        if not cpus or bad:
            raise ExperimentError(
                f"client.cpus: {bad or cpus} not usable here (have {sorted(have)})"
            )
    _num(cfg, "trim", lo=0)
    if not cfg.trim < 0.5:
        raise ExperimentError(f"trim: must be < 0.5, got {cfg.trim}")
    _num(cfg, "seed", lo=0, integer=True)


def load_plan(cfg: DictConfig):
    """(trace table after every transform, info dict) of the config (seeded, deterministic)."""
    import numpy as np

    from traces.transforms import limit_context, prepare

    tr = OmegaConf.to_container(cfg.trace, resolve=True)
    src = tr.get("path") or tr.get("name")
    if not src:
        raise ExperimentError("trace.name: set a bundled trace name or trace.path")
    df, info = prepare(
        src,
        fmt=tr.get("fmt"),
        start_s=tr.get("start_s"),
        end_s=tr.get("end_s"),
        scale_to_rate=tr.get("scale_to_rate"),
        resample_rate=tr.get("resample_rate"),
        resample_duration_s=tr.get("resample_duration_s"),
        resample_requests=tr.get("resample_requests"),
        arrival=tr.get("arrival", "poisson"),
        cv=tr.get("cv", 1.0),
        max_context=None,
        context_policy=tr.get("context_policy", "clip"),
        seed=int(tr.get("seed", 0)),
    )
    L = cfg.lengths
    changed = np.zeros(len(df), dtype=bool)
    for col, scale, cap in (
        ("prompt_tokens", L.prompt_scale, L.max_prompt_tokens),
        ("output_tokens", L.output_scale, L.max_output_tokens),
    ):
        old = df[col].to_numpy()
        new = np.maximum(1, np.rint(old * float(scale))).astype("int64")
        if cap is not None:
            new = np.minimum(new, int(cap))
        changed |= new != old
        df[col] = new
    info["length_scaling"] = {
        "prompt_scale": float(L.prompt_scale),
        "output_scale": float(L.output_scale),
        "max_prompt_tokens": L.max_prompt_tokens,
        "max_output_tokens": L.max_output_tokens,
        "changed": int(changed.sum()),
        "rule": "tokens = max(1, round(tokens * scale)), then capped",
    }
    max_ctx = int(tr.get("max_context") or cfg.target.max_model_len)
    max_ctx = min(max_ctx, int(cfg.target.max_model_len))
    policy = tr.get("context_policy", "clip")
    before = df.set_index("request_id")[["prompt_tokens", "output_tokens"]].sum(axis=1)
    # the error names the key that set the window: the server's length unless trace.max_context
    # is the smaller one
    from_trace = tr.get("max_context") is not None and max_ctx == int(tr["max_context"])
    keys = ("trace.max_context" if from_trace else "target.max_model_len", "trace.context_policy")
    window = "the " if from_trace else "the server's "
    df, n = limit_context(df, max_ctx, policy, keys=keys, window=window)
    info["context_rejected" if policy == "reject" else "context_clipped"] = n
    after = df.set_index("request_id")[["prompt_tokens", "output_tokens"]].sum(axis=1)
    removed = int(before.sum() - after.sum())
    info["context"] = {
        "policy": policy,
        "max_context": max_ctx,
        "clipped": n if policy == "clip" else 0,
        "clipped_tokens": removed if policy == "clip" else 0,
        "rejected": n if policy == "reject" else 0,
        "rejected_tokens": removed if policy == "reject" else 0,
    }
    info["transforms"].append(
        {"name": "limit_context", "max_tokens": max_ctx, "policy": policy, "affected": n}
    )
    info["requests"] = int(len(df))
    return df.reset_index(drop=True), info


def client_options(cfg: DictConfig):
    from experiments.loadgen.client import ClientOptions

    t, c = cfg.target, cfg.client
    return ClientOptions(
        base_url=str(t.base_url),
        model=None if t.model is None else str(t.model),
        prompt_mode=str(t.prompt_mode),
        vocab_size=int(t.vocab_size),
        min_token_id=int(t.min_token_id),
        ignore_eos=bool(t.ignore_eos),
        send_min_tokens=bool(t.min_tokens),
        return_token_ids=bool(t.return_token_ids) and t.prompt_mode == "ids",
        max_outstanding=int(c.max_outstanding),
        request_timeout_s=float(c.request_timeout_s),
        connect_timeout_s=float(c.connect_timeout_s),
        lag_warn_s=float(c.lag_warn_s),
        speedup=float(c.speedup),
        max_requests=None if c.max_requests is None else int(c.max_requests),
        max_duration_s=None if c.max_duration_s is None else float(c.max_duration_s),
        seed=int(cfg.seed),
    )


def _written(path: Path, write) -> None:
    """Run ``write()`` (which writes ``path`` atomically); an OSError (a full disk has no file
    name) becomes one line naming ``path``."""
    try:
        write()
    except OSError as e:
        reason = (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]
        raise ExperimentError(f"{path}: cannot write: {reason}") from None


def _run_dir(run_dir) -> Path:
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
    return Path(run_dir)


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Run the load of ``cfg`` (a composed ``loadgen`` config); returns the summary dict."""
    import asyncio

    from common.atomic import write_json_atomic, write_parquet_atomic
    from experiments.loadgen import client, records

    check_config(cfg)
    run_dir = _run_dir(run_dir)
    if cfg.client.cpus is not None:
        os.sched_setaffinity(0, list(cfg.client.cpus))
    df, info = load_plan(cfg)
    opts = client_options(cfg)
    plan = [
        client.Record(
            int(r.request_id),
            float(r.arrival_s) / opts.speedup,
            int(r.prompt_tokens),
            int(r.output_tokens),
        )
        for r in df.itertuples(index=False)
    ]
    c = cfg.client
    warm = [
        client.Record(-1 - i, 0.0, int(c.warmup_prompt_tokens), int(c.warmup_output_tokens))
        for i in range(int(c.warmup_requests))
    ]
    conf = OmegaConf.to_container(cfg, resolve=True)
    conf.pop("hydra", None)
    meta = {
        "config": conf,
        "trace_info": info,
        "command": "splitbench-loadgen " + " ".join(sys.argv[1:]),
    }

    def started(state):
        meta["model"] = state.model
        _written(
            run_dir / "loadgen.json", lambda: write_json_atomic(run_dir / "loadgen.json", meta)
        )
        n = len(state.records)
        print(
            f"loadgen: {n} requests over {state.records[-1].arrival_s if n else 0:.1f} s to "
            f"{opts.base_url} (model '{state.model}', at most {opts.max_outstanding} "
            "outstanding); Ctrl-C stops and keeps the results",
            flush=True,
        )

    def checkpoint(state):  # every client.checkpoint_s during the run (a copy), and at the end
        req, tok = records.request_table(state.records), records.token_table(state.records)
        for name, df in (("requests.parquet", req), ("tokens.parquet", tok)):
            _written(
                run_dir / name, lambda df=df, name=name: write_parquet_atomic(df, run_dir / name)
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
                on_progress=checkpoint,
                on_start=started,
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
    req = records.request_table(state.records)
    tok = records.token_table(state.records)
    summary = records.summarize(req, tok, trim=float(cfg.trim))
    summary["loadgen"] = records.client_block(req, state, cpu, wall)
    summary["loadgen"]["model"] = state.model
    summary["loadgen"]["base_url"] = opts.base_url
    summary["loadgen"]["warmup_requests"] = len(warm)
    summary["loadgen"]["arrival_definition"] = (
        "arrival_s = scheduled send time; TTFT/E2E include client lag"
    )
    summary["trace_info"] = info
    summary["context"] = info["context"]
    summary["display"] = {
        "design": str(cfg.display or cfg.target.name),
        "trace": str(cfg.trace.get("display") or cfg.trace.get("name") or ""),
    }
    summary["source"] = "measured: splitbench-loadgen against a real endpoint"
    _written(run_dir / "summary.json", lambda: write_json_atomic(run_dir / "summary.json", summary))
    from replay.summary import format_summary

    print(format_summary(summary))
    lg = summary["loadgen"]
    st = lg["status"]
    if math.isnan(lg["cpu_ms_per_request"]):
        line = "no request sent"
    else:
        flying = f", {st['in_flight']} in flight" if st["in_flight"] else ""
        line = (
            f"{st['ok']} ok, {lg['short']} short, {lg['failed']} failed, {st['interrupted']} "
            f"interrupted, {st['not_sent']} not sent{flying}; lag max {lg['lag_s']['max']:.3f} "
            f"s; CPU {lg['cpu_ms_per_request']:.2f} ms/request"
        )
    print(f"client      {line}")
    print(f"wrote {run_dir / 'requests.parquet'}, tokens.parquet and summary.json")
    if state.stopped_by == "interrupt":
        raise Interrupted(
            f"interrupted: {st['ok'] + st['short']} requests finished, {lg['failed']} failed, "
            f"{st['interrupted']} cut in flight, {st['not_sent']} not sent; the partial results "
            f"are in {run_dir}"
        )
    return summary


def _validate(cfg: DictConfig) -> None:
    check_config(cfg)


def main(argv: list[str] | None = None) -> None:
    launch("loadgen", run, _validate, argv)


if __name__ == "__main__":
    main()
