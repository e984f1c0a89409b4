"""``simulate(trace, design, ...)``: replay a contract-1 trace through a cluster design.

Wires the pieces: phase models (``characterize.modeling.phase_model``, or any object with ``.get(model,
gpu, tp)``, or a mapping gpu -> PhaseModel), machine specs, the KV transfer model and the
event engine; then turns the engine's records into a :class:`ReplayResult` (contract-4 request
table, per-iteration span table, per-request extra gaps) and its one summary
(:func:`replay.summary.build_summary`: metrics, SLO, energy).

Instances: every node of the design runs ``num_gpus // tp`` instances (:meth:`Design.instances`);
the engine's machines are these instances, so the request table's ``prompt_machine`` and
``token_machine`` and the span table's ``machine`` are instance indices.
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from characterize.modeling.phase.errors import ExtrapolationWarning
from characterize.modeling.phase.model_set import REFERENCE_GPU
from characterize.modeling.specs import SpecError, load_machine, load_model
from common.atomic import write_json_atomic, write_parquet_atomic
from replay.designs import Design
from replay.errors import ReplayError, need
from replay.event_loop import Cluster
from replay.kv_transfer import KVLinks
from replay.metrics import REQUEST_COLUMNS, reference_alone, span_gaps
from replay.phase import decode_coefficients
from replay.scheduler import SchedulerConfig
from replay.serving import DISAGGREGATED, ServingConfig
from replay.slo import SLO
from replay.spans import span_tables
from replay.states import MIXED, PROMPT, ROLE_NAMES, TOKEN
from replay.summary import ReplaySummary, build_summary, format_summary

TRACE_COLUMNS = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
BLOCK_HASHES = "block_hashes"  # optional trace column (traces.schema), read with prefix caching
BLOCK_TOKENS = "block_tokens"  # its block size, trace.attrs


def _block_hashes(trace: pd.DataFrame) -> tuple[list, int]:
    """(per-request tuple of block hashes, tokens per block) for prefix caching."""
    need(
        BLOCK_HASHES in trace.columns,
        "scheduler.prefix_caching",
        f"the trace has no '{BLOCK_HASHES}' column "
        "(the Mooncake traces have it: mooncake-conversation, mooncake-synthetic)",
    )
    bt = trace.attrs.get(BLOCK_TOKENS)
    need(isinstance(bt, int | np.integer) and not isinstance(bt, bool) and bt > 0,
         "scheduler.prefix_caching",
         f"the trace's attrs['{BLOCK_TOKENS}'] must be a positive integer, got {bt!r}")  # fmt: skip
    hashes = [tuple(h) if h is not None and len(h) else () for h in trace[BLOCK_HASHES]]
    return hashes, int(bt)


@dataclass
class ReplayResult:
    """Outcome of one replay.

    - ``requests``: contract-4 table, one row per trace request (rejected: machines -1, NaN times)
    - ``iterations``: one row per span of identical-batch iterations of a machine (start_s,
      iterations, first_s, increment_s, batch_size, first_excluded, prefill_tokens): the exact
      token-level gaps, per iteration not per token
    - ``request_gaps``: gaps not in a span (a request's first decode gap after its KV transfer,
      and the gap over a recompute after preemption)
    - ``summary``: the :class:`ReplaySummary` (summary.json is ``summary.to_dict()``)
    """

    requests: pd.DataFrame
    iterations: pd.DataFrame
    request_gaps: pd.DataFrame
    summary: ReplaySummary | None
    pool_changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    runtime: dict = field(default_factory=dict, repr=False)  # cpu/wall seconds, not written
    cluster: object = field(default=None, repr=False)  # the engine state, for tests

    def tbt_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, weights) of every token gap (exact token-weighted TBT distribution)."""
        it = self.iterations
        v, w = span_gaps(
            it["first_s"], it["increment_s"], it["iterations"], it["batch_size"],
            it["first_excluded"],
        )  # fmt: skip
        g = self.request_gaps["gap_s"].to_numpy(dtype=float)
        return np.concatenate([v, g]), np.concatenate([w, np.ones_like(g)])

    def format_summary(self) -> str:
        return format_summary(self.summary)

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Write requests.parquet, iterations.parquet, request_gaps.parquet, pool_changes.parquet
        and summary.json (sorted keys) into ``run_dir``, each atomically. Returns the folder."""
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in (
            ("requests", self.requests),
            ("iterations", self.iterations),
            ("request_gaps", self.request_gaps),
            ("pool_changes", self.pool_changes),
        ):
            write_parquet_atomic(df, out / f"{name}.parquet")
        write_json_atomic(out / "summary.json", self.summary.to_dict())
        return out


def _get_pm(phase_models, model: str, gpu: str, tp: int):
    if isinstance(phase_models, Mapping):
        if gpu not in phase_models:
            raise ReplayError(
                f"no phase model for gpu '{gpu}' (have: {', '.join(sorted(phase_models))})"
            )
        return phase_models[gpu]
    try:
        return phase_models.get(model, gpu, tp)
    except (SpecError, KeyError, ValueError) as e:
        raise ReplayError(f"phase model ({model}, {gpu}, tp={tp}): {e}") from None


def _trace_arrays(trace: pd.DataFrame):
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise ReplayError(f"trace: missing column '{missing[0]}'")
    rid = trace["request_id"].to_numpy()
    arr = trace["arrival_s"].to_numpy(dtype=float)
    p = trace["prompt_tokens"].to_numpy()
    o = trace["output_tokens"].to_numpy()
    for name, x in (("prompt_tokens", p), ("output_tokens", o)):
        bad = np.flatnonzero(~(x >= 1))
        if bad.size:
            raise ReplayError(f"trace: row {bad[0] + 1}, column '{name}': must be >= 1")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise ReplayError(f"trace: row {bad[0] + 1}, column 'arrival_s': must be finite and >= 0")
    if arr.size > 1:
        bad = np.flatnonzero(np.diff(arr) < 0)
        if bad.size:
            raise ReplayError(
                f"trace: row {bad[0] + 2}, column 'arrival_s': arrivals must be non-decreasing"
            )
    return (
        rid.tolist(),
        arr.tolist(),
        p.astype(np.int64).tolist(),
        o.astype(np.int64).tolist(),
    )


def _progress_fn(progress, total: int):
    if progress is False or progress is None:
        return None, None
    if callable(progress):
        return progress, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="req", desc="replay")

    def fn(done, total):
        bar.update(done - bar.n)

    return fn, bar


def _reference_pm(phase_models, model: str, reference_gpu: str):
    """The slowdown reference PhaseModel: ``phase_models.reference_model(model)`` when the set
    provides it (the configured reference), else ``reference_gpu`` at TP8 (DGX-A100 TP8)."""
    ref = getattr(phase_models, "reference_model", None)
    if callable(ref):
        try:
            return ref(model)
        except (SpecError, KeyError, ValueError) as e:
            raise ReplayError(f"slowdown reference ({model}): {e}") from None
    return _get_pm(phase_models, model, reference_gpu, 8)


def simulate(
    trace: pd.DataFrame,
    design: Design,
    scheduler: SchedulerConfig | None = None,
    phase_models=None,
    seed: int = 0,
    progress: bool | Callable[[int, int], None] = False,
    slo: SLO | None = None,
    reference_gpu: str = REFERENCE_GPU,
    steady_trim: float = 0.1,
    trace_info: dict | None = None,
    display: dict | None = None,
    serving: ServingConfig | None = None,
) -> ReplayResult:
    """Replay ``trace`` (contract 1) through ``design``; returns a :class:`ReplayResult`.

    ``phase_models``: a PhaseModelSet (``.get(model, gpu, tp)``), a mapping gpu -> PhaseModel,
    or None for ``characterize.modeling.phase_model.load_phase_models("reference")``.
    ``scheduler``: the scheduler options (with ``scheduler.kv_transfer``).
    ``slo``: the SLO judged in the summary (default: the paper's Table VI).
    ``progress``: False, True (a tqdm bar) or ``fn(done_arrivals, total)``.
    ``reference_gpu``: the slowdown reference's profile gpu (TP8) when ``phase_models`` has no
    ``reference_model(model)``.
    ``trace_info``: the trace's prepare() info (its ``context`` counts reach the summary).
    ``seed``: only the ``random`` policy draws random numbers.
    ``serving``: the serving component (:mod:`replay.serving`; None: every term zero).
    Raises :class:`ReplayError` / :class:`DesignError` (one line) before simulating.
    """
    scheduler = scheduler or SchedulerConfig()
    serving = serving or ServingConfig()
    slo = slo or SLO()
    need(isinstance(seed, int | np.integer) and seed >= 0, "seed", f"must be an integer >= 0, got {seed!r}")  # fmt: skip
    design.validate()
    policy = design.machine_policy or scheduler.machine_policy  # every pool's (and role's)
    bs = scheduler.vllm.block_size
    blocks = scheduler.vllm.num_gpu_blocks  # the deployment's KV blocks: overrides the spec's
    disagg = design.is_split and policy == "vllm"  # vLLM's disaggregated serving
    if serving.disaggregated and design.is_split and not disagg:
        k = next(k for k in DISAGGREGATED if getattr(serving, k))
        raise ReplayError(
            f"serving.{k}: the disaggregated serving terms model vLLM's disaggregated serving: "
            f"they need design.machine_policy (or scheduler.machine_policy) vllm on a Splitwise "
            f"design, got '{policy}'"
        )
    if serving.arrival_work_s or serving.arrival_work_s_per_token:
        k = "arrival_work_s" if serving.arrival_work_s else "arrival_work_s_per_token"
        need(policy == "vllm" and not design.is_split, f"serving.{k}",
             "models a co-located vLLM instance's work per arriving request: it needs a "
             f"co-located design with machine_policy vllm, got '{policy}'"
             + (" on a Splitwise design" if design.is_split else ""))  # fmt: skip
    need(not (disagg and scheduler.kv_transfer.uncached_only), "scheduler.kv_transfer.uncached_only",
         "not modelled for vLLM's disaggregated serving (the vllm policy on a Splitwise design: "
         "the decode instance loads a hand-over's whole blocks)")  # fmt: skip
    if phase_models is None:
        from characterize.modeling.phase_model import load_phase_models

        phase_models = load_phase_models("reference")
    model = load_model(design.model)
    wall0 = time.perf_counter()
    cpu0 = time.process_time()

    arrays = _trace_arrays(trace)
    hashes, block_tokens = _block_hashes(trace) if scheduler.prefix_caching else (None, 0)
    pms, machines_cfg, bws, exposed, caps = [], [], [], [], []
    lin_err = 0.0
    coef_cache: dict = {}
    maxb = scheduler.max_batch_size or (1 << 62)
    ov0, ov1 = serving.iteration_s, serving.iteration_s_per_request
    policies = []
    for inst in design.instances():
        spec = load_machine(inst.spec)
        pm = _get_pm(phase_models, design.model, spec.profile_gpu, design.tp)
        key = id(pm)
        if key not in coef_cache:
            coef_cache[key] = decode_coefficients(pm, max_context=model.max_context_tokens)
        a, b, c, q, err = coef_cache[key]
        lin_err = max(lin_err, err)
        if ov0 or ov1:  # the served overhead of a decode step: delta0 + delta1 x B
            a, b = a + ov0, b + ov1
        cap = inst.kv_capacity_tokens if blocks is None else blocks * bs
        if design.is_split:
            role = PROMPT if inst.prompt_pool else TOKEN
        else:
            role = MIXED
        if policy == "vllm":  # whole blocks: a request fits when its blocks do
            cap = cap // bs * bs
        policies.append(policy)
        wm = int(scheduler.kv_watermark_fraction * cap)
        machines_cfg.append((inst.spec, role, (a, b, c, q), pm.prefill_time_sums, cap, wm, maxb))
        pms.append(pm)
        bws.append(inst.network_bytes_per_s)
        exposed.append(spec.kv_exposed_transfer_s)
        caps.append(cap)
    ref_pm = _reference_pm(phase_models, design.model, reference_gpu)
    ref_coef = decode_coefficients(ref_pm, max_context=model.max_context_tokens)

    max_tokens = min(caps)
    if scheduler.enforce_max_context:
        max_tokens = min(max_tokens, model.max_context_tokens)
    links = KVLinks(bws, exposed, model.kv_bytes_per_token, model.num_layers, scheduler.kv_transfer)
    reach = None  # arrivals at the scheduler (replay.serving): the trace's unless delayed
    if (
        serving.arrival_s
        or serving.arrival_s_per_token
        or (disagg and (serving.prefill_leg_s or serving.prefill_leg_s_per_token))
    ):
        reach = [
            t + serving.arrival_delay(p, disagg) for t, p in zip(arrays[1], arrays[2], strict=True)
        ]
    leg = (serving.decode_leg_s, serving.decode_leg_s_per_token) if disagg else (0.0, 0.0)
    cl = Cluster(
        arrays, machines_cfg, links, scheduler, design.is_split, seed, max_tokens,
        design.mixed_pool, hashes, block_tokens, policies, reach, leg,
    )  # fmt: skip
    kv_work = disagg and (serving.kv_load_s or serving.kv_load_s_per_token
                          or serving.kv_save_s or serving.kv_save_s_per_token
                          or serving.decode_work_s or serving.decode_work_s_per_token)  # fmt: skip
    arrival_work = serving.arrival_work_s or serving.arrival_work_s_per_token  # co-located only
    if ov0 or ov1 or kv_work or arrival_work:
        for m in cl.machines:  # prefill iterations' served overhead, the instances' serving work
            m.o0, m.o1, m.ovh = float(ov0), float(ov1), bool(ov0 or ov1)
            if disagg:  # the load on token roles, the save on prompt roles (vllm_policy)
                m.kl0, m.kl1 = float(serving.kv_load_s), float(serving.kv_load_s_per_token)
                m.ks0, m.ks1 = float(serving.kv_save_s), float(serving.kv_save_s_per_token)
                m.dw0, m.dw1 = float(serving.decode_work_s), float(serving.decode_work_s_per_token)
            elif arrival_work:  # each request's arrival is work where it is first admitted
                m.dw0 = float(serving.arrival_work_s)
                m.dw1 = float(serving.arrival_work_s_per_token)
    prog, bar = _progress_fn(progress, cl.n)
    # the event loop makes and drops many small containers but no reference cycles: the cyclic
    # collector is paused while it runs (on the Mooncake benchmark case it ran 5-6 times a
    # replay, once up to 25 ms, traversing the run's growing tables)
    gc_on = gc.isenabled()
    gc.disable()
    # the phase models' once-only hot-path warnings depend on what ran before in the process;
    # the run's own, exact notes (_range_notes) are reported instead: in the summary, and warned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        try:
            cl.run(prog)
        finally:
            if gc_on:
                gc.enable()
            if bar is not None:
                bar.close()
        sim_cpu = time.process_time() - cpu0
        result, ref = _build_result(cl, ref_pm, ref_coef, serving.delivery_s)
    notes = _range_notes(result, pms, scheduler.mixed_batch == "fused", ref_pm, ref_coef)
    result.summary = build_summary(
        requests=result.requests,
        iterations=result.iterations,
        request_gaps=result.request_gaps,
        reference=ref,
        slo=slo,
        trim=steady_trim,
        design=design,
        scheduler=scheduler,
        seed=int(seed),
        end_s=cl.end_time,
        power_models=pms,
        engine={
            "utilization": {
                ROLE_NAMES[r]: (
                    sum(m.pool_busy[r] for m in cl.machines) / t
                    if (t := sum(m.pool_time[r] for m in cl.machines)) > 0
                    else None
                )
                for r in range(3)
            },
            "pool_changes": len(cl.role_changes),
            "decode_linearization_max_rel_error": max(lin_err, ref_coef[4]),
            "max_decode_batch": max((m.max_b for m in cl.machines), default=0),
        },
        trace_info=trace_info,
        display=display,
        prefix_cache=_cache_counts(cl),
        extrapolated=notes,
        serving=None if serving.is_zero else serving.to_dict(),
    )
    if notes:  # one warning per run (a study runs many); every note is in the summary
        more = f" (and {len(notes) - 1} more: summary 'extrapolated')" if len(notes) > 1 else ""
        warnings.warn(notes[0] + more, ExtrapolationWarning, stacklevel=2)
    # runtime numbers vary run to run: kept out of summary.json (byte-identical files)
    result.runtime = {
        "simulate_cpu_s": sim_cpu,
        "total_cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }
    return result


def _range_notes(result, pms, fused: bool, ref_pm, ref_coef) -> list[str]:
    """What the run asked of its phase models beyond their measured range, exactly, from its
    records (``PhaseModel.range_notes``; models without it are not checked), per distinct model
    over the instances it prices: the largest prefill iteration's tokens (with a fused mixed
    batch's decode tokens), the longest prompt that started a prefill (its whole context, cached
    prefix included; recomputes after preemption are not checked), the slowest decode step of a
    decode span, the longest context a request decoded with (prompt + output - 1); and for the
    slowdown reference (each completed request alone): its longest prompt and context. Stable order."""
    it, req = result.iterations, result.requests
    machine = it["machine"].to_numpy()
    pt = it["prefill_tokens"].to_numpy()
    bb = it["batch_size"].to_numpy()
    nn = it["iterations"].to_numpy()
    last = it["first_s"].to_numpy() + it["increment_s"].to_numpy() * (nn - 1)
    p = req["prompt_tokens"].to_numpy(dtype=np.int64)
    ctx = p + req["output_tokens"].to_numpy(dtype=np.int64) - 1
    pm_of = req["prompt_machine"].to_numpy()
    tm_of = req["token_machine"].to_numpy()
    started = req["queue_s"].notna().to_numpy()
    decoded = req["e2e_s"].notna().to_numpy() & (ctx >= p)  # output >= 2: a decode step ran

    def top(x, sel):
        return x[sel].max().item() if sel.any() else 0

    groups: dict[int, tuple] = {}
    for i, pm in enumerate(pms):
        groups.setdefault(id(pm), (pm, []))[1].append(i)
    notes: list[str] = []
    for pm, idx in groups.values():
        check = getattr(pm, "range_notes", None)
        if check is None:
            continue
        on = np.isin(machine, idx)
        pre = on & (pt > 0)
        dec = np.flatnonzero(on & (pt == 0))
        slow = dec[np.argmax(last[dec])] if dec.size else -1  # the first slowest decode span
        found = check(
            int(top(pt + bb if fused else pt, pre)),
            int(top(p, started & np.isin(pm_of, idx))),
            float(last[slow]) if slow >= 0 else 0.0,
            int(top(ctx, decoded & np.isin(tm_of, idx))),
            int(bb[slow]) if slow >= 0 else 0,
        )
        notes += [n for n in found if n not in notes]
    check = getattr(ref_pm, "range_notes", None)
    done = req["e2e_s"].notna().to_numpy()  # the requests whose slowdown is computed
    if check is not None and done.any():
        a, b, c, q = ref_coef[:4]
        longest, prompt = int(ctx[done].max()), int(p[done].max())
        found = check(prompt, prompt, a + b + q + c * longest, longest, 1)
        notes += [f"slowdown reference: {n}" for n in found if n not in notes]
    return notes


def _cache_counts(cl) -> dict | None:
    """The engine's prefix-cache records (None when caching is off) for build_summary."""
    if cl.hashes is None:
        return None
    tot = {}
    for m in cl.machines:
        for k, v in m.pc.stats().items():
            if k not in ("block_tokens", "capacity_blocks"):
                tot[k] = tot.get(k, 0) + v
    return {
        "block_tokens": cl.machines[0].pc.block_tokens,
        "counts": tot,
        "cached_tokens": np.asarray(cl.cached, dtype=np.int64),
        "transfer_saved_tokens": cl.tx_saved,
        "cache_aware_routing": cl.cache_route,
        "transfer_uncached_only": cl.tx_uncached,
    }


