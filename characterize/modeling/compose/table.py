"""Compose a contract-2 profile table from AIConfigurator's measured operator latencies.

:func:`compose_profiles` asks the package's own engine (:mod:`.library`) for the latency of
each iteration the table holds and adds the engine overhead (:mod:`.overhead`); nothing is
summed by hand here:

- prefill rows, ``EngineHandle.predict_prefill_latency(batch, prompt)``: prompts of
  :data:`PREFILL_PROMPTS` tokens in batches of :data:`PREFILL_BATCHES` up to
  :data:`MAX_PREFILL_BATCH_TOKENS` tokens per iteration, which covers what the ``vllm`` policy
  prices as a mixed iteration (a chunk of up to ``max_num_batched_tokens`` = 8192 tokens plus
  one token per running decode, at most 256: ``replay/vllm_policy.py`` prices it as a prefill of
  the chunk's and the decodes' tokens plus the decodes' KV read, both from this table);
- decode rows, ``EngineHandle.predict_decode_latency(batch, context)`` (one step of ``batch``
  requests each holding ``context`` tokens): batches :data:`DECODE_BATCHES` x contexts
  :data:`DECODE_CONTEXTS`, only points whose KV cache fits (:func:`kv_capacity_tokens`); the
  others are listed in the sidecar's ``infeasible`` (contract 2 keeps them out of the table).

Power is not in the operator data the tables come from (its energy figures are model-derived,
not measured board power), so ``power_w`` is MODELLED, as the suite's fit does where a profile
has no power: the Splitwise paper's A100 power shape (fitted on the reference rows of
Llama-2-70B) scaled to this GPU's budget (GPU spec power limit x tp), prefill rows at the
prefill curve of their batch tokens, decode rows at the decode curve of their batch;
``energy_j = power_w x latency_s``. ``source`` says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from characterize.modeling.compose import library
from characterize.modeling.compose.overhead import EngineOverhead
from characterize.modeling.profiles import (
    PROFILE_COLUMNS,
    gpu_power_facts,
    profile_gpu_spec,
    validate_profiles,
)
from characterize.modeling.specs import ModelSpec, SpecError, load_model

PREFILL_PROMPTS = (128, 256, 512, 1024, 2048, 4096, 8192)
PREFILL_BATCHES = (1, 2, 4, 8, 16, 32, 64)
MAX_PREFILL_BATCH_TOKENS = 16384
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DECODE_CONTEXTS = (128, 256, 512, 1024, 2048, 4096, 8192)
KV_RESERVE_FRACTION = 0.1  # as MachineSpec.kv_capacity_tokens: activations, graphs, fragments
POWER_SHAPE_MODEL = "llama2-70b"  # the reference model whose A100 power shape is scaled
DTYPE_BYTES = {"bf16": 2, "fp8": 1}


def model_for_dtype(model: str, dtype: str | None) -> tuple[ModelSpec, str]:
    """(model spec whose weights have the dtype's bytes, dtype).

    ``dtype`` None: the spec's own (2 bytes: bf16, 1 byte: fp8). A bf16 spec asked for in fp8
    is looked up as ``<model>-fp8`` (its weights take 1 byte, which the KV memory and the
    simulator's memory use); a missing one is an error naming what to add.
    """
    spec = load_model(model)
    own = {2: "bf16", 1: "fp8"}.get(spec.bytes_per_param)
    if dtype is None:
        if own is None:
            raise library.ComposeError(
                f"model '{model}': {spec.bytes_per_param} bytes per weight is no composable "
                f"dtype (known: {', '.join(DTYPE_BYTES)})"
            )
        return spec, own
    if dtype not in DTYPE_BYTES:
        raise library.ComposeError(f"dtype '{dtype}' unknown (known: {', '.join(DTYPE_BYTES)})")
    if spec.bytes_per_param == DTYPE_BYTES[dtype]:
        return spec, dtype
    other = f"{model}-{dtype}"
    try:
        spec = load_model(other)
    except SpecError:
        raise library.ComposeError(
            f"model '{model}' has {spec.bytes_per_param}-byte weights and no spec '{other}' "
            f"with {DTYPE_BYTES[dtype]}-byte weights exists (add "
            f"characterize/modeling/specs/models/{other}.toml)"
        ) from None
    if spec.bytes_per_param != DTYPE_BYTES[dtype]:
        raise library.ComposeError(
            f"model spec '{other}' has {spec.bytes_per_param}-byte weights, not "
            f"{DTYPE_BYTES[dtype]} ({dtype})"
        )
    return spec, dtype


def base_model_name(spec: ModelSpec, dtype: str) -> str:
    """The model name without a ``-<dtype>`` suffix (file names read ``<model>-<dtype>``)."""
    suffix = f"-{dtype}"
    return spec.name[: -len(suffix)] if spec.name.endswith(suffix) else spec.name


def kv_capacity_tokens(spec: ModelSpec, gpu: str, tp: int) -> int:
    """KV tokens a TP-``tp`` instance holds: ``tp`` x GPU memory x (1 - 0.1 reserve) - weights,
    over KV bytes per token (the rule of ``MachineSpec.kv_capacity_tokens``)."""
    mem = int(tp) * profile_gpu_spec(gpu).memory_bytes
    free = mem * (1.0 - KV_RESERVE_FRACTION) - spec.weight_bytes
    return int(free // spec.kv_bytes_per_token)


def prefill_points() -> list[tuple[int, int]]:
    """(batch, prompt tokens) of the prefill rows."""
    return [
        (b, p)
        for p in PREFILL_PROMPTS
        for b in PREFILL_BATCHES
        if b * p <= MAX_PREFILL_BATCH_TOKENS
    ]


def decode_points(capacity: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(feasible, infeasible) (batch, context) decode points for a KV capacity in tokens: a
    point fits when ``batch x (context + 1)`` tokens fit (the step writes one more per request)."""
    ok, bad = [], []
    for b in DECODE_BATCHES:
        for c in DECODE_CONTEXTS:
            (ok if b * (c + 1) <= capacity else bad).append((b, c))
    return ok, bad


def source_text(engine: str, version: str, system: str, dtype: str, overhead: EngineOverhead) -> str:
    """The ``source`` of every row of a composed table (details in its ``.meta.json``)."""
    added = "no engine overhead" if overhead.is_zero else "+ fitted engine overhead"
    return (
        f"composed from measured operator latencies: {library.PACKAGE} "
        f"{library.package_version()} (Xu et al., arXiv 2601.06288), {system}, {engine} "
        f"{version}, {dtype}; {added}; power modelled, not measured"
    )


def _power_curves(gpu: str, tp: int):
    """(prefill curve, decode curve, budget W): the fit's power fallback for this GPU and tp."""
    from characterize.modeling.phase.fit import _power_fallback

    budget = gpu_power_facts(gpu)[0] * int(tp)
    curves: dict = {}
    _power_fallback(POWER_SHAPE_MODEL, gpu, int(tp), budget, curves, None)
    return curves["prefill"][0], curves["decode"][0], budget


def compose_profiles(
    model: str,
    gpu: str,
    tp: int,
    engine: str,
    version: str | None = None,
    dtype: str | None = None,
    overhead: EngineOverhead | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The composed contract-2 table of one (model, gpu, tp, engine, version, dtype) and its
    provenance (the ``.meta.json`` sidecar's content). ``version`` None: the newest version with
    its own data on that GPU; ``dtype`` None: the model spec's; ``overhead`` None: none added.
    Raises :class:`~.library.ComposeError` (one line, listing what exists) for bad names."""
    if int(tp) < 1:
        raise library.ComposeError(f"tp must be >= 1 (got {tp})")
    spec, dtype = model_for_dtype(model, dtype)
    system, version = library.resolve(gpu, engine, version, dtype)
    capacity = kv_capacity_tokens(spec, gpu, tp)
    if capacity < DECODE_CONTEXTS[0] + 1:
        raise library.ComposeError(
            f"{spec.name} ({spec.weight_bytes / 1e9:.0f} GB of weights) leaves no KV cache on "
            f"{int(tp)} x {gpu} (capacity {max(capacity, 0)} tokens): use a larger tp"
        )
    overhead = overhead or EngineOverhead()
    handle = library.engine_handle(spec, system, engine, version, dtype, int(tp))
    pre_curve, dec_curve, budget = _power_curves(gpu, int(tp))
    source = source_text(engine, version, system, dtype, overhead)
    rows = []
    with library.quiet_library():
        for b, p in prefill_points():
            ms = handle.predict_prefill_latency(b, p)
            lat = overhead.kernel_scale * ms / 1e3 + float(overhead.prefill_s(b))
            rows.append(("prefill", b, p, lat, pre_curve(b * p)))
        feasible, infeasible = decode_points(capacity)
        for b, c in feasible:
            ms = handle.predict_decode_latency(b, c)
            lat = overhead.kernel_scale * ms / 1e3 + float(overhead.decode_s(b))
            rows.append(("decode", b, c, lat, dec_curve(b)))
    df = pd.DataFrame(rows, columns=["phase", "batch_size", "tokens_per_request", "latency_s",
                                     "power_w"])  # fmt: skip
    df["latency_s"] = df["latency_s"].round(9)
    df["power_w"] = df["power_w"].round(3)
    df["energy_j"] = (df["power_w"] * df["latency_s"]).round(6)
    df["model"] = spec.name
    df["gpu"] = gpu
    df["tp"] = int(tp)
    df["repeats"] = 1
    df["latency_std_s"] = np.nan
    df["source"] = source
    table = validate_profiles(df[PROFILE_COLUMNS], f"composed {spec.name}/{gpu}/tp{tp}")
    meta = {
        "kind": "composed from measured operator latencies (not a measurement of the engine)",
        "credit": library.CREDIT,
        "package": f"{library.PACKAGE} {library.package_version()}",
        "system": system,
        "engine": engine,
        "engine_version": version,
        "dtype": dtype,
        "quant_modes": dict(zip(("gemm", "kv_cache", "attention"), library.DTYPES[dtype],
                                strict=True)),  # fmt: skip
        "model": spec.name,
        "gpu": gpu,
        "tp": int(tp),
        "queries": {
            "prefill": "EngineHandle.predict_prefill_latency(batch, prompt_tokens) ms",
            "decode": "EngineHandle.predict_decode_latency(batch, context_tokens) ms",
        },
        "overhead": {
            "kernel_scale": overhead.kernel_scale,
            "step_ms": overhead.step_s * 1e3,
            "per_request_ms": overhead.per_request_s * 1e3,
            "per_prefill_ms": overhead.per_prefill_s * 1e3,
            "origin": overhead.origin,
            "added": overhead.describe(),
        },
        "kv_capacity_tokens": capacity,
        "memory_rule": f"tp x GPU memory x (1 - {KV_RESERVE_FRACTION}) - weights "
        f"({spec.weight_bytes} bytes), over {spec.kv_bytes_per_token} KV bytes per token",
        "infeasible": [{"batch_size": b, "tokens_per_request": c} for b, c in infeasible],
        "power": f"modelled: {POWER_SHAPE_MODEL}/a100-80gb reference power shape scaled to "
        f"{budget:.0f} W (GPU spec/machine budget x tp); not measured",
        "command": (
            f"splitbench-profiles compose --model {base_model_name(spec, dtype)} --gpu {gpu} "
            f"--tp {int(tp)} --engine {engine} --engine-version {version} --dtype {dtype}"
        ),
    }
    return table, meta
