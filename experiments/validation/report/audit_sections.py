"""The iteration audit's section (iteration_audit.csv): the real iterations against the
simulator's iteration model at the real batch (:mod:`experiments.validation.iteration_audit`)."""

from __future__ import annotations

import math

import pandas as pd

from experiments.validation.iteration_audit import EDGE_S, pooled


def _ms(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.1f}"


def _bin(lo, hi) -> str:
    return f"{lo}+" if hi is None or pd.isna(hi) else (f"{lo}" if lo == hi else f"{lo}-{hi}")


def audit_section(df: pd.DataFrame) -> list[str]:
    """The section: per design and batch bin over every rung, quiet and admission gaps."""
    if df is None or df.empty:
        return []
    L = ["## Iteration audit: the real iterations against the simulator's iteration model "
         "(iteration_audit.csv)", "",
         "Every client inter-token gap of a real run is one iteration of the token machine; its "
         "batch and context are the requests streaming across it (from their token times). "
         "`model` = the rung's phase model for a decode iteration of that batch and context plus "
         "the served per-iteration overhead, times the rung's speed factor (as simulated); "
         "`excess` = real - model, the median over the gaps (ms). `quiet`: no request admitted "
         f"or finished in or within {EDGE_S * 1e3:.0f} ms of the gap (the iteration model's own "
         "error at that batch); `admission`: a request's first token in the gap's second half "
         "(the iteration that admitted it). Nothing is simulated or fitted here; the excess is "
         "the iteration-level part of the latency errors above, before queueing amplifies it. "
         "baseline2 is audited per instance where the client recorded the router's choice (the "
         "X-Backend header; older records cannot name it and their baseline2 rungs are "
         "skipped). Gaps are not independent samples (no interval is claimed); per rung, the "
         "interquartile range of the excess is in the CSV.", ""]  # fmt: skip
    for event in ("quiet", "admission"):
        p = pooled(df, event)
        if p.empty:
            continue
        has_kv = bool(p["kv_load_ms"].notna().any())
        L += [f"**{event}** gaps, pooled over the rungs (gap-weighted mean of the rungs' "
              "medians):", "",
              "| design | batch | gaps | rungs | real (ms) | model (ms) | excess (ms) |"
              + (" hand-over work in sim (KV load + decode work, ms) |" if has_kv else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if has_kv else "")]  # fmt: skip
        for r in p.itertuples(index=False):
            extra = ""
            if has_kv:
                extra = " |" if math.isnan(r.kv_load_ms) else f" {r.kv_load_ms:.1f} |"
            L.append(f"| {r.design} | {_bin(r.batch_lo, r.batch_hi)} | {r.gaps} | {r.rungs} | "
                     f"{r.real_ms:.1f} | {r.model_ms:.1f} | {_ms(r.excess_ms)} |" + extra)
        L.append("")
    return L


__all__ = ["audit_section"]
