"""The context window: per trace, the requests the model's context window clipped or rejected
(the context-policy counts of the study's points, or of a run's summary), and how the headline
ratios change under ``reject`` where the inputs hold a study of each policy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from experiments.report import study_figures as sf
from experiments.report.describe import HEADLINE_BASELINES
from experiments.report.format import md_table

#: the counters of a ``context`` block (requests and tokens changed by the context policy)
CONTEXT_COUNTS = ("clipped", "clipped_tokens", "rejected", "rejected_tokens")


def study_context(points: pd.DataFrame) -> pd.DataFrame:
    """Per trace, summed over the study's simulated points: requests re-sampled, clipped and
    rejected by the context policy, tokens removed. Empty when the points carry no context
    (a study from before the context block)."""
    if points.empty or "trace" not in points.columns:
        return pd.DataFrame()
    p = points.copy()
    if "context" in p.columns and "context_clipped" not in p.columns:
        blocks = [_json_obj(x) for x in p["context"]]
        for k in (*CONTEXT_COUNTS, "policy", "max_context"):
            p[f"context_{k}"] = [b.get(k) for b in blocks]
    if "context_clipped" not in p.columns and "context_rejected" not in p.columns:
        return pd.DataFrame()
    if "error" in p.columns:
        p = p[p["error"].isna()]
    rows = []
    for tr, g in p.groupby("trace", sort=False):
        row = {"trace": tr, "points": len(g)}
        for k in CONTEXT_COUNTS:
            col = f"context_{k}"
            v = pd.to_numeric(g[col], errors="coerce") if col in g.columns else pd.Series([])
            row[k] = int(v.fillna(0).sum())
        tr_req = g["trace_requests"] if "trace_requests" in g.columns else pd.Series([])
        tr_req = pd.to_numeric(tr_req, errors="coerce")
        row["trace_requests"] = int(tr_req.sum()) if tr_req.notna().any() else None
        for k in ("policy", "max_context"):
            vals = sorted({str(x) for x in g.get(f"context_{k}", pd.Series([])).dropna()})
            row[k] = ", ".join(vals) if vals else None
        rows.append(row)
    return pd.DataFrame(rows)


def run_context(summary: dict) -> dict | None:
    """The run's ``context`` block (the context-window policy's counts, replay.summary) with the
    run's request count from its ``trace`` block; None when the run has no such block."""
    c = summary.get("context")
    if not isinstance(c, dict):
        return None
    info = summary.get("trace") if isinstance(summary.get("trace"), dict) else {}
    out = {k: c.get(k) for k in ("policy", "max_context")}
    for k in CONTEXT_COUNTS:
        v = c.get(k)
        out[k] = int(v) if isinstance(v, (int, float)) and np.isfinite(v) else None
    out["requests"] = info.get("requests", (summary.get("requests") or {}).get("total"))
    return out


def _json_obj(x) -> dict:
    if isinstance(x, dict):
        return x
    if isinstance(x, str):
        try:
            v = json.loads(x)
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}
    return {}


def _trace_policy(meta: dict) -> dict[str, str]:
    """{trace key: its configured context policy} from study.json's traces section."""
    out = {}
    for k, t in (meta.get("traces") or {}).items():
        if isinstance(t, dict) and t.get("context_policy"):
            out[k] = str(t["context_policy"])
    return out


