"""The report's error tables: the repeats' errors (summary.csv, repeat_errors.csv, noise.png, where
the error comes from) and the judge's (errors.csv with paired bootstrap intervals, capacity.csv)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path

SUMMARY_STATS = [("ttft_s", "p50"), ("ttft_s", "p90"), ("tbt_s", "p50"), ("tbt_s", "p90"),
                 ("e2e_s", "p50"), ("e2e_s", "p90"), ("throughput_rps", "value")]  # fmt: skip


def summary_table(errors: pd.DataFrame) -> pd.DataFrame:
    """One row per design and load: the relative errors of SUMMARY_STATS and the largest noise."""
    rows = []
    for (design, load), g in errors.groupby(["design", "load"], sort=False):
        row = {"design": design, "load": load}
        noise = []
        for m, q in SUMMARY_STATS:
            hit = g[(g["metric"] == m) & (g["stat"] == q)]
            key = "throughput" if m == "throughput_rps" else f"{m[:-2]}_{q}"
            row[f"{key}_err"] = float(hit["rel_error"].iloc[0]) if len(hit) else math.nan
            if len(hit):
                noise.append(float(hit["noise"].iloc[0]))
        row["noise_max"] = float(np.nanmax(noise)) if np.isfinite(noise).any() else math.nan
        sel = g[g["stat"] != "p99"]
        row["targets_met"] = f"{int(sel['within_target'].sum())}/{len(sel)}"
        p99 = g[g["stat"] == "p99"]
        row["p99_met"] = f"{int(p99['within_target'].sum())}/{len(p99)}"
        rows.append(row)
    return pd.DataFrame(rows)


def pct(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:+.0%}"


def summary_markdown(s: pd.DataFrame) -> str:
    head = ("| design | load | TTFT P50 / P90 | TBT P50 / P90 | E2E P50 / P90 | throughput | "
            "noise (max) | P50/P90/thr. met | P99 met |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in s.itertuples(index=False):
        lines.append(
            f"| {r.design} | {r.load} | {pct(r.ttft_p50_err)} / {pct(r.ttft_p90_err)} | "
            f"{pct(r.tbt_p50_err)} / {pct(r.tbt_p90_err)} | {pct(r.e2e_p50_err)} / "
            f"{pct(r.e2e_p90_err)} | {pct(r.throughput_err)} | "
            f"{'' if not math.isfinite(r.noise_max) else f'{r.noise_max:.0%}'} | "
            f"{r.targets_met} | {r.p99_met} |"
        )
    return "\n".join(lines)


def plot_noise(errors: pd.DataFrame, path: Path) -> Path:
    """|relative error| (bars) beside the run-to-run noise (black ticks), per design x load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(errors.groupby(["design", "load"], sort=False))
    n = len(groups)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.6), squeeze=False)
    for ax, ((design, load), g) in zip(axes[:, 0], groups, strict=True):
        labels = [f"{m.replace('_s', '').replace('_rps', '')} {q}" for m, q in
                  zip(g["metric"], g["stat"], strict=True)]  # fmt: skip
        x = np.arange(len(g))
        err = g["abs_rel_error"].to_numpy(dtype=float)
        ax.bar(x, err, color=["C2" if ok else "C3" for ok in g["within_target"]], alpha=0.8)
        ax.scatter(x, g["noise"].to_numpy(dtype=float), marker="_", s=300, color="k", zorder=3,
                   label="noise (real half-range)")  # fmt: skip
        ax.step(np.r_[x - 0.5, x[-1] + 0.5], np.r_[g["target"].to_numpy(dtype=float),
                g["target"].iloc[-1]], where="post", color="0.4", ls=":", lw=1,
                label="target")  # fmt: skip
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("|sim-real|/real", fontsize=7)
        ax.set_title(f"{design}, {load}", fontsize=8)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def repeat_sections(c, steps, df: pd.DataFrame, traces: pd.DataFrame, dec: dict,
                    figs: list) -> list[str]:  # fmt: skip
    """The repeats' errors: the summary and its targets, where the error comes from, the gap
    per component, the figures and every error."""
    from experiments.validation.compare import format_table
    from experiments.validation.report.serving_sections import gap_breakdown

    summ = summary_table(df)
    sel = df[df["stat"] != "p99"]
    p99 = df[df["stat"] == "p99"]
    L = ["## Summary: relative error (sim - real) / real", "", summary_markdown(summ), "",
         f"Targets (<= 10% P50/P90 and throughput): {int(sel['within_target'].sum())} of "
         f"{len(sel)} met; P99 (<= 15%): {int(p99['within_target'].sum())} of {len(p99)}; "
         f"errors within the run-to-run noise (cannot be claimed either way): "
         f"{int(df['within_noise'].sum())} of {len(df)}.", ""]  # fmt: skip
    L += attribution(df, dec)
    L += gap_breakdown(df, c, steps, traces)
    L += ["## Figures", "", "![noise](noise.png)", ""]
    L += [f"![{n}]({n})" for n, _ in figs] + [""]
    L += ["## Every error", "", format_table(df), ""]
    return L