def _build_result(cl, ref_pm, ref_coef, delivery_s=0.0) -> tuple[ReplayResult, tuple]:
    """The engine's records as tables (summary still unset), and the reference-alone times.
    ``delivery_s``: the serving component's delivery offset (every token reaches the client
    that much after the engine's output: TTFT and E2E shift, gaps do not)."""
    n = cl.n
    arrival = np.asarray(cl.arrival, dtype=float)
    ptok = np.asarray(cl.ptok, dtype=np.int64)
    otok = np.asarray(cl.otok, dtype=np.int64)
    t_start = np.asarray(cl.t_start, dtype=float)
    t_first = np.asarray(cl.t_first, dtype=float)
    t_done = np.asarray(cl.t_done, dtype=float)
    if delivery_s:
        t_first = t_first + delivery_s
        t_done = t_done + delivery_s
    rejected = np.asarray(cl.rejected, dtype=bool)
    e2e = t_done - arrival
    ttft = t_first - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tbt_mean = np.where(otok > 1, (t_done - t_first) / np.maximum(otok - 1, 1), np.nan)

    iterations, tbt_max = span_tables(cl.machines, n, ROLE_NAMES)
    g_req = np.frombuffer(cl.gap_req, dtype=np.int64) if len(cl.gap_req) else np.zeros(0, int)
    g_val = np.frombuffer(cl.gap_val, dtype=float) if len(cl.gap_val) else np.zeros(0)
    np.maximum.at(tbt_max, g_req, g_val)
    tbt_max = np.where((otok > 1) & ~np.isnan(t_done) & np.isfinite(tbt_max), tbt_max, np.nan)
    rid = np.asarray(cl.rid)
    request_gaps = pd.DataFrame({"request_id": rid[g_req], "gap_s": g_val.copy()})

    requests = pd.DataFrame(
        {
            "request_id": rid,
            "arrival_s": arrival,
            "prompt_tokens": ptok,
            "output_tokens": otok,
            "prompt_machine": np.asarray(cl.pm_of, dtype=np.int64),
            "token_machine": np.asarray(cl.tm_of, dtype=np.int64),
            "queue_s": t_start - arrival,
            "ttft_s": ttft,
            "e2e_s": e2e,
            "kv_transfer_s": np.where(rejected, np.nan, np.asarray(cl.kvx, dtype=float)),
            "tbt_mean_s": tbt_mean,
            "tbt_max_s": tbt_max,
            "preemptions": np.asarray(cl.npre, dtype=np.int64),
        }
    )[REQUEST_COLUMNS]

    ref = reference_alone(ptok, otok, ref_pm, ref_coef[:4])
    pool_changes = pd.DataFrame(
        cl.role_changes or None, columns=["time_s", "machine", "role"]
    ).astype({"time_s": float, "machine": np.int64, "role": np.int64})
    pool_changes["role"] = pd.Categorical.from_codes(pool_changes["role"], ROLE_NAMES)
    result = ReplayResult(requests, iterations, request_gaps, None, pool_changes, cluster=cl)
    return result, ref


__all__ = ["ReplayResult", "simulate"]
