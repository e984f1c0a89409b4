"""A served deployment at a fixed concurrency: ``N`` identical requests kept in flight.

A benchmark client at concurrency ``N`` sends ``N`` requests at once and a new one each time one
finishes, until it has sent ``requests`` (10 x N by default: an assumption, the measured points
do not record their request count); TTFT and TPOT are statistics over all of them. The suite's replay takes
its arrivals from a trace fixed in advance, so it has no closed loop; this module simulates one
at the level of engine iterations, with the ``vllm`` machine policy's rules and pricing
(``replay/vllm_policy.py``), for ONE instance:

- each iteration, running requests first, in admission order: every decoding request takes one
  token, an unfinished prefill continues with what is left of the token budget
  (``max_num_batched_tokens``); then waiting requests, FCFS, while budget is left and fewer than
  ``max_num_seqs`` run, each taking ``min(its prompt, budget left)`` (chunked prefill);
- memory: a request is admitted only while every running request's whole context (prompt +
  output) still fits the KV capacity -- no preemption (vLLM admits on the blocks a request holds
  now and preempts later; at the measured concurrencies and shapes this is the same schedule
  wherever everything fits, and a conservative one where it does not);
- price, as the ``vllm`` policy's ``fused`` pricing: an iteration with ``n`` prefill pieces of
  ``x_i`` tokens (``o_i`` already computed) and ``B`` decodes holding ``C`` context tokens takes
  ``prefill_time_sums(n, T + B, S + B) + d2 x C`` (``T = sum x_i``, ``S = sum (o_i + x_i)^2 -
  o_i^2``); without pieces ``decode_time(B, C)``; plus the engine overhead of
  :class:`~.overhead.EngineOverhead`: ``step_s + per_request_s x B`` for a decode step,
  ``step_s + (per_request_s + per_prefill_s) x n`` for an iteration with pieces (what a
  PhaseModel fitted on a table with that overhead adds, as the replay prices it);
- arrivals: the first ``N`` at time 0; each later one when a request finishes (end of the
  iteration that produced its last token). The engine starts its next iteration at once, before
  the new request reaches it (client round trip and tokenization take a few ms, an iteration
  10-300 ms), so a request that arrives at the end of iteration ``k`` is first scheduled in
  iteration ``k + 2``.

Because arrivals happen at iteration ends and scheduling depends only on iteration counts, the
schedule (which request is in which iteration) does not depend on how long iterations take.
So the overhead adds linearly: each request's TTFT and TPOT are ``kernel_scale x base + counts .
overhead``,
with the counts (iterations, requests, prefill pieces in the iterations it waited through)
recorded once per deployment (:class:`ClosedLoop`); :meth:`ClosedLoop.medians` gives the
medians for any overhead without simulating again. Decode-only stretches advance in closed
form (the step time is linear in the context held, which grows by ``B`` per step). Checked:
replaying a run's own arrivals through ``replay.simulate`` (one instance, ``vllm`` policy)
gives every request the same TTFT and TPOT (``tests/test_compose.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from characterize.modeling.compose.overhead import EngineOverhead

MAX_NUM_BATCHED_TOKENS = 8192  # vLLM's default for its server on >= 70 GiB GPUs (not A100)
MAX_NUM_SEQS = 256
REQUESTS_PER_CONCURRENCY = 10


@dataclass
class ClosedLoop:
    """Per-request base times and overhead counts of one simulated deployment.

    ``ttft_base`` / ``decode_base`` (s): time to first token / mean gap between its tokens
    (TPOT: first to last token over output - 1) without overhead; ``ttft_counts`` /
    ``decode_counts``: (iterations, requests-term, prefill pieces) summed over the iterations of
    that window (per gap for TPOT), so that with overhead ``o`` each is
    ``base + counts @ (o.step_s, o.per_request_s, o.per_prefill_s)``.
    """

    ttft_base: np.ndarray
    decode_base: np.ndarray
    ttft_counts: np.ndarray  # (n, 3)
    decode_counts: np.ndarray  # (n, 3)
    max_running: int
    arrival_s: np.ndarray | None = None  # when each request reached the engine (base times)
    prompt_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None

    def times(self, overhead: EngineOverhead) -> tuple[np.ndarray, np.ndarray]:
        """(TTFT, TPOT) of every request, seconds."""
        o = np.array([overhead.step_s, overhead.per_request_s, overhead.per_prefill_s])
        k = overhead.kernel_scale
        ttft = k * self.ttft_base + self.ttft_counts @ o
        tpot = k * self.decode_base + self.decode_counts @ o
        return ttft, tpot

    def medians(self, overhead: EngineOverhead) -> tuple[float, float]:
        """(median TTFT, median TPOT) in seconds."""
        ttft, tpot = self.times(overhead)
        return float(np.median(ttft)), float(np.median(tpot))


def simulate_closed_loop(
    phase_model,
    prompt_tokens: int,
    output_tokens: int,
    concurrency: int,
    kv_capacity_tokens: int,
    *,
    requests: int | None = None,
    max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS,
    max_num_seqs: int = MAX_NUM_SEQS,
    length_jitter: float = 0.0,
    seed: int = 0,
) -> ClosedLoop:
    """Simulate the closed loop (module doc) with a fitted PhaseModel; see :class:`ClosedLoop`."""
    p, o, n_conc = int(prompt_tokens), int(output_tokens), int(concurrency)
    if p < 1 or o < 1 or n_conc < 1:
        raise ValueError("prompt, output and concurrency must be >= 1")
    total = int(requests) if requests is not None else REQUESTS_PER_CONCURRENCY * n_conc
    rng = np.random.default_rng(seed)

    def lengths(n: int) -> np.ndarray:
        if length_jitter <= 0:
            return np.full(total, n, dtype=np.int64)
        lo, hi = max(1, round(n * (1 - length_jitter))), max(1, round(n * (1 + length_jitter)))
        return rng.integers(lo, hi + 1, size=total)

    plen = lengths(p)
    olen = lengths(o)
    d0, d1, d2, d3 = phase_model.decode_coefficients()
    prefill = phase_model.prefill_time_sums
    budget0 = int(max_num_batched_tokens)
    need = plen + olen
    if need.max() > kv_capacity_tokens:
        raise ValueError(
            f"one request ({need.max()} tokens) does not fit the KV capacity ({kv_capacity_tokens})"
        )
    held = 0  # KV tokens reserved by running requests (whole contexts)

    # global clock and overhead counters (iterations, requests-term, prefill pieces)
    t = 0.0
    cnt = np.zeros(3)
    step = 0
    seqs = int(max_num_seqs)
    # per request: eligible step, arrival time/counters, first-token and finish time/counters
    elig = np.zeros(total, dtype=np.int64)
    t_arr = np.zeros(total)
    c_arr = np.zeros((total, 3))
    t_first = np.full(total, np.nan)
    c_first = np.zeros((total, 3))
    t_done = np.full(total, np.nan)
    c_done = np.zeros((total, 3))
    sent = min(n_conc, total)
    waiting = list(range(sent))  # FCFS queue of request ids (all eligible at step 0)
    running: list[int] = []  # admission order
    computed: dict[int, int] = {}  # id -> prompt tokens computed
    generated: dict[int, int] = {}  # id -> output tokens produced
    max_running = 0
    done = 0

    def admissible() -> bool:
        return bool(
            waiting
            and len(running) < seqs
            and held + need[waiting[0]] <= kv_capacity_tokens
        )

    while done < total:
        if not running:  # an idle engine schedules a request as soon as it arrives
            for w in waiting:
                elig[w] = min(elig[w], step)
        partial = any(computed[r] < plen[r] for r in running)
        if running and not partial and not (admissible() and elig[waiting[0]] <= step):
            # ---- closed-form stretch of decode-only steps up to the next finish or admission
            b = len(running)
            k = min(int(olen[r]) - generated[r] for r in running)
            if admissible():
                k = min(k, int(elig[waiting[0]] - step))
            ctx = sum(int(plen[r]) + generated[r] for r in running)
            t += k * (d0 + d1 * b + d3 * b * b) + d2 * (k * ctx + b * k * (k - 1) / 2)
            cnt += (k, k * b, 0)
            step += k
            for r in running:
                generated[r] += k
        else:
            # ---- one iteration: decodes first, then the unfinished prefill, then waiting (FCFS)
            budget = budget0
            b = 0
            ctx = 0
            pieces: list[tuple[int, int, int]] = []  # (id, already computed, tokens)
            for r in running:
                if computed[r] >= plen[r]:
                    b += 1
                    ctx += int(plen[r]) + generated[r]
                    budget -= 1
            for r in running:
                if computed[r] < plen[r] and budget > 0:
                    x = min(int(plen[r]) - computed[r], budget)
                    pieces.append((r, computed[r], x))
                    budget -= x
            while budget > 0 and admissible() and elig[waiting[0]] <= step:
                r = waiting.pop(0)
                running.append(r)
                held += int(need[r])
                computed[r] = 0
                generated[r] = 0
                x = min(int(plen[r]), budget)
                pieces.append((r, 0, x))
                budget -= x
            max_running = max(max_running, len(running))
            if pieces:
                n = len(pieces)
                tt = sum(x for _, _, x in pieces)
                ss = sum((c + x) ** 2 - c * c for _, c, x in pieces)
                t += prefill(n, tt + b, ss + b) + d2 * ctx
                cnt += (1, n, n)
            else:
                t += d0 + d1 * b + d2 * ctx + d3 * b * b
                cnt += (1, b, 0)
            step += 1
            for r in running:
                if computed[r] >= plen[r]:
                    generated[r] += 1
            for r, c, x in pieces:
                computed[r] = c + x
                if computed[r] >= plen[r]:
                    generated[r] = 1  # the prefill's last chunk yields the first token
                    t_first[r] = t
                    c_first[r] = cnt
        # ---- finishes, and the client's next request for each
        for r in [r for r in running if computed[r] >= plen[r] and generated[r] >= olen[r]]:
            t_done[r] = t
            c_done[r] = cnt
            running.remove(r)
            held -= int(need[r])
            done += 1
            if sent < total:
                q = sent
                sent += 1
                elig[q] = step + 1  # misses the iteration that starts now
                t_arr[q] = t
                c_arr[q] = cnt
                waiting.append(q)
    gaps = np.maximum(olen - 1, 1).astype(float)
    return ClosedLoop(
        ttft_base=t_first - t_arr,
        decode_base=(t_done - t_first) / gaps,
        ttft_counts=c_first - c_arr,
        decode_counts=(c_done - c_first) / gaps[:, None],
        max_running=max_running,
        arrival_s=t_arr,
        prompt_tokens=plen,
        output_tokens=olen,
    )
