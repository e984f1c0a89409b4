"""Serving probes: the serving component's terms (docs/serving.md, :mod:`replay.serving`)
measured on the running deployment, in the same run as the replays, never fitted on them.

Step ``probe-<design>`` (after ``calibrate-<design>``, before the simulation and the replays).
Every probe sends its own prompt ids (seeded by :func:`probe_seed`: never a replay's or the
calibration's, so no KV is ever reused) and writes its raw records to ``probes.csv`` (one row per
measurement); the fits and the terms go to ``serving.json``. The engine's own time is the fitted
phase model of the in-process profile (:class:`PhaseTimes`), so each term is what the served path
adds to it:

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
  hop to the proxy and the stream back, and the connector's hop); each a line in L.
- **KV load** (``kv_load_s``, ``kv_load_s_per_token``; splitwise): ``stall_streams`` streams
  running on the decode instance (sent to it directly), a prompt of each of ``stall_lengths``
  injected through the proxy; the running streams' longest gap while it is handed over (median
  over the streams) minus the tail iteration's price (the chunk plus the N decodes, fused as
  :mod:`replay.vllm_policy` prices it, plus ``delta(N + 1)``), a line in the injected tokens
  the decode instance logged. Without a stall record with injected tokens, the calibration's
  per-injected-token slope (``handover_split_fit``) is taken, and said so.
- **KV capacity**: each engine's ``num_gpu_blocks`` and ``block_size`` from its Prometheus
  ``vllm:cache_config_info`` (fallback: the start-up log's "KV cache size: N tokens").

A fitted value below zero is written as 0 (the simulator's terms are >= 0) with the raw fit
beside it. Every fit reports its points, RMS and largest absolute residual (s) and r2.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.validation.errors import StepError

RECORD_COLUMNS = ["probe", "design", "streams", "stream", "repeat", "prompt_tokens",
                  "token_index", "seconds", "context_tokens", "injected_tokens",
                  "recomputed_tokens", "t_s"]  # fmt: skip

#: each serving term: (unit, the probe that measures it)
TERMS = {
    "arrival_s": ("s", "alpha"),
    "arrival_s_per_token": ("s/prompt token", "alpha"),
    "delivery_s": ("s", "alpha (0: not separable from arrival)"),
    "iteration_s": ("s", "delta"),
    "iteration_s_per_request": ("s/request", "delta"),
    "prefill_leg_s": ("s", "legs (calibration)"),
    "prefill_leg_s_per_token": ("s/prompt token", "legs (calibration)"),
    "decode_leg_s": ("s", "legs (calibration)"),
    "decode_leg_s_per_token": ("s/prompt token", "legs (calibration)"),
    "kv_load_s": ("s/hand-over", "stall"),
    "kv_load_s_per_token": ("s/injected token", "stall"),
}


def probe_seed(seed: int, design: str) -> int:
    """The probes' prompt-id seed: its own per design (no replay or calibration shares it)."""
    h = hashlib.sha256(f"{seed}/{design}/serving-probes".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def probe_prompt(seed: int, kind: int, length: int, *idx: int, vocab: int = 32000) -> list[int]:
    rng = np.random.default_rng([seed, kind, length, *idx])
    return rng.integers(100, vocab, size=length).tolist()


# ---------------------------------------------------------------- the engine's own time
class PhaseTimes:
    """The engine's iteration times from a phase model (``prefill_time_sums``,
    ``decode_time``): what the probes subtract. ``tail`` prices a chunk of ``x`` prompt tokens of
    a request holding ``o`` already, with ``B`` decodes of ``C`` context tokens, as
    :mod:`replay.vllm_policy` prices a fused iteration."""

    def __init__(self, pm):
        from replay.phase import decode_coefficients

        self.pm = pm
        self.c = float(decode_coefficients(pm)[2])

    @classmethod
    def from_source(cls, source: str, model: str, gpu: str) -> PhaseTimes:
        from characterize.modeling.phase.model_set import load_phase_models

        return cls(load_phase_models(str(source), reference=None).get(model, gpu, 1))

    def prefill(self, L: int) -> float:
        return float(self.pm.prefill_time_sums(1, int(L), int(L) ** 2))

    def decode(self, B: float, C: float) -> float:
        return float(self.pm.decode_time(max(1, round(B)), int(C)))

    def tail(self, o: int, x: int, B: int = 0, C: int = 0) -> float:
        S = (o + x) ** 2 - o**2
        if B <= 0:
            return float(self.pm.prefill_time_sums(1, int(x), int(S)))
        return float(self.pm.prefill_time_sums(1, int(x) + B, int(S) + B)) + self.c * C


# ---------------------------------------------------------------- fits (pure)
def line_fit(x, y, what: str) -> dict:
    """Least squares y = a + b x with its errors: {'a', 'b', 'points', 'rms_s',
    'max_abs_residual_s', 'r2'}; ValueError naming ``what`` without two distinct x."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError(f"{what}: a line needs records at two distinct values at least")
    A = np.vstack([np.ones_like(x), x]).T
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - (a + b * x)
    ss = float(((y - y.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b), "points": int(x.size),
            "rms_s": float(np.sqrt(np.mean(res**2))),
            "max_abs_residual_s": float(np.max(np.abs(res))),
            "r2": 1.0 - float((res**2).sum()) / ss if ss > 0 else math.nan}  # fmt: skip


def _delta_at(delta: dict | None, B: float) -> float:
    """delta(B) as the simulator adds it: each coefficient clamped at 0, as written."""
    if not delta:
        return 0.0
    return max(0.0, delta["a"]) + max(0.0, delta["b"]) * B


def fit_delta(records: pd.DataFrame, times: PhaseTimes, per_engine: int = 1) -> dict:
    """delta(B) = delta0 + delta1 * B from the delta probe's gaps (module doc)."""
    d = records[records["probe"] == "delta"]
    pts = []
    for n, g in d.groupby("streams"):
        B = float(n) / per_engine
        gap = float(g["seconds"].median())
        C = float(g["context_tokens"].median()) / per_engine
        step = times.decode(B, C)
        pts.append({"streams": int(n), "batch": B, "gap_s": gap, "context_tokens": C,
                    "engine_step_s": step, "delta_s": gap - step})  # fmt: skip
    fit = line_fit([p["batch"] for p in pts], [p["delta_s"] for p in pts], "probe delta")
    return {**fit, "per_n": pts,
            "definition": "median client inter-token gap with N streams decoding - the phase "
            "model's decode step at (B, C); a + b * B"}  # fmt: skip


def fit_alpha(records: pd.DataFrame, times: PhaseTimes, delta: dict | None) -> dict:
    """alpha(L) = alpha0 + alpha1 * L from the alpha probe's TTFTs (module doc)."""
    a = records[records["probe"] == "alpha"]
    L = a["prompt_tokens"].to_numpy(dtype=float)
    eng = np.array([times.prefill(int(x)) for x in L]) + _delta_at(delta, 1)
    y = a["seconds"].to_numpy(dtype=float) - eng
    fit = line_fit(L, y, "probe alpha")
    return {**fit, "definition": "client TTFT (max_tokens=1, alone) - prefill(L) - delta(1); "
            "a + b * L"}  # fmt: skip


def fit_kv_load(records: pd.DataFrame, times: PhaseTimes, delta: dict | None) -> dict | None:
    """KV load = k0 + k1 * injected from the stall probe (module doc); None without records
    that injected at two distinct token counts."""
    s = records[(records["probe"] == "stall") & records["injected_tokens"].notna()]
    if s.empty or s["injected_tokens"].nunique() < 2:
        return None
    ex = []
    for r in s.itertuples(index=False):
        n = int(r.streams)
        price = times.tail(int(r.injected_tokens), int(r.recomputed_tokens), n,
                           int(r.context_tokens)) + _delta_at(delta, n + 1)  # fmt: skip
        ex.append(float(r.seconds) - price)
    fit = line_fit(s["injected_tokens"], ex, "probe stall")
    return {**fit, "definition": "running streams' longest gap at a hand-over - the fused tail "
            "iteration (chunk of the recomputed tokens + N decodes) - delta(N + 1); a + b * "
            "injected tokens"}  # fmt: skip


def fit_legs(cal_rows: pd.DataFrame, times: PhaseTimes, delta: dict | None,
             kv_load: tuple[float, float]) -> dict:  # fmt: skip
    """prefill leg and decode leg, each a + b * L, from the calibration's records (module doc)."""
    leg = cal_rows[cal_rows["kind"] == "proxy_prefill_leg"]
    L = leg["prompt_tokens"].to_numpy(dtype=float)
    y = leg["seconds"].to_numpy(dtype=float) - np.array([times.prefill(int(x)) for x in L])
    pre = line_fit(L, y - _delta_at(delta, 1), "legs prefill")
    ho = cal_rows[(cal_rows["kind"] == "handover")].copy()
    inj = ho["injected_tokens"].fillna(0).to_numpy(dtype=float)
    L2 = ho["prompt_tokens"].to_numpy(dtype=float)
    rec = ho["recomputed_tokens"].fillna(pd.Series(L2, index=ho.index)).to_numpy(dtype=float)
    work = np.array([times.tail(int(o), int(x)) for o, x in zip(inj, rec, strict=True)])
    load = np.where(inj > 0, kv_load[0] + kv_load[1] * inj, 0.0)
    dec = line_fit(L2, ho["seconds"].to_numpy(dtype=float) - work - _delta_at(delta, 1) - load,
                   "legs decode")  # fmt: skip
    return {
        "prefill_leg": {**pre, "definition": "proxy's X-Prefill-Seconds - prefill(L) - delta(1)"},
        "decode_leg": {**dec, "definition": "proxy TTFT - prefill leg - tail chunk(injected, "
                       "recomputed) - delta(1) - KV load(injected)"},  # fmt: skip
    }


def serving_terms(design: str, records: pd.DataFrame, times: PhaseTimes, cal: dict | None = None,
                  cal_rows: pd.DataFrame | None = None, per_engine: int = 1) -> dict:  # fmt: skip
    """{'terms': the ServingConfig values, 'fits': every fit, 'notes'} of one design."""
    notes: list[str] = []
    fits: dict = {}
    terms = dict.fromkeys(TERMS, 0.0)
    fits["delta"] = delta = fit_delta(records, times, per_engine)
    terms["iteration_s"], terms["iteration_s_per_request"] = delta["a"], delta["b"]
    if design == "splitwise":
        kv = fit_kv_load(records, times, delta)
        if kv is None:
            sp = (cal or {}).get("handover_split_fit") or {}
            b = sp.get("b_injected_s_per_token")
            kv = {"a": 0.0, "b": float(b) if b is not None else 0.0, "source": "calibration"}
            notes.append("kv_load: no stall records at two injected counts; the calibration's "
                         "per-injected-token slope, no fixed term")  # fmt: skip
        fits["kv_load"] = kv
        terms["kv_load_s"], terms["kv_load_s_per_token"] = kv["a"], kv["b"]
        if cal_rows is not None and len(cal_rows):
            legs = fit_legs(cal_rows, times, delta, (max(0.0, kv["a"]), max(0.0, kv["b"])))
            fits.update(legs)
            terms["prefill_leg_s"] = legs["prefill_leg"]["a"]
            terms["prefill_leg_s_per_token"] = legs["prefill_leg"]["b"]
            terms["decode_leg_s"] = legs["decode_leg"]["a"]
            terms["decode_leg_s_per_token"] = legs["decode_leg"]["b"]
        else:
            notes.append("legs: no calibration records (calibrate.enabled=false): legs zero")
    else:
        fits["alpha"] = alpha = fit_alpha(records, times, delta)
        terms["arrival_s"], terms["arrival_s_per_token"] = alpha["a"], alpha["b"]
    for k, v in list(terms.items()):
        if v < 0:
            notes.append(f"{k}: fitted {v:.3g} s < 0, written as 0")
            terms[k] = 0.0
    return {"terms": terms, "fits": fits, "notes": notes}


# ---------------------------------------------------------------- the engines' KV capacity
_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{([^}]*)\}", re.M)


