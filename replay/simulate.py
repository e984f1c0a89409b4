"""``simulate(trace, design, ...)``: replay a contract-1 trace through a cluster design.

Wires the pieces: phase models (``characterize.modeling.phase_model``, or any object with ``.get(model,
gpu, tp)``, or a mapping gpu -> PhaseModel), machine specs, the KV transfer model and the
event engine; then turns the engine's records into a :class:`ReplayResult` (contract-4 request
table, per-iteration span table, per-request extra gaps, summary dict).

Energy: every recorded span is busy time at the phase's power (a prefill or mixed iteration at
``prefill_power(prompt tokens)``, a decode span at ``decode_power(batch size)``), the rest of the
run (0 to the last event) at ``idle_power_w``, per machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from characterize.modeling.specs import SpecError, load_machine, load_model
from common.atomic import write_json_atomic, write_parquet_atomic
from common.units import joules_to_kwh
from replay.designs import Design
from replay.engine import MIXED, PROMPT, ROLE_NAMES, TOKEN, Cluster, SchedulerConfig
from replay.errors import ReplayError
from replay.kv_transfer import KVLinks, KVTransferConfig
from replay.metrics import (
    REQUEST_COLUMNS,
    _clean,
    format_summary,
    reference_alone,
    request_summary,
    span_gaps,
)
from replay.phase import decode_coefficients

TRACE_COLUMNS = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")


@dataclass
class ReplayResult:
    """Outcome of one replay.

    - ``requests``: contract-4 table, one row per trace request (rejected: machines -1, NaN times)
    - ``iterations``: one row per span of identical-batch iterations of a machine (start_s,
      iterations, first_s, increment_s, batch_size, first_excluded, prefill_tokens): the exact
      token-level gaps, per iteration not per token
    - ``request_gaps``: gaps not in a span (a request's first decode gap after its KV transfer,
      and the gap over a recompute after preemption)
    - ``summary``: the metrics dict written as summary.json
    """

    requests: pd.DataFrame
    iterations: pd.DataFrame
    request_gaps: pd.DataFrame
    summary: dict
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
        write_json_atomic(out / "summary.json", self.summary)
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


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo:hi+1]) per query (sparse table); lo <= hi required."""
    if lo.size == 0:
        return np.zeros(0)
    table = [values]
    k = 1
    while (1 << k) <= values.size:
        prev = table[-1]
        half = 1 << (k - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))
        k += 1
    length = hi - lo + 1
    lvl = np.floor(np.log2(length)).astype(np.int64)
    out = np.empty(lo.size)
    for j in np.unique(lvl):
        sel = lvl == j
        t = table[j]
        out[sel] = np.maximum(t[lo[sel]], t[hi[sel] - (1 << j) + 1])
    return out