def context_section(s: dict) -> list[str]:
    """Per trace: requests clipped or rejected by the model's context window, tokens removed."""
    meta = s["meta"]
    ctx = study_context(s["points"])
    disp = {}
    if not s["budget"].empty and "trace_display" in s["budget"].columns:
        disp = dict(zip(s["budget"]["trace"], s["budget"]["trace_display"], strict=False))
    policy = _trace_policy(meta)
    md = ["### Context window: clipped and rejected requests", ""]
    if ctx.empty:
        md += [
            "This study's points carry no context-policy counts (a study from before they were "
            "recorded); configured policy per trace: "
            + (", ".join(f"{disp.get(k, k)} `{v}`" for k, v in policy.items()) or "unknown")
            + ".",
            "",
        ]
        return md
    ctx = ctx.copy()
    ctx["trace_display"] = [disp.get(t, t) for t in ctx["trace"]]
    ctx["policy"] = [
        p if p else policy.get(t) for t, p in zip(ctx["trace"], ctx["policy"], strict=True)
    ]
    tr = pd.to_numeric(ctx["trace_requests"], errors="coerce")
    ctx["clipped_pct"] = 100.0 * ctx["clipped"] / tr
    ctx["rejected_pct"] = 100.0 * ctx["rejected"] / tr
    ctx["tokens_per_clipped"] = np.where(
        ctx["clipped"] > 0, ctx["clipped_tokens"] / ctx["clipped"].where(ctx["clipped"] > 0), np.nan
    )
    md += [
        "Requests longer than the model's context window (prompt + output tokens) are clipped "
        "(output first, then the prompt) or rejected, per the trace's `context_policy`. Counts "
        "are summed over every simulated point of the study (each point re-samples the trace), "
        "so the percentages are the share of re-sampled requests the policy changed.",
        "",
        md_table(
            ctx,
            [
                ("trace_display", "trace", ""),
                ("policy", "policy", ""),
                ("max_context", "window (tokens)", ""),
                ("points", "points", ".0f"),
                ("trace_requests", "requests", ",.0f"),
                ("clipped", "clipped", ",.0f"),
                ("clipped_pct", "clipped (%)", ".1f"),
                ("clipped_tokens", "tokens removed by clipping", ",.0f"),
                ("tokens_per_clipped", "per clipped request", ",.0f"),
                ("rejected", "rejected", ",.0f"),
                ("rejected_pct", "rejected (%)", ".1f"),
                ("rejected_tokens", "tokens of rejected requests", ",.0f"),
            ],
        ),
        "",
    ]
    return md


def reject_section(studies: list[dict]) -> list[str]:
    """The headline ratios under ``clip`` and under ``reject``, when the inputs hold a study of
    each policy; otherwise the marked place where that comparison goes."""
    md = ["## Context policy: how the headline ratios change under `reject`", ""]
    by_policy: dict[str, list[dict]] = {}
    for s in studies:
        pols = set(_trace_policy(s["meta"]).values())
        ctx = study_context(s["points"])
        if not ctx.empty:
            pols |= {p for p in ctx["policy"].dropna() for p in str(p).split(", ")}
        if len(pols) == 1:
            by_policy.setdefault(pols.pop(), []).append(s)
    if "clip" in by_policy and "reject" in by_policy:
        t = sf.compare_table(by_policy["clip"][:1] + by_policy["reject"][:1])
        t = t[t["study"].isin([by_policy["clip"][0]["label"], by_policy["reject"][0]["label"]])]
        t["policy"] = np.where(t["study"] == by_policy["clip"][0]["label"], "clip", "reject")
        wide = t.pivot_table(
            index=["trace_display", "budget", "design_display"],
            columns="policy",
            values=[f"max_rate_vs_{bl}" for bl in HEADLINE_BASELINES],
            aggfunc="first",
            sort=False,
        )
        wide.columns = [f"{a.removeprefix('max_rate_vs_')} ({b})" for a, b in wide.columns]
        wide = wide.reset_index()
        cols = [("trace_display", "trace", ""), ("budget", "budget", ""),
                ("design_display", "design", "")]  # fmt: skip
        cols += [(c, f"x {c}", ".2f") for c in wide.columns[3:]]
        md += [
            f"Ratios of the highest SLO-meeting rate to the baselines: study "
            f"`{by_policy['clip'][0]['label']}` (clip) vs `{by_policy['reject'][0]['label']}` "
            "(reject).",
            "",
            md_table(wide, cols),
            "",
        ]
    else:
        md += [
            "<!-- PLACE: headline ratios under context_policy=reject -->",
            "**Not measured in this report's inputs.** Run the same study with every trace's "
            "`context_policy=reject` and give both studies to `splitbench-report`: this section "
            "then shows each design's ratios to the baselines under `clip` and under `reject` "
            "side by side.",
            "",
        ]
    return md