def parse_cache_info(metrics: str) -> dict:
    """{'block_size', 'num_gpu_blocks'} from Prometheus text (vllm:cache_config_info); {}."""
    m = _CACHE_INFO.search(metrics or "")
    if not m:
        return {}
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    out = {}
    for k in ("block_size", "num_gpu_blocks"):
        v = labels.get(k, "")
        if v.isdigit() and int(v) > 0:
            out[k] = int(v)
    return out


def parse_kv_log(text: str, block_size: int) -> int | None:
    """Blocks from the start-up log's "<device> KV cache size: N tokens" (vLLM 0.32)."""
    m = re.findall(r"KV cache size: ([\d,]+) tokens", text or "")
    return int(m[-1].replace(",", "")) // int(block_size) if m else None


def engine_kv(base_url: str, log: Path | None, block_size: int) -> dict:
    """One engine's {'block_size', 'num_gpu_blocks', 'source'}."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as r:  # noqa: S310
            info = parse_cache_info(r.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        info = {}
    if "num_gpu_blocks" in info:
        return {**info, "source": "metrics vllm:cache_config_info"}
    bs = info.get("block_size", block_size)
    text = log.read_text(encoding="utf-8", errors="replace") if log and log.is_file() else ""
    n = parse_kv_log(text, bs)
    return {"block_size": bs, "num_gpu_blocks": n, "source": "log 'KV cache size'" if n else None}


# ---------------------------------------------------------------- measurement (async)
async def _stream(session, url: str, body: dict, timeout_s: float,
                  times: list[float] | None = None) -> tuple[float, list[float]]:
    """(send time, arrival time of each token chunk) of one streamed completion; ``times`` (if
    given) is filled as the tokens arrive, so a cancelled stream keeps what it received."""
    import aiohttp

    t0 = time.perf_counter()
    times = [] if times is None else times
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        if r.status != 200:
            raw = await r.read()
            raise StepError("probe", f"{url}: HTTP {r.status}: "
                            f"{raw[:200].decode('utf-8', 'replace')}")  # fmt: skip
        async for line in r.content:
            s = line.strip()
            if not s.startswith(b"data:"):
                continue
            data = s[5:].strip()
            if data == b"[DONE]":
                break
            if json.loads(data).get("choices"):  # one chunk per token (vLLM, no tokenizer)
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

    try:
        rows = asyncio.run(asyncio.wait_for(go(), timeout=float(pc.timeout_s)))
    except TimeoutError:
        raise StepError(f"probe-{design}", f"did not finish within {pc.timeout_s:g} s "
                        "(probes.timeout_s)") from None  # fmt: skip
    except OSError as e:
        raise StepError(f"probe-{design}", f"{type(e).__name__}: {e}") from None
    except StepError as e:
        raise StepError(f"probe-{design}", e.reason) from None
    except Exception as e:
        if type(e).__module__.startswith("aiohttp"):
            raise StepError(f"probe-{design}", f"{type(e).__name__}: {e}") from None
        raise
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


def kv_capacity(res: dict | None, design: str) -> tuple[int | None, int | None]:
    """(block_size, num_gpu_blocks) of the instance the simulator's capacity stands for (the
    co-located or decode engine; the smallest count where several)."""
    eng = (res or {}).get("engines") or {}
    names = ["decode"] if design == "splitwise" else [n for n in eng if n.startswith("colocated")]
    got = [eng[n] for n in names if n in eng and eng[n].get("num_gpu_blocks")]
    if not got:
        return None, None
    best = min(got, key=lambda e: e["num_gpu_blocks"])
    return int(best["block_size"]), int(best["num_gpu_blocks"])


def describe_rows(res: dict) -> list[dict]:
    """The report's table: each term, its value, unit, probe and fit error."""
    fits = res.get("fits") or {}
    fit_of = {"alpha": "alpha", "delta": "delta", "legs (calibration)": None, "stall": "kv_load"}
    rows = []
    for k, (unit, probe) in TERMS.items():
        v = (res.get("terms") or {}).get(k, 0.0)
        key = fit_of.get(probe)
        if probe.startswith("legs"):
            key = "prefill_leg" if k.startswith("prefill") else "decode_leg"
        f = fits.get(key) if key else None
        rows.append({"term": k, "value": v, "unit": unit, "probe": probe,
                     "fit_points": f.get("points") if f else None,
                     "fit_rms_s": f.get("rms_s") if f else None,
                     "fit_max_abs_residual_s": f.get("max_abs_residual_s") if f else None})  # fmt: skip
    return rows


__all__ = ["PhaseTimes", "run_probes", "serving_terms", "fit_alpha", "fit_delta", "fit_kv_load",
           "fit_legs", "line_fit", "parse_cache_info", "parse_kv_log", "kv_capacity",
           "describe_rows", "probe_seed", "TERMS"]  # fmt: skip
