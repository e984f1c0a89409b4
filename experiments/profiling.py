"""Profiling one model shard's phases (``splitbench-characterize``): the device checked, the
profiler run on the suite's harness or a vLLM engine, its rows printed and, where the GPU and
model have specs, the phase model fitted with its held-out errors. torch is imported only when
a run starts (through the profiler)."""

from __future__ import annotations

import math
import sys

from experiments.config.vllm import VLLMConf
from experiments.errors import ExperimentError

CPU_HINT = "splitbench-characterize model=tiny-llama device=cpu sweep=tiny power=off"


def check_device(device: str) -> None:
    """A ``cuda`` device needs a CUDA GPU (and a CUDA build of torch): else one line naming the
    CPU alternative, as ``benchmarks/gpu_check.py`` says it. Imports torch."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "torch has no CUDA build" if torch.version.cuda is None else "no CUDA GPU visible"
        raise ExperimentError(f"device: {device}: {why} (for a CPU smoke run: {CPU_HINT})")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ExperimentError(
            f"device: {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )


def _fmt(x: float, scale: float = 1.0, spec: str = ".3f") -> str:
    return (
        "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x * scale, spec)
    )


def summarize(run) -> str:
    """A plain-text table of a run's rows."""
    lines = [f"profile: {run.csv_path}"]
    lines.append(
        f"{'phase':8} {'batch':>5} {'tokens':>6} {'latency ms':>11} {'std ms':>8} {'power W':>8} {'J/iter':>8}"
    )
    for r in run.profiles.itertuples(index=False):
        lines.append(
            f"{r.phase:8} {int(r.batch_size):5d} {int(r.tokens_per_request):6d} "
            f"{_fmt(r.latency_s, 1e3):>11} {_fmt(r.latency_std_s, 1e3):>8} "
            f"{_fmt(r.power_w, 1, '.0f'):>8} {_fmt(r.energy_j, 1, '.3f'):>8}"
        )
    for r in run.infeasible.itertuples(index=False):
        lines.append(
            f"{r.phase:8} {int(r.batch_size):5d} {int(r.tokens_per_request):6d}  infeasible: {r.reason}"
        )
    return "\n".join(lines)


def fit_report(run, gpu: str, model: str, tp: int) -> str | None:
    """Fit the phase model on the run's rows; its held-out error lines (None if not fittable)."""
    from characterize.modeling.specs import list_specs

    known = set(list_specs("gpus"))
    try:
        from characterize.modeling.profiles import known_profile_gpus

        known |= set(known_profile_gpus())
    except ImportError:
        pass
    if gpu not in known or model not in list_specs("models"):
        return f"fit skipped: no spec for gpu '{gpu}' or model '{model}'"
    phases = set(run.profiles["phase"])
    if phases != {"prefill", "decode"}:
        return "fit skipped: needs measured rows of both phases"
    from characterize.modeling.phase_model import fit_phase_model

    pm = fit_phase_model(run.profiles, model, gpu, tp)
    out = []
    for r in pm.fit_report():
        line = (
            f"fit {r.get('phase')}: held-out MAPE {_fmt(r.get('mape'), 100, '.1f')}%, "
            f"max {_fmt(r.get('max_error'), 100, '.1f')}% over {r.get('points')} points"
        )
        if r.get("note"):
            line += f" ({r['note']})"
        out.append(line)
    return "\n".join(out)


def profile(pc, vllm: VLLMConf | None = None, fit: bool = True):
    """Profile per ``pc`` (a checked ProfileConfig) on the harness, or on an in-process vLLM
    engine when ``vllm`` is given; print the rows and the fit. Returns the ProfileRun."""
    from characterize.measure.profiler import profile_phase

    check_device(pc.device)
    engine = None
    if vllm is not None:  # issue 11: a real engine's iterations (experiments/vllm_profile.py)
        from experiments.vllm_profile import vllm_engine

        pc, engine = vllm_engine(vllm, pc)
    try:
        result = profile_phase(pc, engine=engine, log=lambda s: print(s, file=sys.stderr))
    finally:
        if engine is not None:
            engine.close()
    print(summarize(result))
    if fit and not result.profiles.empty:
        text = fit_report(result, result.metadata["gpu"], pc.model, pc.tp)
        if text:
            print(text)
    return result