def attribution(df: pd.DataFrame, dec: dict) -> list[str]:
    """What the numbers say, without a cause no control measured: TBT at the lightest load
    beside the profile's decode step, the errors at the lightest and the heaviest load, split
    minus co-located TTFT error."""
    L = ["## The errors at a glance (computed from the table; no cause is claimed here)", ""]

    def get(design, load, m, q, col="rel_error"):
        h = df[(df.design == design) & (df.load == load) & (df.metric == m) & (df.stat == q)]
        return float(h[col].iloc[0]) if len(h) else math.nan

    for design in df["design"].unique():
        lds = list(df[df.design == design]["load"].unique())
        light, heavy = lds[0], lds[-1]
        real_tbt = get(design, light, "tbt_s", "p50", "real")
        if dec and math.isfinite(real_tbt):
            b1 = dec[min(dec)]
            L.append(f"- {design}: real TBT P50 at {light} is {real_tbt * 1e3:.1f} ms; the "
                     f"profile's fastest batch-{min(dec)} decode iteration is {b1:.1f} ms.")  # fmt: skip
        for m in ("ttft_s", "e2e_s"):
            a, b = get(design, light, m, "p50"), get(design, heavy, m, "p50")
            L.append(f"- {design}: {m[:-2].upper()} P50 error {pct(a)} at {light}, {pct(b)} "
                     f"at {heavy}.")  # fmt: skip
    if {"baseline", "splitwise"} <= set(df["design"]):
        common = [ld for ld in df[df.design == "splitwise"]["load"].unique()
                  if ld in set(df[df.design == "baseline"]["load"])]  # fmt: skip
        if common:
            d = [get("splitwise", ld, "ttft_s", "p50") - get("baseline", ld, "ttft_s", "p50")
                 for ld in common]  # fmt: skip
            L.append(f"- splitwise minus baseline TTFT P50 error, mean over loads of the same "
                     f"name: {pct(float(np.nanmean(d)))} (not a control: a ladder's rates "
                     "differ by design, and so do the designs' processes per core).")  # fmt: skip
    return [*L, ""]


def replay_records(c, steps, loads, file: str):
    """(design, load, repeat, the JSON of ``file``) of every real run that wrote it."""
    for design in c.designs:
        for ld in loads:
            for r in range(int(c.repeats)):
                p = steps.path(f"replay-{design}-{ld.name}-r{r}") / file
                if p.is_file():
                    yield design, ld, r, json.loads(p.read_text())


def contention_rows(c, steps, loads) -> list[dict]:
    """Per design, load and server: the engine's CPU run delay (time runnable but waiting for a
    core, ``/proc/<pid>/schedstat``) as a share of the run's wall time, for the process that did
    the most CPU work (the compute worker) and for the server's other processes together."""
    rows = []
    for design, ld, r, rec in replay_records(c, steps, loads, "records.json"):
        rd = rec.get("run_delay") or {}
        wall = float(rd.get("wall_s") or math.nan)
        for server, s in (rd.get("servers") or {}).items():
            procs = sorted(s.get("processes") or [], key=lambda x: -x.get("cpu_s", 0))
            if not procs or not wall > 0:
                continue
            w, rest = procs[0], procs[1:]
            rows.append({"design": design, "load": ld.name, "repeat": r,
                         "server": server, "wall_s": wall,
                         "worker_cpu_share": w["cpu_s"] / wall,
                         "worker_run_delay_share": w["run_delay_s"] / wall,
                         "others_cpu_share": sum(x["cpu_s"] for x in rest) / wall,
                         "load1_after": (rec.get("loadavg") or {}).get("after", {})
                         .get("load1")})  # fmt: skip
    return rows


