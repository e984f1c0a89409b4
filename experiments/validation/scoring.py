"""From run folders to the judge's tables: ``errors.csv`` and ``capacity.csv`` of one design.

Pairing: a simulated request and a real one are the same trace request (same id). For every
real repeat, each request completed on both sides is one pair; the bootstrap resamples pairs.
Samples per request: TTFT and E2E (one value each); TBT: every gap of the request. Real gaps
are the client's token times (``tokens.parquet``). Simulated gaps are rebuilt per request from
the run's iterations (``iterations.parquet``: the request's first token, then every iteration end
of its token machine up to its last token; :func:`_sim_samples`), exact where their count is the
request's; elsewhere (a run without iterations) its explicit gaps (``request_gaps.parquet``)
plus the rest at their mean (``tbt_mean_s``). Until 7 Dec 2026 every simulated request took that
mean, which flattened the simulated TBT distribution (P50 up, P90 down; see
results/reference/validation/NOTES.md). The split design's first token is taken at the decode
instance on both sides.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.validation import judge
from experiments.validation.compare import load_run, run_metrics


def _real_samples(path: Path) -> dict[int, dict[str, np.ndarray]]:
    run = load_run(path)
    req = run.requests
    tok = pd.read_parquet(path / "tokens.parquet")
    times = dict(zip(tok["request_id"], tok["token_times_s"], strict=True))
    out = {}
    for r in req.itertuples(index=False):
        if not np.isfinite(r.e2e_s):
            continue
        t = np.asarray(times.get(r.request_id, []), dtype=float)
        out[int(r.request_id)] = {"ttft": np.array([r.ttft_s]), "e2e": np.array([r.e2e_s]),
                                  "tbt": np.diff(t) if t.size > 1 else np.zeros(0)}  # fmt: skip
    return out


# a simulated token time and an iteration end are the same sum in a different order: equal
# within this (s); iterations last milliseconds
_TIME_TOL_S = 1e-7


def iteration_ends(path: Path) -> dict[int, np.ndarray] | None:
    """machine -> the sorted end times (s) of every iteration it ran (``iterations.parquet``'s
    spans: iteration k of a span lasts ``first_s + k * increment_s``, back to back from
    ``start_s``); None without the file or its columns."""
    f = Path(path) / "iterations.parquet"
    if not f.is_file():
        return None
    it = pd.read_parquet(f)
    if not {"machine", "start_s", "iterations", "first_s", "increment_s"} <= set(it.columns):
        return None
    it = it[it["iterations"] > 0]
    n = it["iterations"].to_numpy(dtype=np.int64)
    span = np.repeat(np.arange(n.size), n)
    k = np.arange(int(n.sum())) - (np.cumsum(n) - n)[span]
    dur = it["first_s"].to_numpy(dtype=float)[span] + k * it["increment_s"].to_numpy(dtype=float)[span]
    csum = np.cumsum(dur)
    before = (csum - dur)[(np.cumsum(n) - n)]  # the running sum at each span's first iteration
    ends = it["start_s"].to_numpy(dtype=float)[span] + csum - before[span]
    mach = it["machine"].to_numpy(dtype=np.int64)[span]
    return {int(m): np.sort(ends[mach == m]) for m in np.unique(mach)}


def _sim_samples(path: Path, first_token: str) -> dict[int, dict[str, np.ndarray]]:
    """request id -> its TTFT, E2E and TBT gaps in a simulated run. The gaps are exact where
    the run has its iterations: the request's token times are its first token and every
    iteration end of its token machine up to its last token (a running request gets a token in
    every iteration, as in vLLM's scheduler), used when their count is the request's (else, as
    for a run without iterations: its explicit gaps and the rest at their mean)."""
    run = load_run(path, first_token=first_token)
    rg = pd.read_parquet(path / "request_gaps.parquet") if (path / "request_gaps.parquet").is_file() \
        else pd.DataFrame({"request_id": [], "gap_s": []})  # fmt: skip
    explicit = {int(k): g["gap_s"].to_numpy(dtype=float) for k, g in rg.groupby("request_id")}
    ends = iteration_ends(path)
    out = {}
    for r in run.requests.itertuples(index=False):
        if not np.isfinite(r.e2e_s):
            continue
        n = max(int(r.output_tokens) - 1, 0)
        ex = explicit.get(int(r.request_id), np.zeros(0))
        total = float(r.tbt_mean_s) * n if n and np.isfinite(r.tbt_mean_s) else 0.0
        if first_token == "decode" and ex.size:  # the first gap moved into the TTFT
            total -= ex[0]
            ex = ex[1:]
            n -= 1
        gaps = None
        if ends is not None and int(r.token_machine) in ends:
            e = ends[int(r.token_machine)]
            t1, tn = float(r.arrival_s + r.ttft_s), float(r.arrival_s + r.e2e_s)
            lo = np.searchsorted(e, t1 + _TIME_TOL_S, side="right")
            hi = np.searchsorted(e, tn + _TIME_TOL_S, side="right")
            if hi - lo == n and (n == 0 or abs(e[hi - 1] - tn) <= _TIME_TOL_S):
                gaps = np.diff(np.concatenate([[t1], e[lo:hi]]))
        if gaps is None:
            rest = n - ex.size
            mean_rest = (total - ex.sum()) / rest if rest > 0 else 0.0
            gaps = np.concatenate([ex, np.full(max(rest, 0), mean_rest)])
        out[int(r.request_id)] = {"ttft": np.array([r.ttft_s]), "e2e": np.array([r.e2e_s]),
                                  "tbt": gaps}  # fmt: skip
    return out


def paired_samples(sim_dir: Path, real_dirs: list[Path], first_token: str) -> dict:
    """metric -> (sim per pair, real per pair) over every repeat's requests done on both sides."""
    sim = _sim_samples(Path(sim_dir), first_token)
    pairs: dict[str, tuple[list, list]] = {m: ([], []) for m in ("ttft", "tbt", "e2e")}
    for d in real_dirs:
        real = _real_samples(Path(d))
        for rid in sorted(set(sim) & set(real)):
            for m, (s, r) in pairs.items():
                s.append(sim[rid][m])
                r.append(real[rid][m])
    return pairs


def _slo_ratio(part: list[dict], side: str, slo) -> float:
    """:func:`judge.slo_ratio` of one load's error rows, on its ``side`` ('sim' or 'real')."""
    get = {(r["metric"], r["stat"]): r[side] for r in part}
    return judge.slo_ratio(get[("ttft", "p90")], get[("tbt", "p90")], slo.ttft_p90_s,
                           slo.tbt_p90_s)  # fmt: skip


def design_tables(
    c, design: str, loads, sim_dirs: dict, real_dirs: dict, trace_csv: dict, pred: dict | None,
    same_runs: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(errors, capacity) tables of one design (:data:`judge.ERROR_COLUMNS`,
    :data:`judge.CAPACITY_COLUMNS`). The simulated capacity and R*: the prediction's (a long
    overload run, bisection), or with ``same_runs`` (each rung simulated at the speed its
    sentinel measured) the real side's estimators on the simulated runs of the same rungs
    (completions/s of the overload rung; R* interpolated between the bracketing rungs). The
    rungs' ``rate_fraction`` is of the predicted R* either way (the ladder's labels)."""
    cc = c.compare
    first = "decode" if design == "splitwise" else "prompt"
    cap_sim = (pred or {}).get("capacity_rps", math.nan)
    rstar_sim = (pred or {}).get("rstar_rps", math.nan)
    rows, p90, p90_sim, rs_samples = [], [], [], []
    for ld in loads:
        if ld.name not in sim_dirs or not real_dirs.get(ld.name):
            continue
        arr = pd.read_csv(trace_csv[ld.name])["arrival_s"]
        offered = judge.realized_rate(arr)
        samples = paired_samples(sim_dirs[ld.name], real_dirs[ld.name], first)
        sm = run_metrics(load_run(sim_dirs[ld.name], first_token=first), cc.trim)
        rm = [run_metrics(load_run(p), cc.trim) for p in real_dirs[ld.name]]
        thr = (sm["throughput_rps"], float(np.nanmean([m["throughput_rps"] for m in rm])))
        sat = bool(math.isfinite(cap_sim) and offered >= cap_sim)
        part = judge.error_rows(
            design, ld.name, offered, rstar_sim, samples, held_out=ld.trace not in cc.fit_traces,
            p99_min_requests=cc.p99_min_requests, resamples=cc.bootstrap,
            confidence=cc.confidence, seed=cc.seed, throughput=thr, saturated=sat,
        )  # fmt: skip
        rows += part
        if ld.trace == c.ladder.rstar_trace and not ld.name.endswith("-sentinel"):
            p90.append((offered, _slo_ratio(part, "real", c.ladder.slo)))
            rs_samples.append((offered, samples["ttft"][1], samples["tbt"][1]))
            p90_sim.append((offered, _slo_ratio(part, "sim", c.ladder.slo)))
    errors = pd.DataFrame(rows, columns=judge.ERROR_COLUMNS)
    cap_real = {"value": math.nan}
    over = [ld for ld in loads if ld.name.endswith("C") and real_dirs.get(ld.name)]
    if over:
        vals = []
        for p in real_dirs[over[0].name]:
            req = load_run(p).requests
            vals.append(judge.capacity_rps(req["arrival_s"], req["e2e_s"], cc.trim, cc.confidence))
        cap_real = {k: float(np.nanmean([v[k] for v in vals])) for k in ("value", "ci_low",
                                                                        "ci_high")}  # fmt: skip
    rs = judge.rstar_interpolated(*zip(*p90, strict=True)) if p90 else {"value": math.nan}
    if math.isfinite(rs["value"]):  # its bootstrap interval (the rungs' requests resampled)
        rs.update(judge.rstar_interval(rs_samples, c.ladder.slo.ttft_p90_s,
                                       c.ladder.slo.tbt_p90_s, cc.bootstrap, cc.confidence,
                                       judge.stream_seed(cc.seed, design, "rstar")))  # fmt: skip
    rstar_cap, sim_bound = rstar_sim, None
    if same_runs:
        cap_sim = math.nan
        if over and over[0].name in sim_dirs:
            req = load_run(sim_dirs[over[0].name], first_token=first).requests
            cap_sim = judge.capacity_rps(req["arrival_s"], req["e2e_s"], cc.trim,
                                         cc.confidence)["value"]  # fmt: skip
        sim_bound = judge.rstar_interpolated(*zip(*p90_sim, strict=True)) if p90_sim else None
        rstar_cap = sim_bound["value"] if sim_bound else math.nan
    capacity = pd.DataFrame(
        judge.capacity_rows(design, {"sim": cap_sim, "real": cap_real},
                            {"sim": rstar_cap, "real": rs, "sim_bound": sim_bound}),
        columns=judge.CAPACITY_COLUMNS,
    )  # fmt: skip
    return errors, capacity
