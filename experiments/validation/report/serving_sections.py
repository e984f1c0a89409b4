"""The report's serving component: each measured term (serving.csv, from the ``probe-<design>``
steps) with its unit, probe and fit error, the engines' KV blocks, and the gap that remains per
component in absolute milliseconds."""

from __future__ import annotations

import math

import pandas as pd


def serving_table(c, steps) -> pd.DataFrame:
    """serving.csv: per design, each serving term, its value, unit, probe and fit error."""
    from experiments.validation.serving_fit import describe_rows

    rows = []
    for design in c.designs:
        res = steps.results.get(f"probe-{design}")
        if res:
            rows += [{"design": design, **r} for r in describe_rows(res)]
    return pd.DataFrame(rows)


def _ms(x) -> str:
    return "" if x is None or not math.isfinite(float(x)) else f"{float(x) * 1e3:.2f}"


def serving_section(c, steps, table: pd.DataFrame) -> list[str]:
    """The serving component's measured values (probe-<design>) and the engines' KV blocks."""
    from replay.serving import describe

    if not len(table):
        return ["## Serving component", "", describe(None) + " (no serving probe ran: "
                "probes.enabled=false or profile.mode=skip.)", ""]  # fmt: skip
    L = ["## Serving component (probe-<design>, serving.csv)", "",
         "Measured by the serving probes on the running deployment, after the calibration and "
         "before the replays, on their own prompt ids (experiments/validation/probes.py; "
         "docs/serving.md): alpha = client TTFT of lone one-token requests less the phase "
         "model's prefill and delta(1), all of alpha0 in `arrival_s` (`delivery_s` 0: a "
         "client-side probe cannot split them); delta = client inter-token gaps of N concurrent "
         "streams less the phase model's decode step; the legs from the KV calibration's "
         "records; the KV load from prompts injected into running decode streams. Fit error: "
         "points, RMS and largest absolute residual of the line fit, ms.", "",
         "| design | term | value | unit | probe | fit points | fit RMS (ms) | max residual (ms) |",
         "|" + "---|" * 8]  # fmt: skip
    for r in table.itertuples(index=False):
        pts = "" if r.fit_points is None or pd.isna(r.fit_points) else f"{int(r.fit_points)}"
        L.append(f"| {r.design} | `{r.term}` | {r.value:.4g} | {r.unit} | {r.probe} | {pts} | "
                 f"{_ms(r.fit_rms_s)} | {_ms(r.fit_max_abs_residual_s)} |")  # fmt: skip
    L.append("")
    for design in c.designs:
        res = steps.results.get(f"probe-{design}") or {}
        eng = res.get("engines") or {}
        if eng:
            L.append(f"- {design}: engines' KV capacity (`scheduler.vllm.num_gpu_blocks`): " + ", ".join(
                f"{n} {e.get('num_gpu_blocks')} blocks x {e.get('block_size')} tokens "
                f"({e.get('source')})" for n, e in sorted(eng.items())))  # fmt: skip
        for note in res.get("notes") or []:
            L.append(f"- {design}: {note}")
    return [*L, ""]


def gap_breakdown(df: pd.DataFrame, c, steps, traces: pd.DataFrame) -> list[str]:
    """The remaining gap (real - sim, P50) in absolute ms per design and load, beside the
    serving component's share the simulator already holds (alpha at the load's mean prompt,
    delta(1) per iteration, the split path's legs): what is left is not explained by a
    measured term."""
    per = "design" in traces.columns  # a ladder's loads are placed per design
    keys = (zip(traces["design"], traces["load"], strict=True) if per else traces["load"]) if len(
        traces) else []  # fmt: skip
    mean_prompt = dict(zip(keys, traces["prompt_tokens_mean"], strict=True)) if len(
        traces) else {}  # fmt: skip
    L = ["## Remaining gap per component, absolute ms (P50, real - sim)", "",
         "| design | load | TTFT gap | alpha(mean L) in sim | legs in sim | TBT gap | delta(1) in "
         "sim | E2E gap |", "|" + "---|" * 8]  # fmt: skip

    def gap(g, m):
        h = g[(g.metric == m) & (g.stat == "p50")]
        return float(h["real"].iloc[0] - h["sim"].iloc[0]) if len(h) else math.nan

    for (design, load), g in df.groupby(["design", "load"], sort=False):
        t = (steps.results.get(f"probe-{design}") or {}).get("terms") or {}
        Lm = mean_prompt.get((design, load) if per else load, math.nan)
        alpha = t.get("arrival_s", 0) + t.get("delivery_s", 0) + t.get("arrival_s_per_token", 0) * Lm
        legs = (t.get("prefill_leg_s", 0) + t.get("decode_leg_s", 0)
                + (t.get("prefill_leg_s_per_token", 0) + t.get("decode_leg_s_per_token", 0)) * Lm)
        d1 = t.get("iteration_s", 0) + t.get("iteration_s_per_request", 0)
        L.append(f"| {design} | {load} | {_ms(gap(g, 'ttft_s'))} | {_ms(alpha)} | {_ms(legs)} | "
                 f"{_ms(gap(g, 'tbt_s'))} | {_ms(d1)} | {_ms(gap(g, 'e2e_s'))} |")  # fmt: skip
    L += ["", "A gap column is what the simulator still misses with the serving component in it; "
          "the 'in sim' columns are the measured terms it already adds (zero where no probe "
          "ran; 'legs' holds the measured prefill and decode legs at the mean prompt, the decode "
          "leg simulated as decode-instance work where simulate.decode_leg_as=work; delta(1) is "
          "the probe's, before a rung's sentinel adds to it). Queueing and scheduling under load "
          "are the rest; no control measured them apart.", ""]  # fmt: skip
    return L