def simulate(
    trace: pd.DataFrame,
    design: Design,
    scheduler: SchedulerConfig | None = None,
    phase_models=None,
    seed: int = 0,
    progress: bool | Callable[[int, int], None] = False,
    kv_transfer: KVTransferConfig | None = None,
    reference_gpu: str = "a100-80gb",
    steady_trim: float = 0.1,
) -> ReplayResult:
    """Replay ``trace`` (contract 1) through ``design``; returns a :class:`ReplayResult`.

    ``phase_models``: a PhaseModelSet (``.get(model, gpu, tp)``), a mapping gpu -> PhaseModel,
    or None for ``characterize.modeling.phase_model.load_phase_models("reference")``.
    ``progress``: False, True (a tqdm bar) or ``fn(done_arrivals, total)``.
    ``reference_gpu``: the profile gpu key of the slowdown reference (DGX-A100 TP8).
    ``seed``: only the ``random`` policy draws random numbers.
    Raises :class:`ReplayError` / :class:`DesignError` (one line) before simulating.
    """
    scheduler = scheduler or SchedulerConfig()
    kv_transfer = kv_transfer or KVTransferConfig()
    scheduler.validate()
    design.validate()
    if phase_models is None:
        from characterize.modeling.phase_model import load_phase_models

        phase_models = load_phase_models("reference")
    model = load_model(design.model)
    wall0 = time.perf_counter()
    cpu0 = time.process_time()

    arrays = _trace_arrays(trace)
    specs = design.machine_specs
    pms, machines_cfg, bws, exposed, caps = [], [], [], [], []
    lin_err = 0.0
    coef_cache: dict = {}
    maxb = scheduler.max_batch_size or (1 << 62)
    for i, spec_name in enumerate(specs):
        spec = load_machine(spec_name)
        pm = _get_pm(phase_models, design.model, spec.profile_gpu, design.tp)
        key = id(pm)
        if key not in coef_cache:
            coef_cache[key] = decode_coefficients(pm, max_context=model.max_context_tokens)
        a, b, c, q, err = coef_cache[key]
        lin_err = max(lin_err, err)
        cap = spec.kv_capacity_tokens(model, design.kv_reserve_fraction)
        if design.is_split:
            role = PROMPT if i < design.prompt_machines else TOKEN
        else:
            role = MIXED
        wm = int(scheduler.kv_watermark_fraction * cap)
        machines_cfg.append((spec_name, role, (a, b, c, q), pm.prefill_time_sums, cap, wm, maxb))
        pms.append(pm)
        bws.append(spec.network_bytes_per_s)
        exposed.append(spec.kv_exposed_transfer_s)
        caps.append(cap)
    if hasattr(phase_models, "reference_model"):  # the set names its slowdown reference
        ref_pm = phase_models.reference_model(design.model)
    else:
        ref_pm = _get_pm(phase_models, design.model, reference_gpu, design.tp)
    ref_coef = decode_coefficients(ref_pm, max_context=model.max_context_tokens)

    max_tokens = min(caps)
    if scheduler.enforce_max_context:
        max_tokens = min(max_tokens, model.max_context_tokens)
    links = KVLinks(bws, exposed, model.kv_bytes_per_token, model.num_layers, kv_transfer)
    cl = Cluster(arrays, machines_cfg, links, scheduler, design.is_split, seed, max_tokens)
    prog, bar = _progress_fn(progress, cl.n)
    try:
        cl.run(prog)
    finally:
        if bar is not None:
            bar.close()
    sim_cpu = time.process_time() - cpu0
    result = _build_result(cl, design, pms, ref_pm, ref_coef, lin_err, steady_trim)
    # runtime numbers vary run to run: kept out of summary.json (byte-identical files)
    result.runtime = {
        "simulate_cpu_s": sim_cpu,
        "total_cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }
    result.summary["scheduler"] = asdict(scheduler)
    result.summary["kv_transfer_config"] = asdict(kv_transfer)
    result.summary["seed"] = seed
    return result


def _build_result(cl, design, pms, ref_pm, ref_coef, lin_err, trim) -> ReplayResult:
    n = cl.n
    arrival = np.asarray(cl.arrival, dtype=float)
    ptok = np.asarray(cl.ptok, dtype=np.int64)
    otok = np.asarray(cl.otok, dtype=np.int64)
    t_start = np.asarray(cl.t_start, dtype=float)
    t_first = np.asarray(cl.t_first, dtype=float)
    t_done = np.asarray(cl.t_done, dtype=float)
    rejected = np.asarray(cl.rejected, dtype=bool)
    e2e = t_done - arrival
    ttft = t_first - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tbt_mean = np.where(otok > 1, (t_done - t_first) / np.maximum(otok - 1, 1), np.nan)

    # spans -> iterations table; per-request max gap from segments (range max over spans)
    it_frames = []
    tbt_max = np.full(n, -np.inf)
    energy = 0.0
    util_busy = [0.0, 0.0, 0.0]
    util_time = [0.0, 0.0, 0.0]
    end = cl.end_time
    for m, pm in zip(cl.machines, pms, strict=True):
        t0 = np.frombuffer(m.sp_t0, dtype=float) if m.nspans else np.zeros(0)
        nn = np.frombuffer(m.sp_n, dtype=np.int64) if m.nspans else np.zeros(0, np.int64)
        d0 = np.frombuffer(m.sp_d0, dtype=float) if m.nspans else np.zeros(0)
        inc = np.frombuffer(m.sp_inc, dtype=float) if m.nspans else np.zeros(0)
        bb = np.frombuffer(m.sp_b, dtype=np.int64) if m.nspans else np.zeros(0, np.int64)
        k0 = np.frombuffer(m.sp_k0, dtype=np.int64) if m.nspans else np.zeros(0, np.int64)
        pt = np.frombuffer(m.sp_ptok, dtype=np.int64) if m.nspans else np.zeros(0, np.int64)
        role = np.frombuffer(m.sp_role, dtype=np.int8) if m.nspans else np.zeros(0, np.int8)
        dur = nn * d0 + inc * nn * (nn - 1) / 2.0
        it_frames.append(
            pd.DataFrame(
                {
                    "machine": np.full(nn.size, m.idx, dtype=np.int64),
                    "role": pd.Categorical.from_codes(role, ROLE_NAMES),
                    "start_s": t0,
                    "iterations": nn,
                    "first_s": d0,
                    "increment_s": inc,
                    "batch_size": bb,
                    "first_excluded": k0,
                    "prefill_tokens": pt,
                }
            )
        )
        # energy (J): busy spans at the phase power, the rest idle
        e = 0.0
        is_pre = pt > 0
        for tok in np.unique(pt[is_pre]):
            e += pm.prefill_power(int(tok)) * float(dur[is_pre & (pt == tok)].sum())
        for b in np.unique(bb[~is_pre]):
            e += pm.decode_power(int(b)) * float(dur[~is_pre & (bb == b)].sum())
        e += pm.idle_power_w * max(end - float(dur.sum()), 0.0)
        energy += e
        for r in range(3):
            util_busy[r] += m.pool_busy[r]
            util_time[r] += m.pool_time[r]
        # max gap per request segment
        if len(m.sg_req):
            smax = np.maximum(d0, d0 + np.maximum(nn - 1, 0) * inc)
            req = np.frombuffer(m.sg_req, dtype=np.int64)
            s0 = np.frombuffer(m.sg_s0, dtype=np.int64)
            s1 = np.frombuffer(m.sg_s1, dtype=np.int64)
            ok = s1 >= s0
            np.maximum.at(tbt_max, req[ok], _range_max(smax, s0[ok], s1[ok]))
    iterations = pd.concat(it_frames, ignore_index=True) if it_frames else pd.DataFrame()
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

    ref = reference_alone(ptok, otok, ref_pm.prefill_time_sums, ref_coef[:4])
    it_tab = iterations
    gv, gw = span_gaps(
        it_tab["first_s"], it_tab["increment_s"], it_tab["iterations"], it_tab["batch_size"],
        it_tab["first_excluded"],
    )  # fmt: skip
    gaps = (np.concatenate([gv, g_val]), np.concatenate([gw, np.ones_like(g_val)]))
    summary = request_summary(requests, ref, gaps, trim)
    summary["design"] = design.describe()
    summary["cost_per_hour"] = design.cost_per_hour
    summary["provisioned_power_w"] = design.provisioned_power_w
    summary["duration_s"] = end
    summary["energy_j"] = energy
    summary["energy_kwh"] = joules_to_kwh(energy)
    summary["mean_power_w"] = energy / end if end > 0 else None
    summary["energy_model"] = (
        "busy spans at prefill_power(prompt tokens) or decode_power(batch), idle_power_w otherwise"
    )
    summary["utilization"] = {
        ROLE_NAMES[r]: (util_busy[r] / util_time[r] if util_time[r] > 0 else None) for r in range(3)
    }
    summary["pool_changes"] = len(cl.role_changes)
    summary["decode_linearization_max_rel_error"] = max(lin_err, ref_coef[4])
    summary["max_decode_batch"] = max((m.max_b for m in cl.machines), default=0)
    pool_changes = pd.DataFrame(
        cl.role_changes or None, columns=["time_s", "machine", "role"]
    ).astype({"time_s": float, "machine": np.int64, "role": np.int64})
    pool_changes["role"] = pd.Categorical.from_codes(pool_changes["role"], ROLE_NAMES)
    return ReplayResult(
        requests, iterations, request_gaps, _clean(summary), pool_changes, cluster=cl
    )


__all__ = ["ReplayResult", "simulate"]
