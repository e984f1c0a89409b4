"""The replay runs (``summary.json`` + ``requests.parquet`` from ``splitbench-replay`` or the
load generator): each run's summary numbers, SLO verdict and context-policy counts, and their
latency CDFs."""

from __future__ import annotations

import pandas as pd

from common.units import w_to_kw
from experiments.report import study_figures as sf
from experiments.report.format import md_table
from experiments.report.plotting import Figures
from experiments.report.sections.context import run_context


def run_label(r: dict) -> str:
    s = r["summary"]
    disp = s.get("display") or {}
    d = s.get("design") or {}
    return f"{disp.get('design') or d.get('name', '?')} / {disp.get('trace', '')} ({r['dir'].name})"


def runs_section(figs: Figures, runs: list[dict]) -> list[str]:
    md = ["## Replay runs", ""]
    rows = []
    labels = [run_label(r) for r in runs]
    for r, label in zip(runs, labels, strict=True):
        s = r["summary"]
        d = s.get("design") or {}
        ctx = run_context(s)
        met = (s.get("slo") or {}).get("all_ok")  # None: no SLO judged (e.g. a load run)
        rows.append(
            {
                "run": label,
                "requests": (s.get("requests") or {}).get("completed"),
                "throughput": s.get("throughput_rps"),
                "ttft_p99": (s.get("ttft_s") or {}).get("p99"),
                "tbt_p99": (s.get("tbt_s") or {}).get("p99"),
                "e2e_p99": (s.get("e2e_s") or {}).get("p99"),
                "cost": s.get("cost_per_hour", d.get("cost_per_hour")),
                "power_kw": w_to_kw(s.get("provisioned_power_w", d.get("provisioned_power_w")))
                if s.get("provisioned_power_w", d.get("provisioned_power_w")) is not None
                else None,
                "slo": "-" if met is None else ("met" if met else "missed"),
                "context": _run_context_text(ctx),
            }
        )
    df = pd.DataFrame(rows)
    md += [
        "Numbers from each run's `summary.json`; context policy: the requests the "
        "context-window policy clipped or rejected and the tokens it removed (`-`: the summary "
        "has no context counts); SLO `-`: no SLO was judged (a load-generator run).",
        "",
        md_table(
            df,
            [
                ("run", "run", ""),
                ("requests", "completed", ".0f"),
                ("throughput", "req/s", ".2f"),
                ("ttft_p99", "TTFT P99 (s)", ".3f"),
                ("tbt_p99", "TBT P99 (s)", ".4f"),
                ("e2e_p99", "E2E P99 (s)", ".2f"),
                ("cost", "$/h", ",.0f"),
                ("power_kw", "kW", ".1f"),
                ("slo", "SLO", ""),
                ("context", "context policy", ""),
            ],
        ),
        "",
    ]
    slo = None
    for r in runs:
        if r["point"] and isinstance(r["point"].get("slo"), dict):
            slo = r["point"]["slo"]
            break
    cdf, defs = sf.fig_run_cdfs(figs, runs, labels, slo=slo)
    if cdf:
        tdef = sorted(set(defs))
        md += [
            "CDFs at the study's quantile levels and by its definitions; TBT: "
            + " / ".join(
                "token-weighted (every gap between two tokens of a request counts once)"
                if t == "token-weighted"
                else t
                for t in tdef
            )
            + (
                ". Dotted lines: the SLO's judged percentiles and limits (slowdowns)."
                if slo
                else "."
            ),
            "",
            f"![run CDFs]({cdf})",
            "",
        ]
    return md


def _run_context_text(ctx: dict | None) -> str:
    if ctx is None:
        return "-"

    def n(k: str) -> str:
        return "?" if ctx.get(k) is None else f"{ctx[k]:,}"

    def tok(k: str) -> str:
        return "tokens not recorded" if ctx.get(k) is None else f"{ctx[k]:,} tokens"

    of = f" of {ctx['requests']:,}" if isinstance(ctx.get("requests"), int) else ""
    return (
        f"{ctx.get('policy') or '?'} at {ctx.get('max_context') or '?'} tokens: "
        f"{n('clipped')}{of} clipped ({tok('clipped_tokens')}), "
        f"{n('rejected')} rejected ({tok('rejected_tokens')})"
    )
