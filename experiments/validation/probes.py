"""Serving probes: the serving component's terms (docs/serving.md, :mod:`replay.serving`)
measured on the running deployment, in the same run as the replays, never fitted on them.

Step ``probe-<design>`` (after ``calibrate-<design>``, before the simulation and the replays).
Every probe sends its own prompt ids (seeded by :func:`probe_seed`: never a replay's or the
calibration's, so no KV is ever reused) and writes its raw records to ``probes.csv`` (one row per
measurement); the fits and the terms go to ``serving.json``. The engine's own time is the fitted
phase model of the in-process profile (:class:`.serving_fit.PhaseTimes`; the fits are
:mod:`.serving_fit`'s), so each term is what the served path adds to it:

- **alpha** (``arrival_s``, ``arrival_s_per_token``, ``delivery_s``): one request at a time,
  streamed, ``max_tokens=1``, at each of ``alpha_lengths``; client TTFT minus
  ``prefill(L) + delta(1)`` (the one iteration, with the served overhead of that iteration from
  the delta probe), least squares ``alpha0 + alpha1 * L``. The split of ``alpha0``: a
  single-request probe cannot tell the arrival from the delivery apart (that needs a server-side
  timestamp), so **all of alpha0 goes to arrival_s and delivery_s is 0** (docs/serving.md: "when
  in doubt put it in arrival_s"); alpha1 is the arrival's per-token term. The disaggregated
  design takes no alpha (its client path is the two legs below): its alpha terms are 0.
- **delta** (``iteration_s``, ``iteration_s_per_request``): N concurrent streams (N in
  ``delta_streams``; N = 1 is the one long stream), each ``delta_output_tokens`` tokens of a
  ``delta_prompt_tokens`` prompt, all sent at once; the client's inter-token gaps where all N are
  decoding (between the last stream's first token and the first stream's last token); per N,
  the median gap minus the phase model's decode step at (B, C): B = N per engine (N / 2 for
  ``baseline2``'s two instances), C the streams' mean total context in that window; least
  squares ``delta0 + delta1 * B``.
- **legs** (``prefill_leg_*``, ``decode_leg_*``; splitwise): the KV calibration's records
  (:mod:`.calibrate`), kept whole: per request, the proxy's prefill leg (``X-Prefill-Seconds``)
  minus ``prefill(L) + delta(1)`` is the prefill leg; the hand-over (proxy TTFT less that leg)
  minus the decode instance's priced work (the tail chunk of the recomputed tokens over the
  injected ones, ``delta(1)``, and the KV load below) is the decode leg (it holds the client's
  hop to the proxy and the stream back, and the connector's hop); each a line in L. The decode
  leg is fitted over the hand-overs whose KV the decode instance injected only (the connector
  misses at ``L mod block_size == 1``: :mod:`.serving_fit` doc). Where the
  calibration read the prefill instance's counters around each request, its engine prefill time
  less ``prefill(L) + delta(1)`` is the **KV save** (``kv_save_*``, work on the prefill
  instance) and the prefill leg is ``X-Prefill-Seconds`` less the engine's queue and prefill
  time (:func:`experiments.validation.serving_fit.fit_legs`).
- **KV load** (``kv_load_s``, ``kv_load_s_per_token``; splitwise): ``stall_streams`` streams
  running on the decode instance (sent to it directly), a prompt of each of ``stall_lengths``
  injected through the proxy; the running streams' longest gap while it is handed over (median
  over the streams) minus the tail iteration's price (the chunk plus the N decodes, fused as
  :mod:`replay.vllm_policy` prices it, plus ``delta(N + 1)``), a line in the injected tokens
  the decode instance logged. Without a stall record with injected tokens, the calibration's
  per-injected-token slope (``handover_split_fit``) is taken, and said so.
- **KV capacity**: each engine's ``num_gpu_blocks`` and ``block_size`` from its Prometheus
  ``vllm:cache_config_info`` (fallback: the start-up log's "KV cache size: N tokens";
  :mod:`.engine_metrics`).

Every line is the best one with both coefficients >= 0 (the simulator's terms are >= 0;
:func:`.serving_fit.line_fit`), the unconstrained line beside it and named in the notes where a
bound holds. Every fit reports its points, RMS and largest absolute residual (s) and r2.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.validation.engine_metrics import engine_kv
from experiments.validation.errors import StepError
from experiments.validation.serving_fit import PhaseTimes, serving_terms
from experiments.validation.sse import check_ok, events, run_client

RECORD_COLUMNS = ["probe", "design", "streams", "stream", "repeat", "prompt_tokens",
                  "token_index", "seconds", "context_tokens", "injected_tokens",
                  "recomputed_tokens", "t_s"]  # fmt: skip


def probe_seed(seed: int, design: str) -> int:
    """The probes' prompt-id seed: its own per design (no replay or calibration shares it)."""
    h = hashlib.sha256(f"{seed}/{design}/serving-probes".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def probe_prompt(seed: int, kind: int, length: int, *idx: int, vocab: int = 32000) -> list[int]:
    rng = np.random.default_rng([seed, kind, length, *idx])
    return rng.integers(100, vocab, size=length).tolist()


# ---------------------------------------------------------------- measurement (async)
async def _stream(session, url: str, body: dict, timeout_s: float,
                  times: list[float] | None = None) -> tuple[float, list[float]]:
    """(send time, arrival time of each token chunk) of one streamed completion; ``times`` (if
    given) is filled as the tokens arrive, so a cancelled stream keeps what it received."""
    import aiohttp

    t0 = time.perf_counter()
    times = [] if times is None else times
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        await check_ok(r, "probe", url)
        async for chunk in events(r):
            if chunk.get("choices"):  # one chunk per token (vLLM, no tokenizer)
                times.append(time.perf_counter())
    if not times:
        raise StepError("probe", f"{url}: the stream ended without a token")
    return t0, times


def _body(model: str, prompt: list[int], tokens: int) -> dict:
    return {"model": model, "prompt": prompt, "max_tokens": tokens, "min_tokens": tokens,
            "ignore_eos": True, "stream": True, "temperature": 0.0}  # fmt: skip


async def measure_alpha(s, url, model, lengths, repeats, seed, vocab, timeout_s, design) -> list:
    rows = []
    for k in range(repeats):
        for L in lengths:
            t0, ts = await _stream(s, url, _body(model, probe_prompt(seed, 1, L, k, vocab=vocab), 1),
                                   timeout_s)  # fmt: skip
            rows.append({"probe": "alpha", "design": design, "streams": 1, "repeat": k,
                         "prompt_tokens": L, "seconds": ts[0] - t0, "t_s": t0})  # fmt: skip
    return rows


async def measure_delta(s, url, model, ns, prompt_tokens, out_tokens, seed, vocab, timeout_s,
                        design) -> list:  # fmt: skip
    rows = []
    for n in ns:
        res = await asyncio.gather(*[
            _stream(s, url, _body(model, probe_prompt(seed, 2, prompt_tokens, n, i, vocab=vocab),
                                  out_tokens), timeout_s) for i in range(n)])  # fmt: skip
        lo = max(ts[0] for _, ts in res)  # every stream decoding from here ...
        hi = min(ts[-1] for _, ts in res)  # ... to here
        for i, (_, ts) in enumerate(res):
            for j in range(1, len(ts)):
                if ts[j - 1] >= lo and ts[j] <= hi:
                    # the batch's context at this gap: every stream near token j
                    rows.append({"probe": "delta", "design": design, "streams": n, "stream": i,
                                 "prompt_tokens": prompt_tokens, "token_index": j,
                                 "seconds": ts[j] - ts[j - 1],
                                 "context_tokens": n * (prompt_tokens + j), "t_s": ts[j]})  # fmt: skip
        if not any(r["probe"] == "delta" and r["streams"] == n for r in rows):
            raise StepError("probe", f"delta probe: no gap with all {n} streams decoding (raise "
                            "probes.delta_output_tokens)")  # fmt: skip
    return rows


async def measure_stall(s, proxy_url, decode_url, model, n, lengths, repeats, seed, vocab,
                        timeout_s, injected, design, max_model_len: int,
                        prompt_tokens: int = 16) -> list:  # fmt: skip
    """Prompts through the proxy while ``n`` streams run on the decode instance (sent to it
    directly); the running streams are stopped (their requests aborted) once the injected
    request's first token is back."""
    rows = []
    for k in range(repeats):
        for L in lengths:
            got: list[list[float]] = [[] for _ in range(n)]
            tasks = [asyncio.create_task(_stream(
                s, f"{decode_url}/v1/completions",
                _body(model, probe_prompt(seed, 3, prompt_tokens, k, L, i, vocab=vocab),
                      max_model_len - prompt_tokens - 1),
                timeout_s, got[i])) for i in range(n)]  # fmt: skip
            while min(len(g) for g in got) < 8:  # every running stream is decoding
                if any(t.done() for t in tasks):
                    await asyncio.gather(*tasks)  # its error, or a stream that ended early
                    raise StepError("probe", "stall probe: a running stream ended early")
                await asyncio.sleep(0.02)
            before = len(injected())
            t0, ts = await _stream(s, f"{proxy_url}/v1/completions",
                                   _body(model, probe_prompt(seed, 4, L, k, vocab=vocab), 1),
                                   timeout_s)  # fmt: skip
            await asyncio.sleep(0.3)  # the iteration after the hand-over, seen by every stream
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            inj = injected()[before:]
            n_inj = int(sum(inj)) if inj else None
            gaps, ctx = [], []
            for g in got:
                # the gap that ends at or just after the first token: the tail's iteration
                cand = [(g[j] - g[j - 1], j) for j in range(1, len(g)) if t0 <= g[j] <= ts[0] + 0.2]
                if cand:
                    gmax, j = max(cand)
                    gaps.append(gmax)
                    ctx.append(prompt_tokens + j)
            if not gaps:
                continue
            rows.append({"probe": "stall", "design": design, "streams": n, "repeat": k,
                         "prompt_tokens": L, "seconds": float(np.median(gaps)),
                         "context_tokens": int(np.mean(ctx) * n), "injected_tokens": n_inj,
                         "recomputed_tokens": (L - n_inj) if n_inj is not None else None,
                         "t_s": t0})  # fmt: skip
    return rows


def run_probes(design: str, dep, pc, out_dir: Path, *, model: str, seed: int, vocab: int,
               times: PhaseTimes, block_size: int, max_num_seqs: int, max_model_len: int,
               cal: dict | None = None,
               cal_rows: pd.DataFrame | None = None) -> dict:  # fmt: skip
    """Every probe of ``design`` against the running deployment ``dep``; writes probes.csv and
    serving.json into ``out_dir``; returns serving.json's content. Stream counts above what the
    engines run at once (``max_num_seqs`` each) are left out (they would queue)."""
    from common.atomic import write_json_atomic, write_text_atomic

    ps = probe_seed(seed, design)
    url = f"{dep.url}/v1/completions"
    per_engine = 2 if design == "baseline2" else 1
    ns = [int(n) for n in pc.delta_streams if n <= max_num_seqs * per_engine]
    t_start = time.monotonic()

    async def go():
        import aiohttp

        async with aiohttp.ClientSession() as s:
            # warm-up (its own ids): the first request of a fresh server is slow
            await _stream(s, url, _body(model, probe_prompt(ps, 9, 16, vocab=vocab), 2),
                          pc.timeout_s)  # fmt: skip
            rows = await measure_delta(s, url, model, ns,
                                       int(pc.delta_prompt_tokens), int(pc.delta_output_tokens),
                                       ps, vocab, pc.timeout_s, design)  # fmt: skip
            if design == "splitwise":
                rows += await measure_stall(s, dep.url, dep.instances["decode"], model,
                                            int(pc.stall_streams), list(pc.stall_lengths),
                                            int(pc.stall_repeats), ps, vocab, pc.timeout_s,
                                            dep.injected_tokens, design,
                                            max_model_len)  # fmt: skip
            else:
                rows += await measure_alpha(s, url, model, list(pc.alpha_lengths),
                                            int(pc.alpha_repeats), ps, vocab, pc.timeout_s,
                                            design)  # fmt: skip
            return rows

    rows = run_client(f"probe-{design}", go(), float(pc.timeout_s), "probes.timeout_s")
    df = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    out = Path(out_dir)
    write_text_atomic(out / "probes.csv", df.to_csv(index=False, float_format="%.6f"))
    try:
        res = serving_terms(design, df, times, cal, cal_rows, per_engine)
    except ValueError as e:
        raise StepError(f"probe-{design}", str(e)) from None
    res["engines"] = {n: engine_kv(u, dep.servers[n].log, block_size)
                      for n, u in dep.instances.items()}  # fmt: skip
    res["probe_seed"] = ps
    res["wall_s"] = time.monotonic() - t_start
    res["records"] = str(out / "probes.csv")
    write_json_atomic(out / "serving.json", res)
    return res


__all__ = ["run_probes", "probe_seed", "probe_prompt", "measure_alpha", "measure_delta",
           "measure_stall", "RECORD_COLUMNS"]  # fmt: skip
