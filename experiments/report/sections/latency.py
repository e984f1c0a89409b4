"""A study's latency and SLO attainment section, per trace: the latency CDFs of each design at
its best iso-power configuration and highest SLO-meeting rate (``latency_quantiles.csv``), and
the worst slowdown percentile over its limit at every rate the search simulated
(``points.csv``)."""

from __future__ import annotations

from experiments.report import study_figures as sf
from experiments.report.plotting import Figures
from experiments.report.sections.engines import own_rows, own_table


def latency_section(figs: Figures, s: dict) -> list[str]:
    b = own_rows(s["budget"])
    slo = s["meta"]["slo"]
    name = s.get("slug", s["meta"]["study"]["name"])
    md: list[str] = []
    traces = list(dict.fromkeys(b["trace"])) if not b.empty else []
    for tr in traces:
        disp = b[b["trace"] == tr]["trace_display"].iloc[0]
        md += [f"### Latency and SLO attainment: {disp} trace", ""]
        lat = own_table(s["latency_quantiles"], b)  # other profile sets: the engines section
        cdf = sf.fig_cdfs(figs, lat, b, name, tr, slo=slo)
        if cdf:
            md += [
                "Per design, at its best iso-power configuration and highest SLO-meeting "
                "rate. TBT is token-weighted: every gap between two tokens of a request counts "
                "once. Dotted lines: the percentiles the SLO judges, with their limits "
                "(slowdowns over the same request run alone on the reference machine, so "
                "they are not seconds and do not sit at one latency).",
                "",
                f"![CDFs]({cdf})",
                "",
            ]
        slo_fig = sf.fig_slo_vs_rate(figs, own_table(s["points"], b), b, name, tr)
        if slo_fig:
            n_lim = len(slo.get("percentiles", [])) * 3
            md += [
                f"Worst of the {n_lim} slowdown percentiles over its limit, at every rate the "
                "search simulated on that configuration (<= 1: SLO met).",
                "",
                f"![SLO vs rate]({slo_fig})",
                "",
            ]
    return md
