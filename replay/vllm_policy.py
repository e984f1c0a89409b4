"""The ``vllm`` machine-level policy: vLLM V1's co-located scheduler (chunked prefill).

Beside the paper's policy (:mod:`replay.machine`, ``reference``), this policy runs an instance
that serves both phases the way vLLM V1's scheduler (``vllm/v1/core/sched/scheduler.py``) does,
one engine step (iteration) at a time. Options: :class:`VLLMConfig` (``scheduler.vllm``).

One iteration (engine step), with a token budget of ``max_num_batched_tokens``:

1. *Running requests first, in admission order.* Every running decode takes 1 token. Because
   ``max_num_batched_tokens >= max_num_seqs`` (vLLM requires it too), all decodes always fit the
   budget. The request whose prefill is unfinished (at most one, the last admitted: a chunk is
   cut only when the budget runs out) then continues with ``min(remaining, budget left)`` tokens.
2. *Then waiting requests, FCFS,* while the budget is positive and fewer than ``max_num_seqs``
   requests run: each takes ``min(its tokens, budget left)`` tokens (a long prompt is split over
   several iterations). The loop stops at the first request whose blocks do not fit. It is
   skipped in an iteration that preempted.
3. *KV in blocks.* A request holds ``ceil(computed tokens / block_size)`` blocks of
   ``block_size`` tokens; the instance has ``kv_capacity_tokens // block_size`` blocks. Blocks are
   allocated when a step is scheduled (the chunk's tokens; a decode needs a new block when its
   new token starts one). There is no admission watermark (vLLM V1 checks only free blocks).
4. *Preemption by recompute.* When a running request's blocks do not fit, the most recently
   admitted running request is preempted: its blocks are freed, its progress is dropped and it
   goes to the front of the waiting queue; when it is admitted again it recomputes prompt plus
   generated tokens as a (chunked) prefill, whose end yields its next token. If the victim is
   the request being scheduled, it is the one preempted. ``scheduler.max_preemptions`` does not
   apply (vLLM has no such cap).

Iteration time (the phase model, as the ``fused`` mixed pricing of :mod:`replay.machine`): an
iteration with prefill pieces of ``x_i`` tokens, ``o_i`` of whose request already computed, and
``B`` decodes holding ``C`` context tokens (C = sum of prompt + generated tokens) takes

    ``prefill_time_sums(n, T + B, S + B) + c*C``

with ``n`` the number of pieces, ``T = sum x_i`` and ``S = sum ((o_i + x_i)^2 - o_i^2)``: a
chunk's attention over the tokens its request already holds is its share of the whole prompt's
quadratic term (the chunks of one prompt add up to ``p^2``, so chunking does not make attention
cheaper). Without decodes it is ``prefill_time_sums(n, T, S)``; without pieces a decode step
``a + b*B + q*B^2 + c*C``. With ``scheduler.mixed_batch=sequential`` a mixed iteration is
``prefill_time_sums(n, T, S) + decode_time(B, C)`` instead.

Speed: iterations without prefill work whose schedule cannot change (no waiting request, or the
head of the queue blocked by ``max_num_seqs`` or by blocks) advance as closed-form spans of
decode iterations (:mod:`replay.spans`), to the next completion, the iteration whose new blocks
no longer fit (found from a histogram of the decodes' positions within their last block), or an
arrival's next iteration boundary. Every other iteration is one event.

Prefix caching (vLLM's ``enable_prefix_caching`` is ``scheduler.prefix_caching``, the one switch
for both policies; the trace's ``block_hashes``): at admission a request starts with its cached
leading prompt blocks computed (:meth:`replay.prefix_cache.PrefixCache.saved`: at most prompt - 1
tokens, also for a recompute), its first chunk priced as a suffix over that prefix (the ``S``
share above); its prompt's blocks enter the instance's LRU cache when its prefill ends; the cache
holds only the blocks that running requests leave free (resized after every step), and a request
that hit it still allocates its whole context (no block sharing: conservative on memory, as
:mod:`replay.prefix_cache` states). A preempted request's computed blocks are not kept.

Where it applies: every machine of a design whose policy it is (``design.machine_policy``,
else ``scheduler.machine_policy``): a baseline's machines, and the prompt, token and mixed roles
of a Splitwise design, which it runs as vLLM's disaggregated serving does (each real instance
runs its own V1 scheduler; the proxy sends the request to the prefill instance with
``max_tokens=1``, then the whole request to the decode instance):

- a *prompt* role schedules prompts as above (with ``prompt_whole_prompts``, as a prefill
  instance run with chunked prefill off, each prompt whole in one step, and its own budget
  ``prompt_max_num_batched_tokens``); when a prompt's prefill ends, the request
  finishes there (its one sampled token is the proxy's and is dropped; its blocks are freed)
  and is handed over: it reaches the decode instance when the KV link (``scheduler.kv_transfer``,
  the pure hop) and the proxy's decode leg (``serving.decode_leg_s`` + per token) are both done;
  ``kv_transfer_s`` is that wait;
- a *token* role queues the hand-over FCFS with its own arrivals (vLLM's waiting queue) and
  schedules it as a prefill whose first ``block_size * floor((L - 1) / block_size)`` tokens are
  computed already (the connector injects whole blocks) and whose tail (1 to ``block_size``
  tokens, at least the last prompt token) is recomputed, priced by this instance's phase model
  like any chunk, plus the KV load (``serving.kv_load_s`` + ``kv_load_s_per_token`` x injected
  tokens) added to that iteration's duration: the decodes running here stall for both (and on
  the prompt role, the connector's store of each prompt's KV, ``serving.kv_save_s`` +
  ``kv_save_s_per_token`` x its tokens, is added to the step that computes it). The
  tail's end is the request's first token (the client's first token comes from the decode
  instance), then ``o - 1`` decode steps: ``o`` steps on the decode instance, as the real
  deployment makes. A request with one output token is handed over too (the proxy asks the
  decode instance for it). The decode instance allocates the whole prompt's blocks;
- a *mixed* role (the mixed pool) serves its own requests co-located, and hand-overs as above.

A hand-over joins the waiting queue at the decode instance's first iteration boundary at or
after it is ready (a decode span with nothing waiting is cut there; a span whose waiting head is
blocked is not, as nothing behind the head could run); on a mixed machine a prompt that arrived
in between may queue ahead of it.

The paper's policy keeps the paper's protocol instead (:mod:`replay.machine`: the prompt
machine's token is the first token, the token machine makes ``o - 1`` steps, and a one-token
request ends at the prompt machine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush

from replay.errors import ReplayError, need
from replay.machine import INF, MACHINE_POLICIES, Machine, pack_segment
from replay.states import DECODE, IDLE, MIXED, PREFILL, PROMPT


def _f(default, help: str):  # noqa: A002 - "help" is the documented name
    return field(default=default, metadata={"help": help})


@dataclass
class VLLMConfig:
    """Options of the ``vllm`` machine policy (``scheduler.vllm``); vLLM's names."""

    max_num_batched_tokens: int = _f(
        8192,
        "token budget of one iteration (prefill chunk tokens + one per decode); vLLM's default "
        "for its OpenAI server on GPUs with >= 70 GiB other than A100 (A100: 2048)",
    )
    max_num_seqs: int = _f(256, "most requests running at once (decoding or prefilling)")
    block_size: int = _f(16, "tokens per KV block (a request holds ceil(tokens / block_size))")
    prompt_whole_prompts: bool = _f(
        False,
        "a Splitwise design's prompt machines compute each prompt whole in one step, as a "
        "prefill instance run with chunked prefill off (vLLM --no-enable-chunked-prefill): a "
        "waiting prompt that does not fit the step's budget waits for the next step (vLLM stops "
        "scheduling there); a prompt above the whole budget runs alone",
    )
    prompt_max_num_batched_tokens: int | None = _f(
        None,
        "token budget of a Splitwise design's prompt machines (a prefill instance's own "
        "--max-num-batched-tokens); null: max_num_batched_tokens",
    )
    num_gpu_blocks: int | None = _f(
        None,
        "KV blocks of every instance (a deployment's own num_gpu_blocks, as its engine logs it), "
        "overriding the capacity derived from the GPU spec: num_gpu_blocks x block_size tokens, "
        "for either machine policy; null: from the spec",
    )

    def __post_init__(self) -> None:
        k = "scheduler.vllm"
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size"):
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
            need(ok, f"{k}.{name}", f"must be an integer >= 1, got {v!r}")
        v = self.prompt_max_num_batched_tokens
        ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        need(ok, f"{k}.prompt_max_num_batched_tokens",
             f"must be an integer >= 1 or null, got {v!r}")  # fmt: skip
        need(isinstance(self.prompt_whole_prompts, bool), f"{k}.prompt_whole_prompts",
             f"must be true or false, got {self.prompt_whole_prompts!r}")  # fmt: skip
        v = self.num_gpu_blocks
        ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        need(ok, f"{k}.num_gpu_blocks", f"must be an integer >= 1 or null, got {v!r}")
        need(
            self.max_num_batched_tokens >= self.max_num_seqs,
            f"{k}.max_num_batched_tokens",
            f"must be >= max_num_seqs ({self.max_num_seqs}), as vLLM requires, "
            f"got {self.max_num_batched_tokens}",
        )


