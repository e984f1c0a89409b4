"""Simulated against real: percentiles, throughput, relative errors and CDF overlays.

Works on any two contract-4 run directories (``requests.parquet`` in each):
- a simulator run (``splitbench-replay``): token gaps from ``iterations.parquet`` and
  ``request_gaps.parquet`` (exact token-weighted TBT);
- a load-generator run (``splitbench-loadgen``): token gaps from ``tokens.parquet`` (column
  ``token_times_s``, a list per request);
- otherwise each request's mean TBT weighted by its gap count stands in (said in the table).

Both sides go through the one metric code (:func:`replay.metrics.request_summary`): TTFT, E2E,
token-weighted TBT (P50/P90/P99) and steady-state throughput (the same trim).

Relative error = (sim - real) / real, where real is the mean over the real repeats. Noise: the
real repeats' spread, ``max |real_i - mean| / mean`` (half-range, relative) and the coefficient
of variation; an error whose size is within the noise is marked ``within_noise`` (it cannot be
claimed as an error, nor as agreement beyond that level). Targets (issue 12): 10% for P50, P90
and throughput; 15% for P99.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import ExperimentError

METRICS = ("ttft_s", "tbt_s", "e2e_s")
STATS = ("p50", "p90", "p99")
TARGETS = {"p50": 0.10, "p90": 0.10, "p99": 0.15, "value": 0.10}


@dataclass
class RunData:
    """One run's request table, token-gap sample (values, weights) and its source kind."""

    path: Path
    requests: pd.DataFrame
    gaps: tuple[np.ndarray, np.ndarray]
    kind: str  # "sim" | "real" | "records"
    tbt_exact: bool

    def samples(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        done = ~self.requests["e2e_s"].isna().to_numpy()
        t = self.requests["ttft_s"].to_numpy(dtype=float)[done]
        e = self.requests["e2e_s"].to_numpy(dtype=float)[done]
        return {
            "ttft_s": (t, np.ones_like(t)),
            "e2e_s": (e, np.ones_like(e)),
            "tbt_s": self.gaps,
        }


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{path}: not a readable Parquet file ({e})") from None


def _first_token_from_decode(req: pd.DataFrame, rg: pd.DataFrame):
    """(requests with TTFT moved to the decode side, the remaining request gaps).

    A real disaggregated deployment streams every token from the decode instance (the prefill
    instance's one token goes nowhere), so the client's first token comes after the KV hand-over
    and the decode instance's first step. The simulator's first token is the prompt machine's;
    its first decode gap after the transfer is exactly that hand-over plus step. Adding it to the
    TTFT (and dropping it from the gaps) puts sim and real on the same definition."""
    rg = rg.reset_index(drop=True)
    first = rg.groupby("request_id", sort=False).head(1)
    shift = pd.Series(first["gap_s"].to_numpy(dtype=float), index=first["request_id"].to_numpy())
    req = req.copy()
    add = req["request_id"].map(shift).fillna(0.0).to_numpy(dtype=float)
    req["ttft_s"] = req["ttft_s"].to_numpy(dtype=float) + add
    return req, rg.drop(index=first.index)


def load_run(path: str | Path, first_token: str = "prompt") -> RunData:
    """Read a run directory (sim or real, see the module doc). ``first_token="decode"``: a
    simulated split run's TTFT is taken where a real disaggregated deployment's client sees it
    (:func:`_first_token_from_decode`); real runs are unchanged."""
    if first_token not in ("prompt", "decode"):
        raise ExperimentError(f"first_token: must be prompt or decode, got {first_token!r}")
    from replay.metrics import REQUEST_COLUMNS, span_gaps

    path = Path(path)
    f = path / "requests.parquet"
    if not f.is_file():
        raise ExperimentError(f"{path}: no requests.parquet (not a replay or load-generator run)")
    req = read_parquet(f)
    missing = [c for c in REQUEST_COLUMNS if c not in req.columns]
    if missing:
        raise ExperimentError(f"{f}: missing contract-4 column(s) {', '.join(missing)}")
    done_ids = set(req.loc[~req["e2e_s"].isna(), "request_id"].tolist())
    if (path / "iterations.parquet").is_file() and (path / "request_gaps.parquet").is_file():
        it = read_parquet(path / "iterations.parquet")
        rg = read_parquet(path / "request_gaps.parquet")
        if first_token == "decode":
            req, rg = _first_token_from_decode(req, rg)
        v, w = span_gaps(
            it["first_s"], it["increment_s"], it["iterations"], it["batch_size"],
            it["first_excluded"],
        )  # fmt: skip
        g = rg["gap_s"].to_numpy(dtype=float)
        return RunData(
            path, req, (np.concatenate([v, g]), np.concatenate([w, np.ones_like(g)])), "sim", True
        )
    if (path / "tokens.parquet").is_file():
        tok = read_parquet(path / "tokens.parquet")
        if "token_times_s" not in tok.columns or "request_id" not in tok.columns:
            raise ExperimentError(
                f"{path / 'tokens.parquet'}: needs columns request_id, token_times_s"
            )
        parts = [
            np.diff(np.asarray(t, dtype=float))
            for rid, t in zip(tok["request_id"], tok["token_times_s"], strict=True)
            if rid in done_ids
        ]
        g = np.concatenate(parts) if parts else np.zeros(0)
        return RunData(path, req, (g, np.ones_like(g)), "real", True)
    done = ~req["e2e_s"].isna().to_numpy()
    m = req["tbt_mean_s"].to_numpy(dtype=float)[done]
    n = np.maximum(req["output_tokens"].to_numpy(dtype=float)[done] - 1, 0)
    return RunData(path, req, (m, n), "records", False)


def run_metrics(run: RunData, trim: float = 0.1) -> dict:
    """{'ttft_s': {p50,p90,p99,mean}, 'tbt_s': .., 'e2e_s': .., 'throughput_rps': x,
    'completed': n} through replay.metrics.request_summary."""
    from replay.metrics import REQUEST_COLUMNS, request_summary

    c4 = run.requests[REQUEST_COLUMNS].copy()
    c4["preemptions"] = pd.to_numeric(c4["preemptions"], errors="coerce").fillna(0).astype("int64")
    s = request_summary(c4, reference=None, gaps=run.gaps, trim=trim)
    out = {m: {k: _f(s[m].get(k)) for k in (*STATS, "mean")} for m in METRICS}
    out["throughput_rps"] = _f(s.get("throughput_rps"))
    out["completed"] = int(s["requests"]["completed"])
    out["total"] = int(s["requests"]["total"])
    return out


def _f(x) -> float:
    return math.nan if x is None else float(x)


def compare_runs(
    sim: str | Path | RunData,
    reals: list[str | Path | RunData],
    *,
    design: str = "",
    load: str = "",
    trim: float = 0.1,
) -> pd.DataFrame:
    """The error table of one simulated run against one or more real repeats.

    Columns: design, load, metric, stat, sim, real (mean of repeats), real_min, real_max,
    repeats, rel_error, abs_rel_error, noise (relative half-range), noise_cv, target, within_target,
    within_noise, tbt_exact."""
    if not reals:
        raise ExperimentError("compare: no real run to compare with")
    s_run = sim if isinstance(sim, RunData) else load_run(sim)
    r_runs = [r if isinstance(r, RunData) else load_run(r) for r in reals]
    sm = run_metrics(s_run, trim)
    rm = [run_metrics(r, trim) for r in r_runs]
    rows = []
    keys = [(m, q) for m in METRICS for q in STATS] + [("throughput_rps", "value")]
    for m, q in keys:
        sv = sm[m] if q == "value" else sm[m][q]
        rv = np.array([(r[m] if q == "value" else r[m][q]) for r in rm], dtype=float)
        mean = float(np.nanmean(rv)) if np.isfinite(rv).any() else math.nan
        rel = (sv - mean) / mean if mean and math.isfinite(mean) else math.nan
        if len(rv) > 1 and mean:
            noise = float(np.nanmax(np.abs(rv - mean)) / abs(mean))
            cv = float(np.nanstd(rv, ddof=1) / abs(mean))
        else:
            noise = cv = math.nan
        tgt = TARGETS[q]
        rows.append(
            {
                "design": design,
                "load": load,
                "metric": m,
                "stat": q,
                "sim": sv,
                "real": mean,
                "real_min": float(np.nanmin(rv)) if np.isfinite(rv).any() else math.nan,
                "real_max": float(np.nanmax(rv)) if np.isfinite(rv).any() else math.nan,
                "repeats": len(rv),
                "rel_error": rel,
                "abs_rel_error": abs(rel) if math.isfinite(rel) else math.nan,
                "noise": noise,
                "noise_cv": cv,
                "target": tgt,
                "within_target": bool(math.isfinite(rel) and abs(rel) <= tgt),
                "within_noise": bool(
                    math.isfinite(rel) and math.isfinite(noise) and abs(rel) <= noise
                ),  # fmt: skip
                "tbt_exact": bool(s_run.tbt_exact and all(r.tbt_exact for r in r_runs)),
            }
        )
    return pd.DataFrame(rows)


def cdf_points(values, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, cumulative weight fraction) of a weighted sample (NaN dropped)."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    keep = ~np.isnan(v)
    v, w = v[keep], w[keep]
    if v.size == 0:
        return np.zeros(0), np.zeros(0)
    uniq, inv = np.unique(v, return_inverse=True)
    ws = np.maximum(np.bincount(inv, weights=w, minlength=uniq.size), 0.0)
    cum = np.cumsum(ws)
    return uniq, cum / cum[-1] if cum[-1] > 0 else cum


def plot_cdfs(sim: RunData, reals: list[RunData], path: str | Path, title: str = "") -> Path:
    """TTFT, TBT and E2E CDFs in one figure: simulator dashed, each real repeat solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.atomic import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = {"ttft_s": "TTFT (s)", "tbt_s": "TBT (s, token-weighted)", "e2e_s": "E2E (s)"}
    s_samp = sim.samples()
    for ax, m in zip(axes, METRICS, strict=True):
        for i, r in enumerate(reals):
            x, y = cdf_points(*r.samples()[m])
            ax.step(x, y, where="post", color="C0", lw=1.2, alpha=0.8,
                    label="real" if i == 0 else None)  # fmt: skip
        x, y = cdf_points(*s_samp[m])
        ax.step(x, y, where="post", color="C3", ls="--", lw=1.5, label="sim")
        ax.set_xlabel(labels[m])
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("CDF")
    axes[0].legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def format_table(df: pd.DataFrame) -> str:
    """A markdown table of the error table (one row per design, load, metric, stat)."""
    head = "| design | load | metric | stat | sim | real | rel. error | noise | target |"
    lines = [head, "|" + "---|" * 9]
    for r in df.itertuples(index=False):
        lines.append(
            f"| {r.design} | {r.load} | {r.metric} | {r.stat} | {r.sim:.4g} | {r.real:.4g} | "
            f"{r.rel_error:+.1%} | {'' if math.isnan(r.noise) else f'{r.noise:.1%}'} | "
            f"{'ok' if r.within_target else 'MISSED'} ({r.target:.0%}) |"
        )
    return "\n".join(lines)
