"""The report's sections of the dependent studies (issue 13), each from the study's own tables
(never recomputing a metric they hold) and naming the command that made them:

- trace mismatch (``mismatch.csv``): provisioned for one trace, serving another;
- token distribution, scheduler, sensitivity and seeds (``variants.csv``,
  ``variant_ratios.csv``), told apart by the variants' ``group``;
- load curves (``load.csv``) and batch jobs (``batch.csv``);
- the headline ratios with their seed interval over every seeds study of the inputs
  (``figures/headline_intervals.csv``), models side by side.
"""

from __future__ import annotations

import shlex

import numpy as np
import pandas as pd

from experiments.report import variant_figures as vf
from experiments.report.plotting import Figures, hue_order

#: variant groups of each kind of section (the rest are modelling assumptions: sensitivity)
SEED_GROUPS = ("seed",)
TOKEN_GROUPS = ("prompt length", "output length")
SCHEDULER_GROUPS = ("mixed pool", "routing")
PREFIX_GROUPS = ("prefix caching",)
#: the headline baselines (experiments.study.HEADLINE_BASELINES)
BASELINES = ("baseline-a100", "baseline-h100")
_BASELINE_DISPLAY = {"baseline-a100": "Baseline-A100", "baseline-h100": "Baseline-H100"}


# ---------------------------------------------------------------------------------------------
# small helpers


def study_command(s: dict) -> str:
    """The command that made study ``s``: ``splitbench-study`` and its recorded overrides (output
    places left out, as in the study's label)."""
    return " ".join(["splitbench-study", *(shlex.quote(o) for o in s["overrides"])])


def made_by(s: dict, *tables: str) -> str:
    names = ", ".join(f"`{t}.csv`" for t in tables)
    return f"Made by `{study_command(s)}` (study `{s['label']}`, {names})."


def model_name(s: dict) -> str:
    return str(s["meta"]["model"].get("name", "?"))


def model_display(s: dict) -> str:
    m = s["meta"]["model"]
    return str(m.get("display") or m.get("name", "?"))


def pct(x) -> str:
    if x is None or pd.isna(x):
        return "-"
    v = round(100.0 * float(x), 1)
    return f"{v + 0.0:+.1f}%"  # + 0.0: no "-0.0%"


def num(x, spec: str = ".2f") -> str:
    if x is None or pd.isna(x):
        return "-"
    return format(float(x), spec)


def config_text(r) -> str:
    if pd.notna(r.get("prompt_machines")) and pd.notna(r.get("token_machines")):
        return f"{int(r['prompt_machines'])}P + {int(r['token_machines'])}T"
    return "-" if pd.isna(r.get("machines")) else f"{int(r['machines'])}"


def rate_cell(r) -> str:
    """A variant's max rate and its change; ``none``: no rate of the search grid met the SLO."""
    if pd.isna(r.get("max_rate")):
        return "none"
    return f"{num(r['max_rate'])} ({pct(r['change'])})"


def variant_cell(r) -> str:
    """A variant's max-rate cell: ``-`` (no row), ``(n/a)`` after the rate where the variant
    does not change the design, else the rate and its change (:func:`rate_cell`)."""
    if r is None:
        return "-"
    if "applies" in r.index and not _truthy(r["applies"]):
        return f"{num(r['max_rate'])} (n/a)"
    return rate_cell(r)


#: the note under every table that can show ``none``
NONE_NOTE = "`none`: no rate of the search grid meets the SLO (no ratio then: `-`)."


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def md_rows(header: list[str], rows: list[list[str]], align: list[bool] | None = None) -> str:
    """A markdown table of already formatted cells; ``align[i]``: right-align column i."""
    align = align or [False] + [True] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if a else "---" for a in align) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _vs_display(s: dict, key: str) -> str:
    b = s["budget"]
    if not b.empty and key in set(b["design"]):
        return str(b.loc[b["design"] == key, "design_display"].iloc[0])
    return _BASELINE_DISPLAY.get(key, key)


