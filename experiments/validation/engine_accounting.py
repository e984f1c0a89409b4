"""The engines' own accounting of each real run, beside the simulator's price of the same work.

The client sees a request's TTFT whole; the engines know where it went. Every real run's
``records.json`` holds, per instance, the differences over the run of vLLM's request and step
counters (:data:`experiments.validation.engine_metrics.ENGINE`); this module turns them into one
row per rung and instance (:func:`experiments.validation.engine_metrics.engine_means`):

- ``requests``, mean ``queue_ms`` (arrival at the engine core to first scheduled) and
  ``prefill_ms`` (first scheduled to first token) per request, ``steps`` and their mean
  ``tokens_per_step``, ``preemptions``;
- ``model_prefill_ms``: for the prefill instance of the disaggregated design (it computes each
  prompt alone, one output token), the mean over the run's requests of the simulator's price of
  that prompt's prefill (the rung's phase model plus the served per-iteration overhead at one
  request and the KV save, ``serving.kv_save_*``, times the rung's speed factor), so
  ``prefill_ms - model_prefill_ms`` is the prefill instance's work per request that the
  simulator does not price (batched prompts share an iteration: at load the engine's figure
  includes the other prompts of the step);
- ``client_prefill_leg_ms``: the disaggregated proxy's prefill-leg wall time as the client
  recorded it (``prefill_leg_s``, median): the engine's queue and prefill plus the HTTP legs.

Runs recorded before these counters (before 7 Dec 2026, 21:20) have no ``engine`` block: their rungs
give no rows. Nothing here is fitted; it is a record, the controls' input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import ExperimentError
from experiments.validation.engine_metrics import engine_means
from experiments.validation.iteration_audit import read_run

COLUMNS = ["design", "load", "instance", "runs", "requests", "queue_ms", "prefill_ms",
           "model_prefill_ms", "client_prefill_leg_ms", "steps", "tokens_per_step",
           "preemptions"]  # fmt: skip


def _records(run: Path) -> dict:
    """A real run's records.json (published: beside its tables; run dir: one folder up)."""
    for f in (run / "records.json", run.parent / "records.json"):
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, ValueError) as e:
                raise ExperimentError(f"{f}: {type(e).__name__}: {e}") from None
    return {}


def _model_prefill_ms(rung, prompts: np.ndarray) -> float:
    times, sv = rung.phase_times(), rung.serving()
    d1 = sv.iteration_s + sv.iteration_s_per_request
    per = [times.prefill(int(L)) + d1 + sv.kv_save_s + sv.kv_save_s_per_token * int(L)
           for L in prompts]  # fmt: skip
    return 1e3 * rung.speed_factor * float(np.mean(per)) if per else math.nan


def rung_rows(rung) -> list[dict]:
    """The rows of one rung (:class:`experiments.validation.iteration_audit.Rung`): per instance,
    its counters summed over the rung's real runs."""
    sums: dict[str, dict[str, float]] = {}
    prompts, legs, runs = [], [], 0
    for run in rung.runs:
        eng = _records(run).get("engine")
        if not eng:
            continue
        runs += 1
        for inst, d in eng.items():
            acc = sums.setdefault(inst, {})
            for k, v in d.items():
                v = float(v) if v is not None else math.nan
                acc[k] = acc.get(k, 0.0) + v
        req = read_run(run)[0]
        ok = req[req["status"].isin(("ok", "short"))]
        prompts.append(ok["prompt_tokens"].to_numpy())
        if "prefill_leg_s" in ok:
            legs.append(ok["prefill_leg_s"].to_numpy(dtype=float))
    rows = []
    for inst in sorted(sums):
        m = engine_means(sums[inst])
        split_prefill = rung.design == "splitwise" and inst == "prefill"
        leg = np.concatenate(legs) if legs else np.zeros(0)
        leg = leg[np.isfinite(leg)]
        rows.append({
            "design": rung.design, "load": rung.load, "instance": inst, "runs": runs, **m,
            "model_prefill_ms": (_model_prefill_ms(rung, np.concatenate(prompts))
                                 if split_prefill else math.nan),
            "client_prefill_leg_ms": (1e3 * float(np.median(leg))
                                      if split_prefill and leg.size else math.nan),
        })  # fmt: skip
    return rows


def table(rungs) -> pd.DataFrame:
    """:data:`COLUMNS`, one row per rung and instance, sorted by design, load and instance."""
    rows = [r for rung in rungs for r in rung_rows(rung)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["design", "load", "instance"], kind="stable", ignore_index=True)


def section(df: pd.DataFrame) -> list[str]:
    """The report's section (empty where no run recorded the counters)."""
    if df is None or df.empty:
        return []

    def f(x, fmt=".1f") -> str:
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    L = ["## The engines' own accounting (engine_accounting.csv)", "",
         "Per rung and instance, from vLLM's counters read before and after each real run: "
         "requests finished, mean queue (engine-core arrival to first scheduled) and prefill "
         "(first scheduled to first token) time per request, steps and their mean tokens, "
         "preemptions. For the disaggregated design's prefill instance, `model prefill` is the "
         "simulator's price of each prompt's prefill alone (phase model + served overhead at one "
         "request + KV save, times the rung's speed factor), and `client leg` the proxy's prefill-leg time "
         "(median, as the client recorded it). Measured, not fitted.", "",
         "| design | load | instance | requests | queue (ms) | prefill (ms) | model prefill (ms) "
         "| client leg (ms) | steps | tokens/step | preemptions |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in df.itertuples(index=False):
        L.append(f"| {r.design} | {r.load} | {r.instance} | {f(r.requests, '.0f')} | "
                 f"{f(r.queue_ms)} | {f(r.prefill_ms)} | {f(r.model_prefill_ms)} | "
                 f"{f(r.client_prefill_leg_ms)} | {f(r.steps, '.0f')} | "
                 f"{f(r.tokens_per_step)} | {f(r.preemptions, '.0f')} |")  # fmt: skip
    return L + [""]


__all__ = ["COLUMNS", "rung_rows", "section", "table"]
