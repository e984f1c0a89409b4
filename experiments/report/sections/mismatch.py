"""Trace mismatch (``mismatch.csv``): each design provisioned for one trace, serving another."""

from __future__ import annotations

from experiments.report.describe import made_by, trace_names
from experiments.report.format import config_text, md_rows, num, pct
from experiments.report.plotting import Figures


def mismatch_section(figs: Figures, s: dict) -> list[str]:
    m = s["mismatch"]
    if m.empty:
        return []
    names = trace_names(s)
    md = [
        "### Trace mismatch: provisioned for one trace, serving another",
        "",
        "Each design keeps its best configuration for the trace it was provisioned for "
        f"(`{s['meta']['study'].get('variant_budget', 'iso-power')}` budget) and serves the "
        "other trace's requests; max rate under the SLO there, against the served trace's own "
        "best (that design provisioned for it), and the throughput lost or gained. "
        + made_by(s, "mismatch"),
        "",
    ]
    rows = []
    for _, r in m.iterrows():
        rows.append(
            [
                str(names.get(r["source_trace"], r["source_trace"])),
                str(r["trace_display"]),
                str(r["design_display"]),
                config_text(r),
                num(r["max_rate"]),
                num(r["own_rate"]),
                pct(r["change"]),
            ]
        )
    md += [
        md_rows(
            [
                "provisioned for",
                "served",
                "design",
                "config",
                "max rate (req/s)",
                "served trace's own best (req/s)",
                "change",
            ],  # fmt: skip
            rows,
            [False, False, False, False, True, True, True],
        ),
        "",
    ]
    figs.csv(m, f"{s['slug']}_mismatch")
    return md
