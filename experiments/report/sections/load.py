"""Load curves (``load.csv``): SLO attainment and P99 latency against the request rate, and where
attainment first drops below its level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report import variant_figures as vf
from experiments.report.describe import made_by
from experiments.report.format import config_text, md_rows, num
from experiments.report.plotting import Figures


def load_table(load: pd.DataFrame, level: float = vf.ATTAINMENT_LEVEL) -> pd.DataFrame:
    """Per (trace, design): its max rate under the SLO, the SLO attainment and P99 latencies
    there, and where attainment first drops below ``level`` (the first simulated rate below it,
    and the rate linearly interpolated between it and the rate before)."""
    rows = []
    if load.empty:
        return pd.DataFrame()
    for (_tr, _des), g in load.groupby(["trace", "design"], sort=False):
        ok = g[g.get("status", pd.Series("ok", index=g.index)).astype(str) != "failed"]
        ok = ok.dropna(subset=["rate"]).sort_values("rate", kind="stable")
        first = g.iloc[0]
        lf = pd.to_numeric(ok["load_factor"], errors="coerce")
        at1 = ok[np.isclose(lf, 1.0)]
        src = at1.iloc[0] if len(at1) else None
        max_rate = (
            src["rate"]
            if src is not None
            else (ok["rate"] / lf).dropna().iloc[0]
            if len(ok)
            else None
        )
        att = pd.to_numeric(ok["slo_attainment"], errors="coerce").to_numpy()
        rates = ok["rate"].to_numpy(dtype=float)
        below, cross = None, None
        for i, a in enumerate(att):
            if np.isfinite(a) and a < level:
                below = rates[i]
                prev = [j for j in range(i) if np.isfinite(att[j]) and att[j] >= level]
                if prev:
                    j = prev[-1]
                    cross = rates[j] + (att[j] - level) / (att[j] - a) * (rates[i] - rates[j])
                break
        rows.append(
            {
                "trace": first["trace"],
                "trace_display": first["trace_display"],
                "design": first["design"],
                "design_display": first["design_display"],
                "prompt_machines": first.get("prompt_machines"),
                "token_machines": first.get("token_machines"),
                "machines": first.get("machines"),
                "max_rate": max_rate,
                "attainment_at_max_rate": None if src is None else src["slo_attainment"],
                "ttft_p99_s_at_max_rate": None if src is None else src["ttft_p99_s"],
                "tbt_p99_s_at_max_rate": None if src is None else src["tbt_p99_s"],
                "e2e_p99_s_at_max_rate": None if src is None else src["e2e_p99_s"],
                "highest_rate": rates[-1] if len(rates) else None,
                "attainment_at_highest_rate": att[-1] if len(att) else None,
                "first_rate_below": below,
                "rate_below_interpolated": cross,
                "points": len(g),
                "failed_points": len(g) - len(ok),
            }
        )
    return pd.DataFrame(rows)


def load_section(figs: Figures, s: dict) -> list[str]:
    load = s["load"]
    if load.empty:
        return []
    name = s["slug"]
    lv = vf.ATTAINMENT_LEVEL
    t = load_table(load)
    figs.csv(t, f"{name}_load_table")
    factors = sorted({round(float(x), 2) for x in s["meta"]["study"].get("load_factors") or []})
    md = [
        "### Load: SLO attainment and P99 latency against the request rate",
        "",
        "Each design at its best "
        f"`{s['meta']['study'].get('variant_budget', 'iso-power')}` configuration, at "
        + (", ".join(f"{f:g}" for f in factors) + "x" if factors else "multiples of")
        + " its max rate under the SLO (rates snapped to the search grid) and past saturation. "
        "SLO attainment: the share of steady-state completions within the SLO's per-request "
        "slowdown limits at its highest percentile (goodput / throughput); the study's SLO "
        "itself judges percentiles of the slowdowns, so a point can miss it with most requests "
        "within the limits: the second row, the worst slowdown percentile over its limit (the "
        "SLO holds up to 1), shows the binding one. " + made_by(s, "load"),
        "",
    ]
    rows = []
    for _, r in t.iterrows():
        never = r["first_rate_below"] is None or pd.isna(r["first_rate_below"])
        rows.append(
            [
                str(r["trace_display"]),
                str(r["design_display"]),
                config_text(r),
                num(r["max_rate"]),
                num(r["attainment_at_max_rate"], ".3f"),
                num(r["ttft_p99_s_at_max_rate"], ".3f"),
                num(r["tbt_p99_s_at_max_rate"], ".4f"),
                num(r["e2e_p99_s_at_max_rate"], ".2f"),
                f"not below up to {num(r['highest_rate'])}"
                if never
                else num(r["first_rate_below"]),
                "-" if never else num(r["rate_below_interpolated"]),
            ]
        )
    md += [
        md_rows(
            [
                "trace",
                "design",
                "config",
                "max rate under SLO (req/s)",
                "attainment there",
                "P99 TTFT (s)",
                "P99 TBT (s)",
                "P99 E2E (s)",
                f"first rate with attainment < {lv:g} (req/s)",
                "interpolated (req/s)",
            ],
            rows,
            [False, False, False] + [True] * 7,
        ),  # fmt: skip
        "",
        f"Attainment < {lv:g}: the first simulated rate below it; interpolated: linearly between "
        "that rate and the one before it.",
        "",
    ]
    fig = vf.fig_load(figs, load, name)
    if fig:
        md += [
            "SLO attainment, the worst slowdown over its limit and P99 latencies against load "
            "(rate / the design's max rate under the SLO; dashed: 1, the max rate; dotted: "
            f"attainment {lv:g} and the SLO's edge at 1; x: the point misses the SLO). TBT "
            "token-weighted.",
            "",
            f"![load curves]({fig})",
            "",
        ]
    return md