class VLLMMachine(Machine):
    """One instance under the ``vllm`` policy (module doc). Reuses the reference machine's
    decode batch state (``B``, ``C``, ``done`` heap, iteration counter ``it``), span records and
    load counters; ``queue`` is vLLM's waiting queue (preempted requests at its front)."""

    __slots__ = (
        "run", "part", "pdone", "pn", "pblk", "hist", "bs", "nblocks", "used", "budget", "maxseqs",
        "pieces", "preempted_step", "split", "kl0", "kl1", "whole", "ks0", "ks1", "dw0", "dw1",
    )  # fmt: skip

    def __init__(self, cl, idx, spec_name, role, coef, prefill_sums, cap, wm, maxb):
        super().__init__(cl, idx, spec_name, role, coef, prefill_sums, cap, wm, maxb)
        v = cl.cfg.vllm
        self.bs = v.block_size
        self.budget = v.max_num_batched_tokens
        # a Splitwise design's prompt machine: the prefill instance's own budget and chunking
        self.whole = bool(v.prompt_whole_prompts) and role == PROMPT
        if role == PROMPT and v.prompt_max_num_batched_tokens:
            self.budget = v.prompt_max_num_batched_tokens
        self.maxseqs = v.max_num_seqs
        self.nblocks = cap // v.block_size
        self.used = 0  # blocks held by running requests
        self.run = {}  # running requests in admission order (dict: ordered, O(1) delete)
        self.part = -1  # the running request whose prefill is unfinished (-1: none)
        self.pdone = 0  # its computed tokens
        self.pn = 0  # its tokens to compute (prompt, or prompt + generated for a recompute)
        self.pblk = 0  # its blocks
        self.hist = [0] * v.block_size  # decodes by (prompt + gen - join iteration) % block_size
        self.pieces = []  # (request, tokens, computed before, total) of the running iteration
        self.preempted_step = False
        # disaggregated serving (a Splitwise design): prompt roles hand requests over, token
        # roles take them as a tail prefill plus a KV load of kl0 + kl1 x injected tokens
        self.split = bool(cl.split)
        self.kl0 = 0.0
        self.kl1 = 0.0
        # prompt roles: the connector's KV save of each prompt, ks0 + ks1 x its tokens (work)
        self.ks0 = 0.0
        self.ks1 = 0.0
        # the request path's work per admitted request, dw0 + dw1 x its prompt: on token roles
        # per hand-over (serving.decode_work_*), co-located per request (serving.arrival_work_*)
        self.dw0 = 0.0
        self.dw1 = 0.0

    # ---- events -------------------------------------------------------------------------
    def notify(self, t, now):
        """A request arrived (t == now): an idle machine starts an iteration now; a decode span
        is cut at its next iteration boundary, unless its waiting head is blocked (then a
        request behind it changes nothing); a running iteration looks at the queue when it ends."""
        kind = self.kind
        if kind == IDLE:
            if t < now:
                t = now
            if t < self.wake_t:
                self.schedule(t)
        elif kind == DECODE and len(self.queue) == 1:
            n = self.boundary_at_or_after(t)
            if n < self.wake_n:
                self.wake_n = n
                self.schedule(self.t0 + n * self.d0 + self.inc * n * (n - 1) * 0.5)

    def receive(self, t, now):
        """A hand-over is ready here at t >= now (it joins the waiting queue at the first wake-up
        at or after t): an idle machine wakes then; a decode span with nothing waiting is cut at
        its first iteration boundary at or after t."""
        kind = self.kind
        if kind == IDLE:
            if t < now:
                t = now
            if t < self.wake_t:
                self.schedule(t)
        elif kind == DECODE and not self.queue:
            n = self.boundary_at_or_after(t)
            if n < self.wake_n:
                self.wake_n = n
                self.schedule(self.t0 + n * self.d0 + self.inc * n * (n - 1) * 0.5)

    def wake(self, T):
        kind = self.kind
        if kind == DECODE:
            n = self.wake_n
            if n > 0:
                B = self.B
                if self.C + (n - 1) * B > self.max_c:
                    self.max_c = self.C + (n - 1) * B
                bs = self.bs
                if n < bs:  # the span's new blocks (_cum, inlined: the common short span)
                    h = self.hist
                    base = 1 - self.it
                    s = 0
                    for k in range(n):
                        s += h[(base - k) % bs]
                    self.used += s
                else:
                    self.used += self._cum(n)
                self._record(n, self.d0, self.inc, B, 0, T)
                self.it += n
                self.C += n * B
        elif kind == PREFILL:
            B = self.B
            self._record(1, T - self.t0, 0.0, B, self.ptoks, T)
            self.it += 1
            self.C += B
            self._finish_pieces(T)
        self.kind = IDLE
        self.wake_t = INF
        done = self.done
        if done:
            it = self.it
            while done and done[0][0] <= it:
                self._complete(heappop(done)[2], T)
        inc = self.incoming
        if inc:  # hand-overs ready here join the waiting queue (in the order they are ready)
            while inc and inc[0][0] <= T:
                self.queue.append(heappop(inc)[2])
        self._start(T)
        pc = self.pc
        if pc is not None:  # the cache gets the blocks the running requests leave free
            used = self.used + (self._cum(self.wake_n) if self.kind == DECODE else 0)
            pc.resize((self.nblocks - used) * self.bs // pc.block_tokens)
        if self.role == MIXED and self.home != MIXED:
            self._maybe_return(T)

    # ---- block arithmetic ---------------------------------------------------------------
    def _cum(self, n):
        """New blocks of the decodes over the next n iterations (it .. it+n-1)."""
        bs = self.bs
        h = self.hist
        full, rem = divmod(n, bs)
        s = full * self.B
        base = 1 - self.it
        for k in range(rem):
            s += h[(base - k) % bs]
        return s

    def _fit(self, free):
        """Most decode iterations whose new blocks fit ``free`` blocks (B > 0)."""
        bs = self.bs
        h = self.hist
        m = free // self.B
        s = m * self.B
        base = 1 - self.it
        k = 0
        while k < bs:
            s += h[(base - k) % bs]
            if s > free:
                break
            k += 1
        return m * bs + k

    # ---- request state changes ----------------------------------------------------------
    def _join(self, r, fresh=False):
        cl = self.cl
        g = cl.gen[r]
        p = cl.ptok[r]
        it = self.it
        self.C += p + g
        self.B += 1
        cl.jit[r] = it
        cl.jseg[r] = self.nspans
        heappush(self.done, (it + cl.otok[r] - g, next(cl.seq), r))
        self.hist[(p + g - it) % self.bs] += 1
        if self.B > self.max_b:
            self.max_b = self.B

    def _complete(self, r, T):
        cl = self.cl
        p = cl.ptok[r]
        o = cl.otok[r]
        bs = self.bs
        self.hist[(p + cl.gen[r] - cl.jit[r]) % bs] -= 1
        self.used -= (p + o - 2) // bs + 1
        del self.run[r]
        Machine._complete(self, r, T)

    def _finished(self, r, T, p, g):
        """Request r (prompt p) has its last token (g == output tokens) at T."""
        cl = self.cl
        cl.t_done[r] = T
        self.d_load -= p
        cl.completed += 1
        self.used -= (p + g - 2) // self.bs + 1
        del self.run[r]

    def _finish_pieces(self, T):
        cl = self.cl
        ptok = cl.ptok
        otok = cl.otok
        gen = cl.gen
        t_last = cl.t_last
        for r, x, o, tot in self.pieces:
            if o + x < tot:  # the partial prefill goes on next iteration
                self.pdone = o + x
                continue
            if r == self.part:
                self.part = -1
            p = ptok[r]
            if self.pc is not None and cl.hashes[r]:  # the prompt's blocks are cached now
                self._cache_insert(r)
            if cl.recompute[r]:
                cl.recompute[r] = False
                g = gen[r] + 1
                gen[r] = g
                cl.gap_req.append(r)
                cl.gap_val.append(T - t_last[r])
            elif self.split and cl.pm_of[r] != self.idx:  # a hand-over's tail: the first token
                g = 1
                gen[r] = 1
                cl.t_first[r] = T
            elif self.split and cl.tm_of[r] != self.idx:  # prefilled here, decoded elsewhere
                self.p_load -= p
                self._hand_over(r, T, p)
                continue
            else:
                g = 1
                gen[r] = 1
                self.p_load -= p
                cl.t_first[r] = T
            t_last[r] = T
            if g >= otok[r]:
                self._finished(r, T, p, g)
            else:
                self._join(r)
        self.pieces = []

    def _hand_over(self, r, T, p):
        """Request r's prefill (prompt p) ended here at T and its decode instance is another
        (vLLM's disaggregated serving): the prefill request finishes here (its one token is the
        proxy's, not the client's) and frees its blocks; the request reaches the decode instance
        when the KV link's hop and the proxy's decode leg (replay.serving) are both done."""
        cl = self.cl
        self.used -= (p - 1) // self.bs + 1
        del self.run[r]
        tm = cl.tm_of[r]
        ready = cl.links.transfer(self.idx, tm, p, cl.t_start[r], T)
        leg = T + cl.leg0 + cl.leg1 * p
        if leg > ready:
            ready = leg
        cl.kvx[r] = ready - T
        m = cl.machines[tm]
        heappush(m.incoming, (ready, next(cl.seq), r))
        m.receive(ready, T)

    def _preempt(self, T):
        """Preempt the most recently admitted running request (vLLM: ``running.pop()``)."""
        cl = self.cl
        r = next(reversed(self.run))
        del self.run[r]
        cl.npre[r] += 1
        cl.preemptions += 1
        self.preempted_step = True
        if r == self.part:
            self.part = -1
            self.used -= self.pblk
        else:
            done = self.done
            for i, e in enumerate(done):
                if e[2] == r:
                    done[i] = done[-1]
                    done.pop()
                    heapify(done)
                    break
            p = cl.ptok[r]
            g0 = cl.gen[r]
            g = g0 + (self.it - cl.jit[r])
            self.hist[(p + g0 - cl.jit[r]) % self.bs] -= 1
            if g != g0:
                cl.t_last[r] = T
            cl.gen[r] = g
            self.C -= p + g
            self.B -= 1
            self.used -= (p + g - 2) // self.bs + 1
            if cl.jseg[r] <= self.nspans - 1:
                self.segs += pack_segment(r, cl.jseg[r], self.nspans - 1)
            cl.recompute[r] = True
        self.queue.appendleft(r)
        return r

    # ---- the schedule of the next iteration ---------------------------------------------
    def _start(self, T):
        B = self.B
        queue = self.queue
        cl = self.cl
        bs = self.bs
        free = self.nblocks - self.used
        if B and self.part < 0:
            need_now = self.hist[(1 - self.it) % bs]
            if need_now <= free:
                blocked = True
                if queue and len(self.run) < self.maxseqs:
                    r = queue[0]
                    x = cl.ptok[r] + (cl.gen[r] if cl.recompute[r] else 0)
                    room = self.budget - B
                    if x > room:
                        x = room
                    blocked = (x + bs - 1) // bs > free - need_now
                if blocked:  # decode-only iterations until something changes: one span
                    n = self.done[0][0] - self.it
                    if (n // bs + 1) * B > free and self._cum(n) > free:
                        n = self._fit(free)
                    C = self.C
                    d0 = self.a + (self.b + self.q * B) * B + self.c * C
                    inc = self.c * B
                    self.kind = DECODE
                    self.t0 = T
                    self.d0 = d0
                    self.inc = inc
                    if self.incoming and not queue:  # to the boundary where a hand-over is ready
                        k = self.boundary_at_or_after(self.incoming[0][0])
                        if k < n:
                            n = k
                    self.wake_n = n
                    self.schedule(T + n * d0 + inc * n * (n - 1) * 0.5)
                    return
        # one iteration, scheduled as vLLM does
        self.preempted_step = False
        if B:
            need_now = self.hist[(1 - self.it) % bs]
            if need_now > free:
                self._schedule_decodes_short(T)
                B = self.B
            else:
                self.used += need_now
        budget = self.budget - B
        pieces = self.pieces
        tok = 0
        sq = 0
        r = self.part
        if r >= 0 and budget > 0:
            o = self.pdone
            x = self.pn - o
            if x > budget:
                x = budget
            nb = (o + x + bs - 1) // bs - self.pblk
            if nb > self.nblocks - self.used:
                self._preempt(T)  # the partial request is the last admitted: it is the victim
            else:
                self.used += nb
                self.pblk += nb
                pieces.append((r, x, o, self.pn))
                budget -= x
                tok += x
                sq += (o + x) * (o + x) - o * o
        nload = 0  # hand-overs admitted this iteration that load KV, and the tokens loaded
        loaded = 0
        nho = 0  # hand-overs admitted this iteration, and their prompt tokens
        hop = 0
        if not self.preempted_step:
            ptok = cl.ptok
            gen = cl.gen
            recompute = cl.recompute
            t_start = cl.t_start
            run = self.run
            pc = self.pc
            while queue and budget > 0 and len(run) < self.maxseqs:
                r = queue[0]
                p = ptok[r]
                total = p + (gen[r] if recompute[r] else 0)
                s = 0  # tokens already computed: the cached prefix (prefix caching)
                k = 0  # its leading cached blocks
                h = None
                ho = self.split and cl.pm_of[r] != self.idx and not recompute[r]
                if ho:  # a hand-over (disaggregated serving): the connector injects the whole
                    # blocks of the first p - 1 tokens; the tail is recomputed here
                    s = (p - 1) // bs * bs
                elif pc is not None:
                    h = cl.hashes[r]
                    k = pc.peek(h) if h else 0
                    if k:
                        s = pc.saved(k, p)
                x = total - s
                if x > budget:
                    if self.whole:  # no chunks: it waits for a step of its own (or runs alone)
                        if pieces:
                            break
                    else:
                        x = budget
                nb = (s + x + bs - 1) // bs  # the whole context is allocated (conservative)
                if nb > self.nblocks - self.used:
                    break
                queue.popleft()
                self.used += nb
                run[r] = None
                if t_start[r] != t_start[r]:  # NaN: first scheduled now
                    t_start[r] = T
                    if not self.split:  # co-located: its arrival's work (serving.arrival_work_*)
                        nho += 1
                        hop += p
                if h:  # counted now, touched by the insert at its end (prefix caching)
                    pc.record(len(h), k, p)
                    if not recompute[r]:
                        cl.cached[r] = s
                elif ho and s:  # a hand-over's KV load: work of this iteration
                    nload += 1
                    loaded += s
                if ho:  # and its decode leg's work (replay.serving.decode_work_*)
                    nho += 1
                    hop += p
                pieces.append((r, x, s, total))
                budget -= x
                tok += x
                sq += (s + x) * (s + x) - s * s
                if s + x < total:
                    self.part = r
                    self.pdone = s
                    self.pn = total
                    self.pblk = nb
        B = self.B
        if not pieces and not B:
            if queue and not self.run:  # cannot happen: requests are checked at arrival
                raise ReplayError(f"request {cl.rid[queue[0]]}: KV does not fit machine {self.idx}")
            if self.incoming:  # idle until the next hand-over is ready
                self.schedule(self.incoming[0][0])
            return  # idle: nothing runs or waits that could run
        if B:
            kv = self.C + tok
        else:
            kv = tok
        if kv > self.max_c:
            self.max_c = kv
        n = len(pieces)
        self.ptoks = tok
        if not n:
            dur = self.a + (self.b + self.q * B) * B + self.c * self.C
        elif not B:
            dur = self.pf(n, tok, sq)
        elif self.fused:
            dur = self.pf(n, tok + B, sq + B) + self.c * self.C
        else:
            dur = self.pf(n, tok, sq) + self.a + (self.b + self.q * B) * B + self.c * self.C
        if n and self.ovh:  # served overhead (replay.serving; a decode step's is in a and b)
            dur += self.o0 + self.o1 * (n + B if self.fused else n)
        if nload:  # the hand-overs' KV load stalls the iteration (replay.serving)
            dur += self.kl0 * nload + self.kl1 * loaded
        if nho:  # the request path's work on this instance (decode_work_*, arrival_work_*)
            dur += self.dw0 * nho + self.dw1 * hop
        if n and self.role == PROMPT and (self.ks0 or self.ks1):  # the prompts' KV save
            dur += self.ks0 * n + self.ks1 * tok
        self.kind = PREFILL
        self.t0 = T
        self.schedule(T + dur)

    def _schedule_decodes_short(self, T):
        """Blocks run short for this iteration's decodes: walk the running requests in
        admission order, allocating, and preempt from the end until each fits (vLLM)."""
        cl = self.cl
        ptok = cl.ptok
        gen = cl.gen
        jit = cl.jit
        bs = self.bs
        it = self.it
        one = 1 % bs
        order = list(self.run)
        i = 0
        while i < len(order):
            r = order[i]
            if r == self.part:
                break  # the partial prefill is scheduled after the decodes
            nb = 1 if (ptok[r] + gen[r] - jit[r] + it) % bs == one else 0
            while nb > self.nblocks - self.used:
                victim = self._preempt(T)
                order.pop()
                if victim == r:
                    break
            else:
                self.used += nb
                i += 1
                continue
            break


MACHINE_POLICIES["vllm"] = VLLMMachine

__all__ = ["VLLMConfig", "VLLMMachine"]
