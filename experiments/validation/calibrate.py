"""KV-transfer calibration of a disaggregated deployment (prefill + decode + proxy).

For each prompt length L (``repeats`` times, each with a fresh random prompt so that no prefix
cache hits), one request at a time:
- ``prefill``: the prompt straight to the prefill instance, ``max_tokens=1`` (it also writes the
  KV through the connector): its wall time ``t_prefill``;
- ``proxy``: the prompt through the proxy, streamed, 2 tokens: its TTFT ``t_proxy`` and the
  proxy's own prefill-leg time (``X-Prefill-Seconds``) ``t_leg``; the bytes the connector wrote.

Hand-over = ``t_proxy - t_leg``: the decode instance's KV load, its recompute of the tokens the
connector does not inject (ExampleConnector injects whole blocks only; the rest of the prompt,
and at least its last token, is computed again), its first sampled token and the proxy's hop.
The fit is least squares ``handover = a + b * L`` over the per-length medians, with its residuals.
``t_proxy - t_prefill`` (the client's view, different prompts) is reported beside it.

In the simulator's terms (:mod:`replay.kv_transfer`): the transfer of L tokens takes
``kv_bytes_per_token * L / network_bytes_per_s``, so ``network_bytes_per_s = kv_bytes_per_token /
b`` (spec bytes per token of the model), and the fixed part ``a`` is the exposed per-transfer
cost (``kv_exposed_transfer_s``). The hand-over here is not overlapped with the prompt (the decode
instance starts loading after the prefill response), so ``layerwise_threshold_tokens`` must be
above every prompt (``serialized: true``). The simulator's serialized path has no fixed term
today; ``a`` is written for it and named as such.

With ``engine`` (a function returning the prefill instance's counters,
:func:`experiments.validation.engine_metrics.read_counters`), the counters are read before and
after each proxy request (one at a time): rows ``prefill_engine`` and ``prefill_engine_queue`` are
that request's time in the prefill instance's engine (vLLM's request_prefill_time: first
scheduled to first token, the connector's KV save included; request_queue_time), so the
prefill leg splits into engine work and the HTTP path (:func:`experiments.validation.serving_fit.
fit_legs`).

The decode instance's own log says how many tokens it injected ("Inject KV cache of N tokens",
ExampleConnector); ``injected`` reads those counts, so each hand-over row carries the measured
injected and recomputed tokens, and ``handover_split_fit`` fits ``a + b_injected * injected +
b_recomputed * recomputed`` over every measurement. Measured here (vLLM 0.32 CPU, block size 128,
ExampleConnector, 8 Dec 2026): prompts of 250, 384, 700 and 1500 tokens had 128, 256, 640 and
1408 tokens injected; prompts of 129 and 1025 tokens had none injected (the decode instance
recomputed the whole prompt: the connector misses at L mod block_size == 1,
:mod:`.serving_fit`'s doc), so the default lengths mix both kinds and the measured counts, not
the expected ones, go into the fit.

Outputs (run dir): ``kv_transfer.csv`` (every measurement) and ``kv_transfer.json`` (fit).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.validation.errors import StepError
from experiments.validation.sse import check_ok, events, run_client

STEP = "calibrate-splitwise"


def _prompt(seed: int, length: int, repeat: int, kind: int, vocab: int) -> list[int]:
    rng = np.random.default_rng([seed, length, repeat, kind, 7])
    return rng.integers(100, vocab, size=length).tolist()


async def _post_json(session, url: str, body: dict, timeout_s: float) -> tuple[float, dict]:
    import aiohttp

    t0 = time.perf_counter()
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        raw = await r.read()
        dt = time.perf_counter() - t0
        await check_ok(r, STEP, url)  # (aiohttp keeps the body read)
    return dt, json.loads(raw)


async def _stream_ttft(session, url: str, body: dict, timeout_s: float) -> tuple[float, float]:
    """(TTFT of a streamed completion, the proxy's X-Prefill-Seconds or NaN)."""
    import aiohttp

    t0 = time.perf_counter()
    ttft = math.nan
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        await check_ok(r, STEP, url)
        leg = float(r.headers.get("X-Prefill-Seconds", "nan"))
        async for chunk in events(r):
            # one chunk per token (vLLM; without a tokenizer its text is empty): the first
            # chunk with a choice is the first token
            if math.isnan(ttft) and chunk.get("choices"):
                ttft = time.perf_counter() - t0
    if math.isnan(ttft):
        raise StepError(STEP, f"{url}: the stream ended without a token")
    return ttft, leg


async def _measure(
    prefill_url: str,
    proxy_url: str,
    model: str,
    lengths: Sequence[int],
    repeats: int,
    seed: int,
    vocab: int,
    timeout_s: float,
    storage_bytes,
    warmup: int,
    injected,
    engine=None,
) -> list[dict]:
    import asyncio

    import aiohttp

    from experiments.validation.engine_metrics import diff

    rows: list[dict] = []
    async with aiohttp.ClientSession() as s:
        for w in range(warmup):
            for url in (f"{prefill_url}/v1/completions", f"{proxy_url}/v1/completions"):
                body = {"model": model, "prompt": _prompt(seed, 32, w, 9, vocab), "max_tokens": 2,
                        "ignore_eos": True, "temperature": 0.0}  # fmt: skip
                await _post_json(s, url, body, timeout_s)
        for L in lengths:
            for k in range(repeats):
                body = {"model": model, "prompt": _prompt(seed, L, k, 0, vocab), "max_tokens": 1,
                        "temperature": 0.0}  # fmt: skip
                dt, _ = await _post_json(s, f"{prefill_url}/v1/completions", body, timeout_s)
                rows.append({"prompt_tokens": L, "repeat": k, "kind": "prefill", "seconds": dt})
                before = storage_bytes()
                inj_before = len(injected())
                body = {"model": model, "prompt": _prompt(seed, L, k, 1, vocab), "max_tokens": 2,
                        "min_tokens": 2, "ignore_eos": True, "stream": True,
                        "temperature": 0.0}  # fmt: skip
                c0 = await asyncio.to_thread(engine) if engine else None
                ttft, leg = await _stream_ttft(s, f"{proxy_url}/v1/completions", body, timeout_s)
                if c0 is not None:  # the prefill instance's own time for this one request
                    d = diff(c0, await asyncio.to_thread(engine))
                    for kind, name in (("prefill_engine", "vllm:request_prefill_time_seconds_sum"),
                                       ("prefill_engine_queue",
                                        "vllm:request_queue_time_seconds_sum")):  # fmt: skip
                        rows.append({"prompt_tokens": L, "repeat": k, "kind": kind,
                                     "seconds": d[name]})  # fmt: skip
                wrote = storage_bytes() - before
                inj = injected()[inj_before:]
                n_inj = int(sum(inj))
                rows.append({"prompt_tokens": L, "repeat": k, "kind": "proxy_ttft",
                             "seconds": ttft, "kv_bytes": wrote})  # fmt: skip
                rows.append({"prompt_tokens": L, "repeat": k, "kind": "proxy_prefill_leg",
                             "seconds": leg})  # fmt: skip
                rows.append({"prompt_tokens": L, "repeat": k, "kind": "handover",
                             "seconds": ttft - leg, "kv_bytes": wrote,
                             "injected_tokens": n_inj, "recomputed_tokens": L - n_inj})  # fmt: skip
    return rows


def fit_line(x, y) -> dict:
    """Least squares y = a + b x: {'a', 'b', 'r2', 'max_abs_residual_s', 'points'}."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError("a line needs at least two distinct prompt lengths")
    A = np.vstack([np.ones_like(x), x]).T
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = a + b * x
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else math.nan
    return {
        "a": float(a),
        "b": float(b),
        "r2": r2,
        "max_abs_residual_s": float(np.max(np.abs(y - pred))),
        "points": int(x.size),
    }


def fit_plane(x1, x2, y) -> dict:
    """Least squares y = a + b1 x1 + b2 x2 (every measurement, not medians)."""
    x1 = np.asarray(x1, dtype=float)
    x2 = np.asarray(x2, dtype=float)
    y = np.asarray(y, dtype=float)
    A = np.vstack([np.ones_like(x1), x1, x2]).T
    (a, b1, b2), *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ np.array([a, b1, b2])
    ss = float(((y - y.mean()) ** 2).sum())
    return {
        "a": float(a),
        "b_injected_s_per_token": float(b1),
        "b_recomputed_s_per_token": float(b2),
        "r2": 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else math.nan,
        "max_abs_residual_s": float(np.max(np.abs(y - pred))),
        "points": int(y.size),
        "definition": "handover = a + b_injected * injected tokens (KV loaded) + b_recomputed * "
        "recomputed tokens (prompt tokens the decode instance computes again); injected "
        "tokens as the decode instance logged them",
    }


def summarize(rows: pd.DataFrame, kv_bytes_per_token: int, block_size: int) -> dict:
    """The fit and its terms for replay.kv_transfer from the measurement table."""
    med = rows.groupby(["kind", "prompt_tokens"])["seconds"].median().unstack(0)
    spread = rows.groupby(["kind", "prompt_tokens"])["seconds"].agg(
        lambda s: float((s.max() - s.min()) / s.median()) if s.median() else math.nan
    )
    lengths = med.index.to_numpy(dtype=float)
    h = fit_line(lengths, med["handover"].to_numpy())
    client = fit_line(lengths, (med["proxy_ttft"] - med["prefill"]).to_numpy())
    kvb = rows.loc[rows["kind"] == "handover"].groupby("prompt_tokens")["kv_bytes"].median()
    stored = fit_line(kvb.index.to_numpy(dtype=float), kvb.to_numpy(dtype=float))
    ho = rows.loc[rows["kind"] == "handover"]
    measured_inj = "injected_tokens" in ho.columns and ho["injected_tokens"].notna().any()
    inj_med = ho.groupby("prompt_tokens")["injected_tokens"].median() if measured_inj else None
    two = None
    if (
        measured_inj
        and ho["injected_tokens"].nunique() > 1
        and ho["recomputed_tokens"].nunique() > 1
    ):
        two = fit_plane(ho["injected_tokens"], ho["recomputed_tokens"], ho["seconds"])
    per_len = []
    for L in med.index:
        inj = block_size * ((int(L) - 1) // block_size)  # whole blocks, last token recomputed
        per_len.append(
            {
                "prompt_tokens": int(L),
                "prefill_s": float(med.loc[L, "prefill"]),
                "proxy_ttft_s": float(med.loc[L, "proxy_ttft"]),
                "proxy_prefill_leg_s": float(med.loc[L, "proxy_prefill_leg"]),
                "handover_s": float(med.loc[L, "handover"]),
                "handover_spread": float(spread.loc[("handover", L)]),
                "stored_bytes": float(kvb.get(L, math.nan)),
                "injected_tokens_expected": inj,
                "recomputed_tokens_expected": int(L) - inj,
                "injected_tokens_measured": (
                    float(inj_med.get(L, math.nan)) if inj_med is not None else None
                ),
            }
        )
    b = h["b"]
    return {
        "method": (
            "handover = proxy TTFT - proxy prefill leg (decode KV load + recompute of the "
            "tokens not injected + first token + proxy hop); least squares a + b * tokens over "
            "the per-length medians; fresh random prompts (no prefix-cache hits), one request "
            "at a time"
        ),
        "handover_fit": h,
        "handover_split_fit": two,
        "client_view_fit": {
            **client,
            "definition": "proxy TTFT - prefill instance's own TTFT (different prompts)",
        },
        "stored_bytes_fit": {**stored, "definition": "bytes the connector wrote per request"},
        "per_length": per_len,
        "kv_bytes_per_token_spec": kv_bytes_per_token,
        "block_size": block_size,
        "replay_kv_transfer": {
            "network_bytes_per_s": (kv_bytes_per_token / b) if b > 0 else None,
            "fixed_s": h["a"],
            "kv_exposed_transfer_s": h["a"],
            "layerwise_threshold_tokens": None,
            "serialized": True,
            "note": (
                "network_bytes_per_s = kv_bytes_per_token_spec / b; the hand-over starts after "
                "the prefill response (not overlapped: set layerwise_threshold_tokens above "
                "every prompt); fixed_s = a is a per-transfer cost that the serialized path of "
                "replay/kv_transfer.py does not model yet"
            ),
        },
    }


def calibrate_kv_transfer(
    prefill_url: str,
    proxy_url: str,
    out_dir: str | Path,
    *,
    model: str,
    lengths: Sequence[int] = (129, 250, 384, 700, 1025, 1500),
    repeats: int = 3,
    seed: int = 0,
    vocab: int = 32000,
    kv_bytes_per_token: int = 4096,
    block_size: int = 128,
    timeout_s: float = 120.0,
    storage_bytes=lambda: 0,
    injected=list,
    warmup: int = 1,
    max_wall_s: float = 600.0,
    engine=None,
) -> dict:
    """Measure and fit (see the module doc); writes kv_transfer.csv and kv_transfer.json."""
    from common.atomic import write_json_atomic, write_text_atomic

    if len(set(lengths)) < 2:
        raise StepError(STEP, "calibrate.lengths: needs at least two distinct prompt lengths")
    if repeats < 1:
        raise StepError(STEP, "calibrate.repeats: must be >= 1")
    t0 = time.monotonic()

    rows = run_client(STEP, _measure(prefill_url, proxy_url, model, lengths, repeats, seed,
                                     vocab, timeout_s, storage_bytes, warmup, injected, engine),
                      max_wall_s)  # fmt: skip
    cols = ["prompt_tokens", "repeat", "kind", "seconds", "kv_bytes", "injected_tokens",
            "recomputed_tokens"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    out = Path(out_dir)
    write_text_atomic(out / "kv_transfer.csv", df.to_csv(index=False, float_format="%.6f"))
    res = summarize(df, kv_bytes_per_token, block_size)
    res["wall_s"] = time.monotonic() - t0
    res["lengths"] = [int(x) for x in lengths]
    res["repeats"] = int(repeats)
    write_json_atomic(out / "kv_transfer.json", res)
    return res