def contention_section(c, steps, loads) -> list[str]:
    """The measured CPU contention of every real run (contention.csv's rows)."""
    rows = contention_rows(c, steps, loads)
    if not rows:
        return []
    L = ["## CPU contention of the real runs (measured, contention.csv)", "",
         "Per server: the share of the run's wall time its busiest process (the compute worker) "
         "ran on a CPU and waited runnable for one (schedstat run delay), and the CPU share of "
         "its other processes (API server, engine core); the machine's 1-minute load after the "
         "run. The simulator's phase model was measured with the worker alone on its core: a "
         "worker waiting for its core is time the simulator does not hold.", "",
         "| design | load | server | worker on CPU | worker waiting | others on CPU | load |",
         "|" + "---|" * 7]  # fmt: skip
    for r in rows:
        L.append(f"| {r['design']} | {r['load']} | {r['server']} | "
                 f"{r['worker_cpu_share']:.0%} | {r['worker_run_delay_share']:.0%} | "
                 f"{r['others_cpu_share']:.0%} | {r['load1_after']} |")  # fmt: skip
    return [*L, ""]


def judged_tables(c, steps) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(errors.csv, capacity.csv): the ``judge-<design>`` steps' tables, concatenated."""
    judged = [pd.read_csv(steps.path(f"judge-{d}") / "errors.csv") for d in c.designs
              if f"judge-{d}" in steps.results]  # fmt: skip
    capac = [pd.read_csv(steps.path(f"judge-{d}") / "capacity.csv") for d in c.designs
             if f"judge-{d}" in steps.results]  # fmt: skip
    jerr = pd.concat(judged, ignore_index=True) if judged else None
    jcap = pd.concat(capac, ignore_index=True) if capac else None
    return jerr, jcap


def judged_sections(c, jerr: pd.DataFrame | None, jcap: pd.DataFrame | None) -> list[str]:
    """The judged errors (paired per-request bootstrap) and the capacity and R* tables."""
    L: list[str] = []
    if jerr is not None and len(jerr):
        sc = jerr[jerr["scored"].astype(bool)]
        L += ["## Judged errors (paired per-request bootstrap, errors.csv)", "",
              f"{len(sc)} of {len(jerr)} rows scored (P99 below {c.compare.p99_min_requests} "
              "requests and throughput below saturation are reported, not scored); intervals "
              f"{c.compare.confidence:.0%}, {c.compare.bootstrap} resamples. Simulated TBT per "
              "request: rebuilt from the run's iterations (its first token, then each iteration end "
              "of its token machine; see experiments/validation/scoring.py).", "",
              "| design | load | offered (req/s) | metric | stat | sim | real | rel. error | "
              "interval | n | scored |", "|" + "---|" * 11]  # fmt: skip
        for r in jerr.itertuples(index=False):
            L.append(f"| {r.design} | {r.load} | {r.offered_rps:.3g} | {r.metric} | {r.stat} | "
                     f"{r.sim:.4g} | {r.real:.4g} | {pct(r.rel_error)} | "
                     f"[{pct(r.ci_low)}, {pct(r.ci_high)}] | {r.n_requests} | "
                     f"{'yes' if r.scored else 'no'} |")  # fmt: skip
        L.append("")
    if jcap is not None and len(jcap):
        L += ["## Capacity and R* (capacity.csv)", "",
              f"Real interval ({c.compare.confidence:.0%}): capacity, the completions' Poisson "
              "count; R*, a bootstrap of the requests of the rungs it interpolates between "
              f"({c.compare.bootstrap} resamples, each rung's requests drawn with replacement). "
              "Both are sampling intervals of one run: drift between runs is not in them.", "",
              "| design | quantity | sim | real | real interval | rel. error | note |",
              "|" + "---|" * 7]  # fmt: skip
        for r in jcap.itertuples(index=False):
            iv = ("" if not (math.isfinite(r.ci_low) and math.isfinite(r.ci_high))
                  else f"{r.ci_low:.4g}-{r.ci_high:.4g}")  # fmt: skip
            note = getattr(r, "note", "")
            note = note if isinstance(note, str) else ""
            L.append(f"| {r.design} | {r.quantity} | {_num(r.sim)} | {_num(r.real)} | {iv} | "
                     f"{pct(r.rel_error)} | {note} |")  # fmt: skip
        L.append("")
    return L


def _num(v: float) -> str:
    """A table cell: 4 significant digits, or a dash where there is no value (the note says)."""
    return f"{v:.4g}" if math.isfinite(v) else "-"