def _trace_names(s: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for k in ("budget", "variants", "mismatch", "load", "batch"):
        t = s[k]
        if not t.empty and "trace_display" in t.columns:
            out.update(zip(t["trace"], t["trace_display"], strict=False))
    return out


def _held_text(s: dict) -> str:
    st = s["meta"]["study"]
    bud = st.get("variant_budget", "iso-power")
    if st.get("reprovision"):
        return f"each design's configuration re-searched within the `{bud}` budget"
    return (
        f"each design held at its best `{bud}` configuration of the study's own (default) "
        "search, its max rate under the SLO re-searched"
    )


def variant_groups(s: dict) -> list[str]:
    v = s["variants"]
    return [] if v.empty else list(dict.fromkeys(v["group"].astype(str)))


def sensitivity_groups(s: dict) -> list[str]:
    skip = (*SEED_GROUPS, *TOKEN_GROUPS, *SCHEDULER_GROUPS, *PREFIX_GROUPS)
    return [g for g in variant_groups(s) if g not in skip]


def has_seeds(s: dict) -> bool:
    return any(g in SEED_GROUPS for g in variant_groups(s))


# ---------------------------------------------------------------------------------------------
# tables of variants: max rate per design, headline ratios


def variant_rate_table(s: dict, groups) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Rows (trace, design): the max rate under the SLO with the default settings (the study's own
    search) and under each variant of ``groups`` with its change. Returns (header, rows, data)."""
    v = s["variants"]
    v = v[v["group"].astype(str).isin(list(groups))]
    if v.empty:
        return [], [], pd.DataFrame()
    variants = list(dict.fromkeys(v["variant"]))
    labels = dict(zip(v["variant"], v["variant_label"], strict=False))
    header = ["trace", "design", "config", "default (req/s)"] + [
        f"{labels[x]} (req/s, change)" for x in variants
    ]
    rows = []
    for (_tr, _des), g in v.groupby(["trace", "design"], sort=False):
        first = g.iloc[0]
        cells = [str(first["trace_display"]), str(first["design_display"]), config_text(first),
                 num(first["own_rate"])]  # fmt: skip
        by = {r["variant"]: r for _, r in g.iterrows()}
        cells += [variant_cell(by.get(x)) for x in variants]
        rows.append(cells)
    cols = ("trace", "trace_display", "design", "design_display", "variant", "group",
            "variant_label", "applies", "prompt_machines", "token_machines", "machines",
            "max_rate", "own_rate", "change")  # fmt: skip
    keep = [c for c in cols if c in v.columns]
    return header, rows, v[keep]


def variant_ratio_table(s: dict, groups) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Rows (trace, Splitwise design vs baseline): the headline ratio with the default settings
    and under each variant of ``groups`` (``variant_ratios.csv``), with its change."""
    t = s["variant_ratios"]
    t = t[t["group"].astype(str).isin(list(groups))]
    if t.empty:
        return [], [], pd.DataFrame()
    variants = list(dict.fromkeys(t["variant"]))
    labels = dict(zip(t["variant"], t["variant_label"], strict=False))
    header = ["trace", "comparison", "default"] + [f"{labels[x]} (change)" for x in variants]
    rows = []
    order = {d: i for i, d in enumerate(hue_order(t["design_display"]))}
    keys = t.drop_duplicates(["trace", "design", "vs"])
    keys = keys.assign(_o=[order[d] for d in keys["design_display"]])
    traces = {tr: i for i, tr in enumerate(dict.fromkeys(t["trace"]))}
    keys = keys.assign(_t=[traces[x] for x in keys["trace"]])
    keys = keys.sort_values(["_t", "vs", "_o"], kind="stable")
    for _, k in keys.iterrows():
        g = t[(t["trace"] == k["trace"]) & (t["design"] == k["design"]) & (t["vs"] == k["vs"])]
        by = {r["variant"]: r for _, r in g.iterrows()}
        cells = [str(k["trace_display"]), f"{k['design_display']} / {_vs_display(s, k['vs'])}",
                 f"{num(k['default_ratio'])}x"]  # fmt: skip
        for x in variants:
            r = by.get(x)
            cells.append("-" if r is None else f"{num(r['ratio'])}x ({pct(r['change'])})")
        rows.append(cells)
    return header, rows, t


def variant_rate_rows(s: dict, groups) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per trace, the max rate table turned round (a row per variant, a column per design):
    [(trace display, header, rows)], for studies with many variants."""
    v = s["variants"]
    v = v[v["group"].astype(str).isin(list(groups))]
    out = []
    for _tr, g in v.groupby("trace", sort=False):
        designs = list(dict.fromkeys(g["design"]))
        first = {d: g[g["design"] == d].iloc[0] for d in designs}
        header = ["group", "variant"] + [
            f"{first[d]['design_display']} ({config_text(first[d])})" for d in designs
        ]
        rows = [["default", "(the study's own search)"]
                + [num(first[d]["own_rate"]) for d in designs]]  # fmt: skip
        for _v, gv in g.groupby("variant", sort=False):
            by = {r["design"]: r for _, r in gv.iterrows()}
            cells = [str(gv["group"].iloc[0]), str(gv["variant_label"].iloc[0])]
            cells += [variant_cell(by.get(d)) for d in designs]
            rows.append(cells)
        out.append((str(g["trace_display"].iloc[0]), header, rows))
    return out


def _variant_block(
    figs: Figures, s: dict, groups, tag: str, what: str, ratios: bool = True
) -> list[str]:
    h1, r1, d1 = variant_rate_table(s, groups)
    h2, r2, d2 = variant_ratio_table(s, groups) if ratios else ([], [], pd.DataFrame())
    md = []
    if r1:
        figs.csv(d1, f"{s['slug']}_{tag}_rates")
        md += [
            f"Max rate under the SLO (req/s) of each design {what}: {_held_text(s)}; change: "
            "over the default max rate; `n/a`: the variant does not change this design (the "
            "default holds); " + NONE_NOTE + " " + made_by(s, "variants"),
            "",
            md_rows(h1, r1, [False, False, False] + [True] * (len(h1) - 3)),
            "",
        ]
    if r2:
        figs.csv(d2, f"{s['slug']}_{tag}_ratios")
        md += [
            "Headline ratios (Splitwise max rate / baseline max rate at the same budget) under "
            "each variant, beside the default; change: over the default ratio. "
            + made_by(s, "variant_ratios"),
            "",
            md_rows(h2, r2, [False, False] + [True] * (len(h2) - 2)),
            "",
        ]
    return md


# ---------------------------------------------------------------------------------------------
# sections


def mismatch_section(figs: Figures, s: dict) -> list[str]:
    m = s["mismatch"]
    if m.empty:
        return []
    names = _trace_names(s)
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


def token_section(figs: Figures, s: dict) -> list[str]:
    groups = [g for g in variant_groups(s) if g in TOKEN_GROUPS]
    if not groups:
        return []
    md = [
        "### Token distribution: prompt and output lengths scaled",
        "",
        "Every request's prompt or output length scaled (the model's context window applies "
        "after the scaling: the context counts of the points say how many were clipped).",
        "",
    ]
    return md + _variant_block(figs, s, groups, "tokens", "with the lengths scaled")


def scheduler_section(figs: Figures, s: dict) -> list[str]:
    groups = [g for g in variant_groups(s) if g in SCHEDULER_GROUPS]
    if not groups:
        return []
    md = [
        "### Scheduler: what JSQ and the mixed pool buy",
        "",
        "The default is the reference scheduler (join-the-shortest-queue routing, the mixed "
        "pool on for Splitwise designs); each variant changes one part of it.",
        "",
    ]
    return md + _variant_block(figs, s, groups, "scheduler", "under each scheduler")


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


def batch_table(batch: pd.DataFrame) -> pd.DataFrame:
    """Per (trace, design): the configuration with the most requests per dollar, the one with the
    most req/s per kW (``best_*`` flags of batch.csv), and the SLO search's configuration."""
    rows = []
    for (_tr, _des), g in batch.groupby(["trace", "design"], sort=False):
        first = g.iloc[0]
        row = {k: first[k] for k in ("trace", "trace_display", "design", "design_display")}
        row["offered_rate"] = first["offered_rate"]
        row["configs"] = len(g)
        for tag, flag in (("dollar", "best_requests_per_dollar"), ("kw", "best_rps_per_kw"),
                          ("slo", "slo_config")):  # fmt: skip
            hit = g[g[flag].map(_truthy)]
            r = hit.iloc[0] if len(hit) else None
            row[f"{tag}_config"] = None if r is None else config_text(r)
            for k in ("throughput_rps", "requests_per_dollar", "rps_per_kw", "cost_per_hour",
                      "power_w", "saturated"):  # fmt: skip
                row[f"{tag}_{k}"] = None if r is None or k not in r.index else r[k]
        rows.append(row)
    return pd.DataFrame(rows)


def batch_section(figs: Figures, s: dict) -> list[str]:
    batch = s["batch"]
    if batch.empty:
        return []
    name = s["slug"]
    t = batch_table(batch)
    figs.csv(t, f"{name}_batch_table")
    over = s["meta"]["study"].get("batch_overload")
    md = [
        "### Batch jobs: throughput per dollar and per kW, no latency SLO",
        "",
        "No SLO, completions only: every configuration offered "
        + (f"{over:g}x" if isinstance(over, (int, float)) else "a multiple of")
        + " the design's max rate under the SLO (saturating; `saturated`: completions fell short "
        "of the offered rate by 5% or more, else the throughput is a lower bound of capacity), "
        "on evenly spaced configurations of the budget's frontier plus the SLO search's own. "
        "Requests per dollar: completions per hour / ($/h); per kW: completions per second / "
        "provisioned kW. " + made_by(s, "batch"),
        "",
    ]
    rows = []
    for _, r in t.iterrows():
        rows.append(
            [
                str(r["trace_display"]),
                str(r["design_display"]),
                str(r["dollar_config"] or "-"),
                num(r["dollar_requests_per_dollar"], ",.0f"),
                num(r["dollar_throughput_rps"]),
                str(r["kw_config"] or "-"),
                num(r["kw_rps_per_kw"], ".3f"),
                str(r["slo_config"] or "-"),
                num(r["slo_requests_per_dollar"], ",.0f"),
                num(r["slo_rps_per_kw"], ".3f"),
            ]
        )
    md += [
        md_rows(
            [
                "trace",
                "design",
                "best per $: config",
                "requests / $",
                "req/s",
                "best per kW: config",
                "req/s / kW",
                "SLO config",
                "requests / $",
                "req/s / kW",
            ],
            rows,
            [False, False, False, True, True, False, True, False, True, True],
        ),  # fmt: skip
        "",
    ]
    long = []
    for _, r in t.iterrows():
        for metric, best, slo in (
            ("requests per $", "dollar_requests_per_dollar", "slo_requests_per_dollar"),
            ("req/s per kW", "kw_rps_per_kw", "slo_rps_per_kw"),
        ):
            cfg_best = r["dollar_config"] if metric == "requests per $" else r["kw_config"]
            for conf, col, cfg in (("best for the metric", best, cfg_best),
                                   ("SLO search's", slo, r["slo_config"])):  # fmt: skip
                long.append({"trace": r["trace_display"], "design": r["design_display"],
                             "metric": metric, "configuration": conf, "config": cfg,
                             "value": r[col]})  # fmt: skip
    fig = vf.fig_batch(figs, pd.DataFrame(long), name)
    if fig:
        md += [
            "Requests per dollar and req/s per kW: each design's best configuration for the "
            "metric beside the SLO search's configuration.",
            "",
            f"![batch jobs]({fig})",
            "",
        ]
    return md


def _matching_seeds(s: dict, studies: list[dict]) -> list[dict]:
    return [t for t in studies if t is not s and has_seeds(t) and model_name(t) == model_name(s)]


def seed_changes(seeds: dict) -> pd.DataFrame:
    """Per (trace, design, vs) of a seeds study: every seed's headline ratio relative to seed 0's
    (the study's own search), as ``lo``/``hi`` (min/max, 0 included: seed 0 is a draw too)."""
    iv = seed_intervals(seeds)
    if iv.empty:
        return pd.DataFrame()
    out = iv[["trace", "design", "vs"]].copy()
    out["lo"] = np.minimum(iv["min"] / iv["ratio_seed0"] - 1.0, 0.0)
    out["hi"] = np.maximum(iv["max"] / iv["ratio_seed0"] - 1.0, 0.0)
    return out


def tornado_bars(s: dict, seeds: list[dict]) -> pd.DataFrame:
    """Per (trace, design, vs, assumption group) of a sensitivity study: the lowest and highest
    change of the headline ratio over the group's variants, 0 (the default) included, the
    variants that reach them; then, from a seeds study of the same model, the seeds' band."""
    t = s["variant_ratios"]
    groups = sensitivity_groups(s)
    t = t[t["group"].astype(str).isin(groups)]
    rows = []
    for (tr, des, vs, gr), g in t.groupby(["trace", "design", "vs", "group"], sort=False):
        g = g.dropna(subset=["change"])
        if g.empty:
            continue
        lo_r, hi_r = g.loc[g["change"].idxmin()], g.loc[g["change"].idxmax()]
        rows.append(
            {
                "kind": "variant",
                "trace": tr,
                "trace_display": g["trace_display"].iloc[0],
                "design": des,
                "design_display": g["design_display"].iloc[0],
                "vs": vs,
                "vs_display": _vs_display(s, vs),
                "group": gr,
                "lo": min(0.0, float(lo_r["change"])),
                "hi": max(0.0, float(hi_r["change"])),
                "lo_variant": lo_r["variant"] if lo_r["change"] < 0 else "",
                "hi_variant": hi_r["variant"] if hi_r["change"] > 0 else "",
                "min_ratio": float(g["ratio"].min()),
                "max_ratio": float(g["ratio"].max()),
                "default_ratio": g["default_ratio"].iloc[0],
                "source": s["label"],
            }
        )
    d = pd.DataFrame(rows)
    if d.empty:
        return d
    for sd in seeds[:1]:
        ch = seed_changes(sd)
        for _, c in ch.iterrows():
            hit = d[
                (d["trace"] == c["trace"]) & (d["design"] == c["design"]) & (d["vs"] == c["vs"])
            ]
            if hit.empty:
                continue
            h = hit.iloc[0]
            rows.append({**{k: h[k] for k in ("trace", "trace_display", "design", "design_display",
                                               "vs", "vs_display")},
                         "kind": "seed band", "group": "seed", "lo": c["lo"], "hi": c["hi"],
                         "lo_variant": "", "hi_variant": "", "min_ratio": np.nan,
                         "max_ratio": np.nan, "default_ratio": np.nan,
                         "source": sd["label"]})  # fmt: skip
    return pd.DataFrame(rows)


def sensitivity_section(figs: Figures, s: dict, studies: list[dict]) -> list[str]:
    groups = sensitivity_groups(s)
    vr = s["variant_ratios"]
    if not groups or vr.empty:
        return []
    name = s["slug"]
    seeds = _matching_seeds(s, studies)
    bars = tornado_bars(s, seeds)
    md = [
        "### Sensitivity: how far each modelling assumption swings the headline ratios",
        "",
        f"One assumption at a time, {_held_text(s)}. " + made_by(s, "variants", "variant_ratios"),
        "",
    ]
    if not bars.empty:
        figs.csv(bars, f"{name}_tornado_bars")
        band = (
            f" Grey band: the spread of the same ratio over the re-sampling seeds of study "
            f"`{seeds[0]['label']}` (its seeds' ratios relative to its seed 0): changes inside "
            "it are within the noise floor. " + made_by(seeds[0], "budget", "variant_ratios")
            if seeds
            else " No seeds study of this model among the inputs: no noise floor is shown."
        )
        for tr in dict.fromkeys(bars["trace"]):
            fig = vf.fig_tornado(figs, bars, name, tr)
            if fig:
                disp = bars.loc[bars["trace"] == tr, "trace_display"].iloc[0]
                md += [
                    f"**{disp} trace.** Per headline comparison (Splitwise design / baseline at "
                    "the same budget), a bar per assumption group from its lowest to its highest "
                    "ratio over the group's variants, as the change from the default ratio (the "
                    "vertical line; the default lies inside every bar); widest on top; a variant "
                    "under which a design meets the SLO at no rate has no ratio and no bar." + band,
                    "",
                    f"![tornado {disp}]({fig})",
                    "",
                ]
    t = vr[vr["group"].astype(str).isin(groups)]
    for _tr, g in t.groupby("trace", sort=False):
        comps = g.drop_duplicates(["design", "vs"])
        order = {d: i for i, d in enumerate(hue_order(comps["design_display"]))}
        comps = comps.assign(_o=[order[x] for x in comps["design_display"]])
        comps = comps.sort_values(["vs", "_o"], kind="stable")
        keys = [(r["design"], r["vs"]) for _, r in comps.iterrows()]
        header = ["group", "variant"] + [
            f"{r['design_display']} / {_vs_display(s, r['vs'])}" for _, r in comps.iterrows()
        ]
        rows = [["default", "(the study's own search)"]
                + [f"{num(r['default_ratio'])}x" for _, r in comps.iterrows()]]  # fmt: skip
        for _v, gv in g.groupby("variant", sort=False):
            by = {(r["design"], r["vs"]): r for _, r in gv.iterrows()}
            cells = [str(gv["group"].iloc[0]), str(gv["variant_label"].iloc[0])]
            for k in keys:
                r = by.get(k)
                cells.append("-" if r is None else f"{num(r['ratio'])}x ({pct(r['change'])})")
            rows.append(cells)
        md += [
            f"**{g['trace_display'].iloc[0]} trace: every variant's headline ratio (change "
            "from the default)**",
            "",
            md_rows(header, rows, [False, False] + [True] * len(keys)),
            "",
        ]
    _, _, data = variant_rate_table(s, groups)
    if not data.empty:
        figs.csv(data, f"{name}_sensitivity_rates")
    for disp, header, rows in variant_rate_rows(s, groups):
        md += [
            f"**{disp} trace: each design's max rate under the SLO (req/s, change from the "
            "default; `n/a`: the variant does not change this design)**. " + NONE_NOTE,
            "",
            md_rows(header, rows, [False, False] + [True] * (len(header) - 2)),
            "",
        ]
    return md


# ---------------------------------------------------------------------------------------------
# seeds


def seed_ratios(s: dict) -> pd.DataFrame:
    """Long table of a seeds study's headline ratios: seed 0 (the study's own search at
    ``variant_budget``: ``budget.csv``'s ``max_rate_vs_<baseline>``) and each seed variant
    (``variant_ratios.csv``'s ``ratio``)."""
    st = s["meta"]["study"]
    bud = st.get("variant_budget", "iso-power")
    seed0 = (s["meta"].get("search") or {}).get("seed", 0)
    seed_of = {}
    for v in st.get("variants") or []:
        if isinstance(v, dict) and v.get("group") in SEED_GROUPS:
            seed_of[v.get("name")] = (v.get("set") or {}).get("seed")
    rows = []
    b = s["budget"]
    b = b[(b["budget"] == bud) & (b["kind"] == "splitwise")] if not b.empty else b
    for _, r in b.iterrows():
        for bl in BASELINES:
            col = f"max_rate_vs_{bl}"
            if col not in r.index:
                continue
            rows.append({"trace": r["trace"], "trace_display": r["trace_display"],
                         "design": r["design"], "design_display": r["design_display"], "vs": bl,
                         "variant": "", "seed": seed0, "ratio": r[col]})  # fmt: skip
    vr = s["variant_ratios"]
    vr = vr[vr["group"].astype(str).isin(SEED_GROUPS)] if not vr.empty else vr
    for _, r in vr.iterrows():
        rows.append({"trace": r["trace"], "trace_display": r["trace_display"],
                     "design": r["design"], "design_display": r["design_display"], "vs": r["vs"],
                     "variant": r["variant"], "seed": seed_of.get(r["variant"]),
                     "ratio": r["ratio"]})  # fmt: skip
    return pd.DataFrame(rows)


def seed_intervals(s: dict) -> pd.DataFrame:
    """Per (trace, Splitwise design, baseline): the headline ratio's median, min and max over the
    seeds (seed 0 and every seed variant), the number of seeds with a ratio, and seed 0's."""
    long = seed_ratios(s)
    if long.empty:
        return pd.DataFrame()
    rows = []
    seed0 = (s["meta"].get("search") or {}).get("seed", 0)
    for (tr, des, vs), g in long.groupby(["trace", "design", "vs"], sort=False):
        vals = pd.to_numeric(g["ratio"], errors="coerce").dropna()
        zero = g[g["variant"] == ""]["ratio"]
        rows.append(
            {
                "model": model_name(s),
                "model_display": model_display(s),
                "study": s["label"],
                "trace": tr,
                "trace_display": g["trace_display"].iloc[0],
                "design": des,
                "design_display": g["design_display"].iloc[0],
                "vs": vs,
                "vs_display": _vs_display(s, vs),
                "seeds": len(vals),
                "seed_list": " ".join(str(int(x)) for x in g.loc[vals.index, "seed"].fillna(-1)),
                "ratio_seed0": zero.iloc[0] if len(zero) else np.nan,
                "median": float(np.median(vals)) if len(vals) else np.nan,
                "min": float(vals.min()) if len(vals) else np.nan,
                "max": float(vals.max()) if len(vals) else np.nan,
                "seed0": seed0,
            }
        )
    out = pd.DataFrame(rows)
    order = {d: i for i, d in enumerate(hue_order(out["design_display"]))}
    traces = {t: i for i, t in enumerate(dict.fromkeys(out["trace"]))}
    out = out.assign(
        _t=[traces[x] for x in out["trace"]], _o=[order[x] for x in out["design_display"]]
    )
    return out.sort_values(["_t", "vs", "_o"], kind="stable").drop(columns=["_t", "_o"])


def interval_text(r) -> str:
    return f"{num(r['median'])}x [{num(r['min'])}, {num(r['max'])}]"


def seeds_section(figs: Figures, s: dict) -> list[str]:
    if not has_seeds(s):
        return []
    iv = seed_intervals(s)
    if iv.empty:
        return []
    name = s["slug"]
    figs.csv(seed_ratios(s), f"{name}_seed_ratios")
    figs.csv(iv, f"{name}_seed_intervals")
    seeds = sorted({int(x) for x in " ".join(iv["seed_list"]).split()})
    md = [
        "### Seeds: the headline ratios over re-sampling seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))}: seed {int(iv['seed0'].iloc[0])} is the study's own "
        "search, the others re-sample every trace (and seed the simulator) anew, "
        f"{_held_text(s)}: the interval measures the re-sampling noise of the max rate, not of the "
        "configuration choice. Median [min, max] over the seeds. "
        + made_by(s, "budget", "variants", "variant_ratios"),
        "",
        md_rows(
            [
                "trace",
                "comparison",
                "seeds",
                f"seed {int(iv['seed0'].iloc[0])}",
                "median [min, max]",
            ],
            [
                [
                    str(r["trace_display"]),
                    f"{r['design_display']} / {r['vs_display']}",
                    str(r["seeds"]),
                    f"{num(r['ratio_seed0'])}x",
                    interval_text(r),
                ]
                for _, r in iv.iterrows()
            ],
            [False, False, True, True, True],
        ),  # fmt: skip
        "",
    ]
    # each design's max rate over the seeds (seed 0: budget.csv; the others: variants.csv)
    v = s["variants"]
    v = v[v["group"].astype(str).isin(SEED_GROUPS)]
    b = s["budget"]
    b = b[b["budget"] == s["meta"]["study"].get("variant_budget", "iso-power")]
    rows = []
    for _, r in b.iterrows():
        vals = pd.concat(
            [
                pd.Series([r["max_rate"]]),
                v[(v["trace"] == r["trace"]) & (v["design"] == r["design"])]["max_rate"],
            ],
            ignore_index=True,
        ).dropna()
        rows.append([str(r["trace_display"]), str(r["design_display"]), config_text(r),
                     str(len(vals)), num(r["max_rate"]),
                     f"{num(np.median(vals) if len(vals) else np.nan)} "
                     f"[{num(vals.min() if len(vals) else np.nan)}, "
                     f"{num(vals.max() if len(vals) else np.nan)}]"])  # fmt: skip
    if rows:
        md += [
            "Each design's max rate under the SLO (req/s) over the same seeds:",
            "",
            md_rows(
                [
                    "trace",
                    "design",
                    "config",
                    "seeds",
                    f"seed {int(iv['seed0'].iloc[0])}",
                    "median [min, max]",
                ],
                rows,
                [False, False, False, True, True, True],
            ),  # fmt: skip
            "",
        ]
    return md


def headline_intervals(studies: list[dict]) -> pd.DataFrame:
    """The seed intervals of every seeds study of the inputs, one block per model."""
    frames = [seed_intervals(s) for s in studies if has_seeds(s)]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def headline_section(figs: Figures, studies: list[dict]) -> list[str]:
    """The headline ratios with their seed interval, the models side by side; also as
    ``figures/headline_intervals.csv``."""
    iv = headline_intervals(studies)
    if iv.empty:
        return []
    figs.csv(iv, "headline_intervals")
    models = list(dict.fromkeys(iv["model_display"]))
    wide: dict[tuple, dict] = {}
    for _, r in iv.iterrows():
        k = (r["trace_display"], r["design_display"], r["vs_display"])
        wide.setdefault(k, {})[r["model_display"]] = interval_text(r)
    rows = [[tr, f"{des} / {vs}", *(cells.get(m, "-") for m in models)]
            for (tr, des, vs), cells in wide.items()]  # fmt: skip
    srcs = [s for s in studies if has_seeds(s)]
    n = sorted(set(iv["seeds"]))
    md = [
        "## Headline ratios with their seed intervals",
        "",
        "Splitwise max rate under the SLO over the baseline's at the same budget: median "
        f"[min, max] over {'/'.join(map(str, n))} re-sampling seeds (seed 0: each study's own "
        "search; the others: its seed variants at seed 0's configuration). Data: "
        "`figures/headline_intervals.csv`. Made by "
        + "; ".join(f"`{study_command(s)}` (study `{s['label']}`)" for s in srcs)
        + ".",
        "",
        md_rows(["trace", "comparison", *models], rows, [False, False] + [True] * len(models)),
        "",
    ]
    return md


def prefix_section(figs: Figures, s: dict) -> list[str]:
    """Prefix caching (issue 14): per design and variant, the max rate under the SLO at the
    default's configuration and, at the default's max rate (the same offered load), the block
    hit rate, the share of prompt tokens not recomputed, TTFT and throughput."""
    v = s["variants"]
    if v.empty or not any(g in PREFIX_GROUPS for g in variant_groups(s)):
        return []
    v = v[v["group"].astype(str).isin(PREFIX_GROUPS)]
    b = s["budget"]
    b = b[b["budget"].astype(str) == str(s["meta"]["study"].get("variant_budget", "iso-power"))]
    rows, data = [], []
    for _, r in b.iterrows():  # the default first: no cache (the study's own search)
        data.append({"trace": r["trace"], "design": r["design"], "variant": "default",
                     "max_rate": r["max_rate"]})  # fmt: skip
    lq = s.get("latency_quantiles", pd.DataFrame())

    def ttft(tr, des, rate, q):  # the default's TTFT quantile at its max rate (seconds)
        if lq.empty or rate is None:
            return None
        m = lq[(lq["trace"] == tr) & (lq["design"] == des) & (lq["metric"] == "ttft_s")]
        m = m[(m["rate"] == rate) & ((m["quantile"] - q).abs() < 1e-9)]
        return float(m["value_s"].iloc[0]) if len(m) else None

    for (tr, des), g in v.groupby(["trace", "design"], sort=False):
        d0 = b[(b["trace"] == tr) & (b["design"] == des)]
        own = float(d0["max_rate"].iloc[0]) if len(d0) else None
        thr = d0["throughput_rps"].iloc[0] if len(d0) else None
        name = str(g["design_display"].iloc[0])
        cfg = config_text(g.iloc[0])
        rows.append([name, cfg, "no prefix cache (default)", num(own), "-", "-",
                     num(ttft(tr, des, own, 0.5), ".3f"), num(ttft(tr, des, own, 0.99), ".2f"),
                     num(thr)])  # fmt: skip
        for _, r in g.iterrows():
            if not _truthy(r.get("applies", True)):
                continue
            rows.append(
                [
                    name,
                    cfg,
                    str(r["variant_label"]),
                    rate_cell(r),
                    num(r.get("at_source_rate_prefix_hit_rate"), ".1%"),
                    num(r.get("at_source_rate_prefix_saved_fraction"), ".1%"),
                    num(r.get("at_source_rate_ttft_p50_s"), ".3f"),
                    num(r.get("at_source_rate_ttft_p99_s"), ".2f"),
                    num(r.get("at_source_rate_throughput_rps"), ".2f"),
                ]
            )
            data.append({k: r.get(k) for k in v.columns if k in r})
    figs.csv(pd.DataFrame(data), f"{s['slug']}_prefix_cache")
    header = ["design", "configuration", "setting", "max rate (req/s, change)",
              "block hit rate", "prompt tokens saved", "TTFT P50 (s)", "TTFT P99 (s)",
              "throughput (req/s)"]  # fmt: skip
    return [
        "### Prefix caching: hit rate, prefill tokens saved, TTFT and throughput",
        "",
        "Each design at the configuration of the study's own search (no prefix cache); each "
        "setting re-searches the max rate under the SLO there. Hit rate, prompt tokens saved "
        "(not recomputed), TTFT and throughput are at the default's max rate: the same offered "
        "load. The cache: LRU per instance, in the KV memory running requests leave free, "
        "512-token blocks; cache-aware routing sends a request to the prompt instance with the "
        "least pending prompt tokens less its cached prefix. " + made_by(s, "variants"),
        "",
        md_rows(header, rows, [False, False, False] + [True] * 6),
        "",
    ]


def study_extra_sections(figs: Figures, s: dict, studies: list[dict]) -> list[str]:
    """Every dependent-study section study ``s`` has tables for."""
    md: list[str] = []
    md += mismatch_section(figs, s)
    md += token_section(figs, s)
    md += load_section(figs, s)
    md += batch_section(figs, s)
    md += scheduler_section(figs, s)
    md += prefix_section(figs, s)
    md += sensitivity_section(figs, s, studies)
    md += seeds_section(figs, s)
    return md
