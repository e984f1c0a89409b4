"""The report section "Does phase splitting pay with today's engines?": a study with several
profile sets (``study.profile_sets``: the paper's DGX profiles beside sets composed from
AIConfigurator's measured operator latencies) side by side: the headline ratios per set, which
designs win and the prompt:token split they chose, and what changed between the sets' phase
models (per-iteration overhead, prefill against decode speed, memory). Every set says where each
GPU's profile came from (reference, measured, composed or derived) and which slowdown reference
it was judged against."""

from __future__ import annotations

import warnings

import pandas as pd

from experiments.report.describe import HEADLINE_BASELINES, design_display
from experiments.report.format import config_text, md_rows, num
from experiments.report.plotting import OKABE_ITO, Figures, style
from experiments.report.sections.engines_fit import held_out_section

#: context per request of the decode steps compared (64 x 512 lies inside the paper's range)
CONTEXT = 512
AIC_CREDIT = (
    "Composed tables come from AIConfigurator's per-operation latencies measured inside the "
    'engines (Xu et al., "AIConfigurator", arXiv 2601.06288; NVIDIA\'s aiconfigurator-core, '
    "Apache-2.0): composed from measured operator latencies, never measured end to end here."
)


def has_sets(s: dict) -> bool:
    b = s["budget"]
    return not b.empty and "profile_set" in b.columns and b["profile_set"].nunique() > 1


def own_rows(b: pd.DataFrame) -> pd.DataFrame:
    """The study's own profile set's rows (all rows in a study of one set)."""
    if "profile_set" not in b.columns or b["profile_set"].nunique() <= 1:
        return b
    return b[b["profile_set"] == b["profile_set"].iloc[0]]


