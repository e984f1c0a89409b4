"""Load-generator records -> contract-4 request table, token-time table and summary.json.

- ``requests.parquet``: the contract-4 columns (``replay.metrics.REQUEST_COLUMNS``) plus
  ``status``, ``reason``, ``requested_output_tokens``, ``sent_s``, ``lag_s``, ``http_status``,
  ``usage_prompt_tokens``, ``usage_completion_tokens``, ``prefill_leg_s``. Times are seconds; ``arrival_s`` is the
  request's **scheduled** send time (trace arrival / speedup), so TTFT and E2E include any time
  the client itself fell behind (``lag_s``: no coordinated omission). ``output_tokens`` is the
  number of tokens the server streamed (a short answer keeps its real length; the asked length
  is ``requested_output_tokens``). A request without a complete stream has NaN times.
  Requests never sent (a stopped run) are not rows. ``prompt_machine``/``token_machine`` are the
  instance a router chose (its ``X-Backend`` header; 0 without one: one endpoint), ``prefill_leg_s``
  a disaggregated proxy's prefill-leg wall time (its ``X-Prefill-Seconds`` header; NaN without
  one); ``queue_s``, ``kv_transfer_s`` are NaN and ``preemptions`` null: the client cannot see
  them.
- ``tokens.parquet``: ``request_id`` and ``token_times_s`` (a Parquet list of float64: each
  streamed token's arrival, seconds after the request's scheduled arrival), for requests that
  streamed at least one token.
- the summary: :func:`summarize`, the one adapter to the simulator's metric code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.loadgen.client import STATUSES, Record, RunState
from replay.metrics import REQUEST_COLUMNS

COMPLETED = ("ok", "short")


def request_table(records: list[Record]) -> pd.DataFrame:
    """The records of the requests that were sent (a run stopped early leaves the rest out:
    they are counted as ``not_sent`` in the client block, not as rejected requests)."""
    rows = []
    for r in records:
        if r.status == "not_sent":
            continue
        t = np.asarray(r.token_times_s, dtype=float) - r.arrival_s
        complete = r.status in COMPLETED and t.size > 0
        gaps = np.diff(t) if complete else np.zeros(0)
        rows.append(
            {
                "request_id": int(r.request_id),
                "arrival_s": float(r.arrival_s),
                "prompt_tokens": int(r.prompt_tokens),
                "output_tokens": int(t.size) if complete else int(r.output_tokens),
                "prompt_machine": max(r.backend, 0),
                "token_machine": max(r.backend, 0),
                "queue_s": math.nan,
                "ttft_s": float(t[0]) if complete else math.nan,
                "e2e_s": float(t[-1]) if complete else math.nan,
                "kv_transfer_s": math.nan,
                "tbt_mean_s": float(gaps.mean()) if gaps.size else math.nan,
                "tbt_max_s": float(gaps.max()) if gaps.size else math.nan,
                "preemptions": pd.NA,
                "status": r.status,
                "reason": r.reason,
                "requested_output_tokens": int(r.output_tokens),
                "sent_s": float(r.sent_s),
                "lag_s": float(r.lag_s),
                "http_status": int(r.http_status),
                "usage_prompt_tokens": int(r.usage_prompt_tokens),
                "usage_completion_tokens": int(r.usage_completion_tokens),
                "prefill_leg_s": float(r.prefill_leg_s),
            }
        )
    cols = [
        *REQUEST_COLUMNS,
        "status",
        "reason",
        "requested_output_tokens",
        "sent_s",
        "lag_s",
        "http_status",
        "usage_prompt_tokens",
        "usage_completion_tokens",
        "prefill_leg_s",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["preemptions"] = df["preemptions"].astype("Int64")
    for c in ("request_id", "prompt_tokens", "output_tokens", "prompt_machine", "token_machine"):
        df[c] = df[c].astype("int64")
    return df


def token_table(records: list[Record]) -> pd.DataFrame:
    rows = [
        (int(r.request_id), (np.asarray(r.token_times_s, dtype=float) - r.arrival_s).tolist())
        for r in records
        if r.token_times_s
    ]
    return pd.DataFrame(rows, columns=["request_id", "token_times_s"])


def token_gaps(requests: pd.DataFrame, tokens: pd.DataFrame) -> np.ndarray:
    """Every gap between consecutive tokens of every completed request (exact TBT sample)."""
    done = set(requests.loc[~requests["e2e_s"].isna(), "request_id"].tolist())
    parts = [
        np.diff(np.asarray(t, dtype=float))
        for rid, t in tokens.itertuples(index=False)
        if rid in done
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def summarize(requests: pd.DataFrame, tokens: pd.DataFrame, trim: float = 0.1) -> dict:
    """THE adapter to the simulator's metrics (one call, switch it here at merge):
    ``replay.metrics.request_summary`` on the contract-4 columns with the exact token gaps.
    No slowdown/SLO: a real endpoint's model has no reference PhaseModel here."""
    from replay.metrics import request_summary

    c4 = requests[REQUEST_COLUMNS].copy()
    c4["preemptions"] = c4["preemptions"].fillna(0).astype("int64")
    gaps = token_gaps(requests, tokens)
    return request_summary(c4, reference=None, gaps=(gaps, np.ones_like(gaps)), trim=trim)


def client_block(requests: pd.DataFrame, state: RunState, cpu_s: float, wall_s: float) -> dict:
    """What the load generator itself saw: statuses, lag, short answers, its own CPU cost."""
    sent = requests
    lag = sent["lag_s"].to_numpy(dtype=float)
    counts = {s: sum(r.status == s for r in state.records) for s in STATUSES}
    reasons = (
        requests.loc[~requests["status"].isin(COMPLETED)]
        .groupby("reason")
        .size()
        .sort_values(ascending=False)
        .head(5)
    )
    tokens = int(requests.loc[requests["status"].isin(COMPLETED), "output_tokens"].sum())
    usage = requests["usage_prompt_tokens"]
    return {
        "status": counts,
        "short": counts["short"],
        "failed": int(sum(counts[s] for s in ("error", "dropped", "timeout"))),
        "top_failure_reasons": {str(k): int(v) for k, v in reasons.items()},
        "lag_s": {
            "p50": float(np.quantile(lag, 0.5)) if lag.size else math.nan,
            "p99": float(np.quantile(lag, 0.99)) if lag.size else math.nan,
            "max": float(lag.max()) if lag.size else math.nan,
            "warnings": int(state.lag_warnings),
            "definition": "send time - scheduled time (scheduled = trace arrival / speedup)",
        },
        "prompt_usage_mismatch": int(((usage >= 0) & (usage != requests["prompt_tokens"])).sum()),
        "stopped_by": state.stopped_by or "end of trace",
        "wall_s": wall_s,
        "tokens_streamed": tokens,
        "output_tokens_per_s": tokens / wall_s if wall_s > 0 else math.nan,
        "cpu_s": cpu_s,
        "cpu_ms_per_request": 1e3 * cpu_s / len(sent) if len(sent) else math.nan,
        "cpu_us_per_token": 1e6 * cpu_s / tokens if tokens else math.nan,
        "cpu_definition": "user+system CPU of the load-generator process during the run",
    }