def own_table(t: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The rows of a points or latency table ``t`` that belong to the own set's budget rows
    ``b`` (:func:`own_rows`): by ``profile_set`` where ``t`` names it; a latency table written
    before it did, by (trace, design, best rate) of the own set's budget rows."""
    if t.empty or "profile_set" not in b.columns:
        return t
    own = b["profile_set"].iloc[0] if len(b) else None
    if "profile_set" in t.columns:
        return t[t["profile_set"] == own]
    if "best_rate" not in t.columns:
        return t
    keys = set(b[["trace", "design", "max_rate"]].itertuples(index=False, name=None))
    hit = [
        k in keys for k in t[["trace", "design", "best_rate"]].itertuples(index=False, name=None)
    ]
    return t[hit]


def _sets(b: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(b["profile_set"]))


def _set_title(b: pd.DataFrame, name: str) -> str:
    r = b[b["profile_set"] == name].iloc[0]
    return f"{name} ({r['model']})"


def ratio_table(b: pd.DataFrame, vs: str) -> tuple[list[str], list[list[str]]]:
    """Splitwise designs' max rate over baseline ``vs``, one column per set: 'ratio (config)'."""
    sets = _sets(b)
    col = f"max_rate_vs_{vs}"
    rows = []
    split = b[b["kind"] == "splitwise"]
    for (tr, bud), grp in split.groupby(["trace_display", "budget"], sort=False):
        for des in dict.fromkeys(grp["design_display"].str.replace(" (derived)", "", regex=False)):
            cells = []
            for name in sets:
                r = grp[
                    (grp["profile_set"] == name)
                    & (grp["design_display"].str.replace(" (derived)", "", regex=False) == des)
                ]
                if r.empty or pd.isna(r[col].iloc[0]):
                    cells.append("-")
                    continue
                r = r.iloc[0]
                mark = "*" if "derived" in str(r.get("profile_kinds", "")) else ""
                cells.append(f"{num(r[col])}x{mark} ({config_text(r)})")
            if any(c != "-" for c in cells):
                rows.append([f"{tr}, {bud}", des, *cells])
    return ["trace, budget", "design", *(_set_title(b, n) for n in sets)], rows


def winners(b: pd.DataFrame) -> list[str]:
    """Per set and budget: the design with the highest rate, and the best Splitwise design over
    the best baseline."""
    out = []
    for (tr, bud, name), g in b.groupby(["trace_display", "budget", "profile_set"], sort=False):
        g = g.dropna(subset=["max_rate"])
        if g.empty:
            continue
        best = g.loc[g["max_rate"].idxmax()]
        sp, bl = g[g["kind"] == "splitwise"], g[g["kind"] == "baseline"]
        line = (
            f"- {name} ({best['model']}), {tr}, {bud}: {best['design_display']} "
            f"({config_text(best)}) sustains {best['max_rate']:.1f} req/s"
        )
        if not sp.empty and not bl.empty:
            s1, b1 = sp.loc[sp["max_rate"].idxmax()], bl.loc[bl["max_rate"].idxmax()]
            verdict = "pays" if s1["max_rate"] > b1["max_rate"] else "does not pay"
            line += (
                f"; best Splitwise {s1['design_display']} ({config_text(s1)}) = "
                f"{s1['max_rate'] / b1['max_rate']:.2f}x the best baseline "
                f"{b1['design_display']} ({config_text(b1)}): splitting {verdict}"
            )
        out.append(line)
    return out


def phase_facts(b: pd.DataFrame, reserve: float) -> pd.DataFrame:
    """Per set and GPU: the fitted per-iteration overhead, decode steps, a prefill, the prefill
    against decode speed, KV capacity of an instance, and where the profile came from."""
    from characterize.modeling.phase_model import load_phase_models
    from characterize.modeling.specs import SpecError, list_specs, load_machine, load_model
    from replay.designs import instance_kv_capacity

    machines = {}
    for m in list_specs("machines"):
        try:
            spec = load_machine(m)
        except SpecError:
            continue
        machines.setdefault(spec.profile_gpu, spec)
    rows = []
    seen = set()
    for _, r in b.iterrows():
        kinds = dict(
            part.split(": ", 1) for part in str(r.get("profile_kinds") or "").split("; ") if part
        )
        for gpu, kind in kinds.items():
            key = (r["profile_set"], gpu)
            if key in seen or gpu not in machines:
                continue
            seen.add(key)
            try:
                pm = load_phase_models(r["profiles_path"], reference=None).get(r["model"], gpu, 8)
            except Exception:  # noqa: BLE001 - a profile file of another machine: skip the row
                continue
            with warnings.catch_warnings():  # inside every set's measured range
                warnings.simplefilter("ignore")
                d0 = pm.decode_coefficients()[0]
                dec1 = pm.decode_time(1, CONTEXT)
                dec64 = pm.decode_time(64, 64 * CONTEXT)
                pre = pm.prefill_time([2048])
            spec = machines[gpu]
            rows.append(
                {
                    "profile_set": r["profile_set"],
                    "model": r["model"],
                    "gpu": gpu,
                    "kind": kind,
                    "decode_overhead_ms": 1e3 * d0,
                    "decode_b1_ms": 1e3 * dec1,
                    "decode_b64_ms": 1e3 * dec64,
                    "prefill_2048_ms": 1e3 * pre,
                    # tokens/s of a 2048-token prefill over tokens/s of a batch-64 decode step
                    "prefill_vs_decode": (2048 / pre) / (64 / dec64),
                    "kv_tokens_per_instance": instance_kv_capacity(
                        spec, load_model(r["model"]), 8, reserve
                    ),
                }
            )
    return pd.DataFrame(rows)


def _row_source(path: str, model: str) -> str:
    """The ``source`` of a row of ``model`` in a set's profile file, one not derived where there
    is one ('' if unreadable)."""
    from characterize.modeling.profiles import read_profile_source

    try:
        df = read_profile_source(path)[0]
    except Exception:  # noqa: BLE001 - a profile file of another machine: nothing to show
        return ""
    rows = df[df["model"] == model]
    rows = rows if len(rows) else df
    plain = rows[~rows["source"].str.contains("derived", na=False)]
    return str((plain if len(plain) else rows)["source"].iloc[0])


def fig_sets(figs: Figures, b: pd.DataFrame, name: str) -> str | None:
    """Max rate under the SLO of each design on each set, one panel per budget."""
    data = b.dropna(subset=["max_rate"])[
        ["trace_display", "budget", "profile_set", "design_display", "max_rate"]
    ].copy()
    if data.empty:
        return None
    plt, sns = style()
    colors = list(OKABE_ITO.values())
    g = sns.catplot(
        data=data,
        kind="bar",
        errorbar=None,
        y="design_display",
        x="max_rate",
        hue="profile_set",
        col="budget",
        row="trace_display" if data["trace_display"].nunique() > 1 else None,
        height=4.5,
        aspect=0.9,
        sharex=False,
        palette=colors[: data["profile_set"].nunique()],
    )
    g.set_axis_labels("max rate under SLO (req/s)", "")
    g.set_titles("{col_name}")
    return figs.save(g.figure, f"{name}_profile_sets", data)


def _sets_table(b: pd.DataFrame) -> list[str]:
    """The sets: what each is, its model, each GPU's profile kind and the slowdown reference;
    then one ``source`` of each set's rows."""
    md = [
        "| set | what | model | each GPU's profile | slowdown reference |",
        "|---|---|---|---|---|",
    ]
    sources = []
    for n in _sets(b):
        r = b[b["profile_set"] == n]
        kinds = sorted({p for k in r["profile_kinds"].dropna() for p in str(k).split("; ") if p})
        what = r["profile_set_text"].iloc[0]
        if what == "paper":
            what = "the Splitwise paper's DGX measurements (its 2023 engine)"
        md.append(
            f"| {n} | {what} | {r['model'].iloc[0]} | "
            f"{', '.join(kinds)} | {r['slo_reference'].iloc[0]} |"
        )
        src = _row_source(r["profiles_path"].iloc[0], r["model"].iloc[0])
        if src:
            sources.append(f"- {n}: `{src}`")
    return md + [
        "",
        "Kinds: *reference* = the paper's DGX measurements; *measured* = a table under "
        "results/profiles; *composed* = AIConfigurator operator latencies composed into "
        "iterations (power modelled from the GPU spec, not measured); *derived* = scaled from the "
        "set's closest GPU by the GPU spec (characterize.modeling.derive; power: target budget x "
        "source shape), marked `*` below and `(derived)` in design names. A set judged against "
        "its own A100 has an SLO relative to that engine on the paper's reference GPU; one judged "
        "against the paper's DGX-A100 has fixed per-request latency targets. Each set's rows "
        "say where they came from (one GPU's `source` shown):",
        "",
        *sources,
        "",
    ]


def _ratio_tables(b: pd.DataFrame) -> list[str]:
    """Per headline baseline (the newest GPU's first): the Splitwise designs' ratios per set."""
    md: list[str] = []
    for vs in reversed(HEADLINE_BASELINES):
        if f"max_rate_vs_{vs}" not in b.columns or b[f"max_rate_vs_{vs}"].isna().all():
            continue
        header, rows = ratio_table(b, vs)
        shown = design_display(vs)
        if rows:
            md += [
                f"### Headline ratios over {shown}, per set",
                "",
                f"Each Splitwise design's max rate under the SLO over {shown}'s on the same set "
                "and budget, and the prompt:token machines its search chose (`-`: the design or "
                "the baseline is not in that set).",
                "",
                md_rows(header, rows, [False, False] + [True] * (len(header) - 2)),
                "",
            ]
    return md


def _facts_table(figs: Figures, facts: pd.DataFrame, name: str, reserve: float) -> list[str]:
    """What changed between the sets' phase models (:func:`phase_facts`)."""
    if facts.empty:
        return []
    figs.csv(facts, f"{name}_phase_facts")
    rows = [
        [r["profile_set"], r["model"], r["gpu"], r["kind"], num(r["decode_overhead_ms"], ".1f"),
         num(r["decode_b1_ms"], ".1f"), num(r["decode_b64_ms"], ".1f"),
         num(r["prefill_2048_ms"], ".0f"), num(r["prefill_vs_decode"], ".1f"),
         f"{int(r['kv_tokens_per_instance']):,}"]
        for _, r in facts.iterrows()
    ]  # fmt: skip
    header = ["set", "model", "GPU", "profile", "d0 (ms)", "decode b1 (ms)", "decode b64 (ms)",
              "prefill 2048 (ms)", "prefill/decode tok/s", "KV tokens"]  # fmt: skip
    return [
        "### What changed",
        "",
        "The fitted phase models of each set (TP-8 instance): the decode step's fixed cost "
        "`d0` (the per-iteration overhead), a decode step at batch 1 and at batch 64 "
        f"({CONTEXT} tokens of context each), a 2,048-token prefill, the prefill's tokens/s over "
        "the batch-64 decode step's (how much faster a prompt machine turns tokens out than a "
        "token machine), and the KV tokens an instance holds (memory: GPU memory less the "
        f"{reserve:.0%} reserve and the model spec's weights: 1 byte each in the fp8 spec, "
        f"KV in bf16). Data: `figures/{name}_phase_facts.csv`.",
        "",
        md_rows(header, rows, [False, False, False, False] + [True] * 6),
        "",
    ]


def engines_section(figs: Figures, s: dict) -> list[str]:
    """The section, for a study with several profile sets (else nothing)."""
    if not has_sets(s):
        return []
    b = s["budget"].copy()
    name = s.get("slug", s["meta"]["study"]["name"])
    md = ["## Does phase splitting pay with today's engines?", ""]
    md += [
        "The same iso-power and iso-cost searches on each profile set: the Splitwise paper's "
        "2023 DGX profiles beside tables composed for today's engines. " + AIC_CREDIT,
        "",
    ]
    md += _sets_table(b)
    md += _ratio_tables(b)
    md += ["### Which designs win", ""] + winners(b) + [""]
    reserve = float((s["meta"].get("scheduler") or {}).get("kv_reserve_fraction", 0.1))
    md += _facts_table(figs, phase_facts(b, reserve), name, reserve)
    md += held_out_section()
    fig = fig_sets(figs, b, name)
    if fig:
        md += [f"![max rate per profile set]({fig})", ""]
    return md
