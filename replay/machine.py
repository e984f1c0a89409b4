"""Machine-level scheduling: one model instance (``tp`` devices of a node) and its policy.

Machine model (one TP instance on one DGX node):

- *prompt* machines: FCFS prompt queue, one prefill iteration at a time, a batch takes prompts
  in order while the sum stays <= ``prompt_batch_tokens`` (a longer single prompt runs alone).
- *token* machines: continuous batching. Between two events that change the batch (an admission,
  a completion, a preemption) decode iterations are deterministic: with
  ``decode_time = a + b*B + q*B^2 + c*C`` (B fixed within a span) and C growing by B per
  iteration the durations form an arithmetic series, so a machine advances by whole *spans* of iterations in closed form. The
  next wake-up is the first of: the next completion (a heap keyed by the iteration index at which
  each request finishes), the iteration at which the KV cache would overflow, and the first
  iteration boundary at or after the next incoming KV transfer. An arrival in the middle of a span
  cuts the span at the next boundary (solved from the quadratic, then checked).
- *mixed* machines (the baselines' machines and Splitwise's mixed pool) run both phases: prompts
  first; a prefill iteration also carries one decode step of the running batch (mixed batching).
  ``SchedulerConfig.mixed_batch`` (replay.scheduler) sets its time. ``"fused"`` (default): one forward pass over
  the prompt chunk and the B decode tokens, which read the weights once, so the decode tokens
  count as B more tokens of the prefill (not as more prompts: the prefill fit's per-prompt term
  is not theirs), plus the decode attention over the C context tokens held:
  ``prefill_time_sums(n, T + B, S + B) + c*C``. (splitwise-sim prices a mixed batch as
  prompt_time(T + B) x 1.1.) ``"sequential"``: the prefill and a whole decode
  step one after the other, ``prefill_time(chunk) + decode_time(B, C)``: an upper bound that
  counts the weight reads and per-iteration overhead twice.

Admission without output-length knowledge: a request joins a decode batch when its current
context fits with a watermark: ``C + context + watermark <= capacity`` (the watermark is waived
on an empty machine) and ``B < max_batch_size``. When the cache fills mid-run (C > capacity before
an iteration) the youngest request is preempted: its KV is dropped, it goes to the front of the
machine's wait queue and is recomputed later (a prefill of prompt + generated tokens, which also
yields its next token). Requests already preempted ``max_preemptions`` times are spared while
another victim exists (the cap on preemptions per request). Nothing fails.

KV accounting: C = sum over the batch of (prompt + tokens generated so far) = the context each
request attends to in the next iteration (one token more than stored, conservative by B).

Prefix caching (``SchedulerConfig.prefix_caching``; :mod:`replay.prefix_cache`): each machine
keeps an LRU cache of prefix-KV blocks (``self.pc``) in the KV memory its running activity leaves
free, refitted at the end of every wake-up (:meth:`Machine.wake`). A prompt joining a prefill batch
computes only its uncached suffix x = p - s (s: the leading cached blocks' tokens, at most p - 1):
``tokens += x`` (the linear and hinge terms of the prefill fit, and the batch token limit) and
``tokens_sq += p^2 - s^2`` (its queries attend over the whole context); it allocates its whole
context as before. Its blocks are cached when its prefill ends; recomputes after preemption do
not use the cache.

Served overhead (:mod:`replay.serving`, zero by default): ``iteration_s + iteration_s_per_request
x B`` is added to every iteration. A decode step's share is folded into the decode coefficients
(``a``, ``b``: :func:`replay.simulate.simulate`), so spans stay closed-form and cost nothing
extra; an iteration with prefill work adds ``o0 + o1 x (prompts + decodes)`` (``ovh``), its
sequential pricing ``o0 + o1 x prompts`` (its decode step has its share in ``a`` and ``b``).

The machine policy is a seam: :data:`MACHINE_POLICIES` maps ``SchedulerConfig.machine_policy``
to the class that runs an instance, and :func:`machine_class` picks it per pool (role). A new
policy (e.g. vLLM-style chunked prefill) subclasses :class:`Machine` (or implements the same
interface: ``wake``, ``notify``, ``set_role``, the load counters and the span records) and
registers here; the event loop and routing do not change. :mod:`replay.vllm_policy` registers
``vllm`` (vLLM V1's chunked-prefill scheduler) this way.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush

from replay.errors import ReplayError
from replay.prefix_cache import BlockHashError
from replay.spans import SEGMENT, SPAN, boundary_at_or_after
from replay.states import DECODE, IDLE, MIXED, PREFILL, PROMPT, TOKEN

pack_span = SPAN.pack  # a span record (replay.spans.SPAN)
pack_segment = SEGMENT.pack  # a request segment record (replay.spans.SEGMENT)

INF = float("inf")


class Machine:
    """The reference machine policy: one model instance's queues, decode batch state, the
    current span, and its records (module doc)."""

    __slots__ = (
        "idx", "spec", "home", "role", "cl", "a", "b", "c", "q", "pf", "cap", "wm", "maxb",
        "queue", "wait", "incoming", "done", "fresh", "rc", "rc_tokens", "pbatch", "ptoks",
        "p_load", "d_load", "kind", "t0", "d0", "inc", "B", "C", "it", "wake_n", "wake_t", "ver",
        "spans", "segs", "nspans", "role_since", "pool_time", "pool_busy",
        "max_c", "max_b", "busy_mark", "fused", "pc", "kvu", "ovh", "o0", "o1",
    )  # fmt: skip

    def __init__(self, cl, idx, spec_name, role, coef, prefill_sums, cap, wm, maxb):
        self.idx = idx
        self.spec = spec_name
        self.home = role
        self.role = role
        self.cl = cl
        self.a, self.b, self.c, self.q = coef
        self.pf = prefill_sums
        self.fused = cl.cfg.mixed_batch == "fused"
        self.cap = cap
        self.wm = wm
        self.maxb = maxb
        self.queue = deque()  # prompt queue (request ids), FCFS
        self.wait = deque()  # requests waiting for decode admission (KV here or to recompute)
        self.incoming = []  # heap (t_ready, seq, request): KV transfers in flight to here
        self.done = []  # heap (finish iteration index, join seq, request): the decode batch
        self.fresh = []  # joined from a transfer, first decode iteration not yet run
        self.rc = []  # admitted preempted requests, recomputed in the next iteration
        self.rc_tokens = 0
        self.pbatch = []  # requests in the running prefill iteration
        self.ptoks = 0
        self.p_load = 0  # pending prompt tokens (queued or in a prefill iteration)
        self.d_load = 0  # prompt tokens of requests assigned here for decode, not finished
        self.kind = IDLE
        self.t0 = 0.0
        self.d0 = 0.0
        self.inc = 0.0
        self.B = 0
        self.C = 0
        self.it = 0  # decode iterations run by this machine's batch so far
        self.wake_n = 0
        self.wake_t = INF
        self.ver = 0
        self.spans = bytearray()  # one SPAN record per span (replay.spans)
        self.segs = bytearray()  # one SEGMENT record per request segment (replay.spans)
        self.nspans = 0
        self.role_since = 0.0
        self.pool_time = [0.0, 0.0, 0.0]
        self.pool_busy = [0.0, 0.0, 0.0]
        self.max_c = 0
        self.max_b = 0
        self.busy_mark = 0.0  # busy time before this instant is already credited to a pool
        self.pc = None  # replay.prefix_cache.PrefixCache when prefix caching is on (Cluster)
        self.kvu = 0  # KV tokens the running activity uses (prefix caching: the cache's room)
        # served per-iteration overhead (replay.serving): o0 + o1 x requests, added to an
        # iteration with prefill work (decode steps have it folded into a and b: simulate)
        self.o0 = 0.0
        self.o1 = 0.0
        self.ovh = False

    # ---- scheduling helpers -------------------------------------------------------------
    def schedule(self, t):
        self.ver += 1
        self.wake_t = t
        cl = self.cl
        heappush(cl.heap, (t, next(cl.seq), self, self.ver))

    #: first iteration boundary of the current decode span at or after t (replay.spans)
    boundary_at_or_after = boundary_at_or_after

    def notify(self, t, now):
        """Something (a prompt, a KV transfer) is ready here at time t >= now: wake in time."""
        kind = self.kind
        if kind == IDLE:
            if t < now:
                t = now
            if t < self.wake_t:
                self.schedule(t)
        elif kind == DECODE:
            n = self.boundary_at_or_after(t)
            if n < self.wake_n:
                self.wake_n = n
                self.schedule(self.t0 + n * self.d0 + self.inc * n * (n - 1) * 0.5)
        # PREFILL: the end of the running iteration looks at everything queued

    def set_role(self, role, now):
        if self.kind != IDLE:  # split the running activity's busy time at the pool change
            start = self.t0 if self.t0 > self.busy_mark else self.busy_mark
            self.pool_busy[self.role] += now - start
            self.busy_mark = now
        self.pool_time[self.role] += now - self.role_since
        self.role_since = now
        self.role = role
        self.cl.role_changes.append((now, self.idx, role))
        self.cl.repool()

    # ---- the wake-up: close the running activity, then decide the next ------------------
    def wake(self, T):
        kind = self.kind
        if kind == DECODE:
            n = self.wake_n
            if n > 0:
                B = self.B
                if self.C + (n - 1) * B > self.max_c:
                    self.max_c = self.C + (n - 1) * B
                self._record(n, self.d0, self.inc, B, 0, T)
                self.it += n
                self.C += n * B
        elif kind == PREFILL:
            B = self.B
            self._record(1, T - self.t0, 0.0, B, self.ptoks, T)
            if B:
                self.it += 1
                self.C += B
            self._finish_prefill(T)
        self.kind = IDLE
        self.wake_t = INF
        done = self.done
        if done:
            it = self.it
            while done and done[0][0] <= it:
                self._complete(heappop(done)[2], T)
        inc = self.incoming
        while inc and inc[0][0] <= T:
            self.wait.append(heappop(inc)[2])
        if self.wait:
            self._admit(T)
        self._start(T)
        pc = self.pc
        if pc is not None:  # the cache gets the KV memory the running activity leaves
            kind = self.kind
            if kind == DECODE:
                used = self.C + self.wake_n * self.B  # the span's last iteration
            elif kind == PREFILL:
                used = self.kvu
            else:
                used = self.C + self.rc_tokens
            room = (self.cap - used) // pc.block_tokens
            if room < len(pc._blocks):  # evict (the cache's own method)
                pc.resize(room)
            else:  # growing or unchanged: nothing to evict
                pc.capacity = room
        if self.role == MIXED and self.home != MIXED:
            self._maybe_return(T)

    def _record(self, n, d0, inc, B, ptok, T):
        """Close a span of n iterations (first duration d0, increment inc) ending at T."""
        t0 = self.t0
        fresh = self.fresh
        k0 = 0
        if fresh:
            k0 = len(fresh)
            cl = self.cl
            first_end = t0 + d0
            t_last = cl.t_last
            for r in fresh:
                cl.gap_req.append(r)
                cl.gap_val.append(first_end - t_last[r])
            fresh.clear()
        self.spans += pack_span(t0, d0, inc, n, B, k0, ptok, self.role)
        self.nspans += 1
        start = t0 if t0 > self.busy_mark else self.busy_mark
        self.pool_busy[self.role] += T - start
        self.busy_mark = T

    def _finish_prefill(self, T):
        cl = self.cl
        ptok = cl.ptok
        otok = cl.otok
        tm_of = cl.tm_of
        gen = cl.gen
        t_last = cl.t_last
        machines = cl.machines
        me = self.idx
        t_start = self.t0
        for r in self.pbatch:
            if cl.recompute[r]:
                cl.recompute[r] = False
                g = gen[r] + 1
                gen[r] = g
                cl.gap_req.append(r)
                cl.gap_val.append(T - t_last[r])
                t_last[r] = T
                if g >= otok[r]:
                    cl.t_done[r] = T
                    self.d_load -= ptok[r]
                    cl.completed += 1
                else:
                    self._join(r)
                continue
            p = ptok[r]
            self.p_load -= p
            if self.pc is not None and cl.hashes[r]:
                self._cache_insert(r)
            cl.t_first[r] = T
            gen[r] = 1
            t_last[r] = T
            tm = tm_of[r]
            if otok[r] == 1:  # done at the first token: no KV transfer, no decode
                cl.t_done[r] = T
                m = machines[tm]
                m.d_load -= p
                cl.completed += 1
                if m.role == MIXED and m.home != MIXED:
                    m._maybe_return(T)
            elif tm == me:
                self._join(r)
            else:
                m = machines[tm]
                x = p
                if cl.tx_uncached and cl.hashes[r]:  # the token machine's cache holds a prefix
                    k = m.pc.peek(cl.hashes[r])
                    if k:
                        x = p - m.pc.saved(k, p)
                        cl.tx_saved += p - x
                tx = cl.links.transfer(me, tm, x, t_start, T)
                cl.kvx[r] = tx - T
                heappush(m.incoming, (tx, next(cl.seq), r))
                if m.kind != PREFILL:
                    m.notify(tx, T)
        self.pbatch = []
        self.rc_tokens = 0

    def _join(self, r, fresh=False):
        cl = self.cl
        g = cl.gen[r]
        self.C += cl.ptok[r] + g
        self.B += 1
        cl.jit[r] = self.it
        cl.jseg[r] = self.nspans
        heappush(self.done, (self.it + cl.otok[r] - g, next(cl.seq), r))
        if fresh:
            self.fresh.append(r)
        if self.B > self.max_b:
            self.max_b = self.B

    def _complete(self, r, T):
        cl = self.cl
        p = cl.ptok[r]
        cl.t_done[r] = T
        cl.t_last[r] = T
        cl.gen[r] = cl.otok[r]
        self.C -= p + cl.otok[r]
        self.B -= 1
        self.d_load -= p
        cl.completed += 1
        self.segs += pack_segment(r, cl.jseg[r], self.nspans - 1)
        if cl.tx_uncached and self.home == TOKEN and cl.hashes[r]:  # its KV is free now: cached
            self._cache_insert(r)

    def _cache_insert(self, r):
        """Cache request r's prompt blocks here (replay.prefix_cache), naming r on bad ids."""
        cl = self.cl
        try:
            self.pc.insert(cl.hashes[r])
        except BlockHashError as e:
            raise ReplayError(f"request {cl.rid[r]}: {e}") from None

    def _admit(self, T):
        cl = self.cl
        wait = self.wait
        ptok = cl.ptok
        gen = cl.gen
        recompute = cl.recompute
        maxb = self.maxb
        cap = self.cap
        while wait:
            r = wait[0]
            need = ptok[r] + gen[r]
            used = self.C + self.rc_tokens
            nb = self.B + len(self.rc)
            if nb:
                if nb >= maxb or used + need + self.wm > cap:
                    break
            elif need > cap:  # cannot happen: requests are checked at arrival
                raise ReplayError(f"request {cl.rid[r]}: KV does not fit machine {self.idx}")
            wait.popleft()
            if recompute[r]:
                self.rc.append(r)
                self.rc_tokens += need
            else:
                self._join(r, cl.t_last[r] < T)

    def _preempt(self, T):
        """Drop the youngest eligible request's KV; it is recomputed later."""
        cl = self.cl
        done = self.done
        npre = cl.npre
        cap_pre = cl.cfg.max_preemptions
        eligible = [e for e in done if npre[e[2]] < cap_pre] or done
        victim = max(eligible, key=lambda e: e[1])
        done.remove(victim)
        heapify(done)
        r = victim[2]
        g = cl.gen[r] + (self.it - cl.jit[r])
        if g != cl.gen[r]:
            cl.t_last[r] = T
        cl.gen[r] = g
        self.C -= cl.ptok[r] + g
        self.B -= 1
        npre[r] += 1
        cl.preemptions += 1
        if r in self.fresh:
            self.fresh.remove(r)
        if cl.jseg[r] <= self.nspans - 1:
            self.segs += pack_segment(r, cl.jseg[r], self.nspans - 1)
        cl.recompute[r] = True
        self.wait.appendleft(r)

    def _start(self, T):
        """Start the next prefill iteration or decode span at T, or stay idle."""
        queue = self.queue
        if self.B > 1 and self.C > self.cap:
            while self.C > self.cap and self.B > 1:
                self._preempt(T)
        if self.rc or (queue and self.role != TOKEN):
            cl = self.cl
            ptok = cl.ptok
            batch = self.rc
            n = len(batch)
            tok = 0
            sq = 0
            for r in batch:
                x = ptok[r] + cl.gen[r]
                tok += x
                sq += x * x
            kv_need = self.C + tok
            full = tok  # the batch's whole context (prefix caching: tok is what is computed)
            limit = cl.cfg.prompt_batch_tokens
            pc = self.pc
            if queue and self.role != TOKEN:
                me = self.idx
                tm_of = cl.tm_of
                t_start = cl.t_start
                local_tokens = self.C + self.B + self.rc_tokens
                nb = self.B + n
                maxb = self.maxb
                cap = self.cap
                while queue:
                    r = queue[0]
                    p = ptok[r]
                    x = p  # tokens computed: the prompt less its cached prefix
                    k = 0  # its leading cached blocks
                    if pc is not None:
                        h = cl.hashes[r]
                        k = pc.peek(h) if h else 0
                        if k:
                            x = p - pc.saved(k, p)
                    if n and tok + x > limit:
                        break
                    if tm_of[r] == me:
                        if nb and (nb >= maxb or local_tokens + p + 1 + self.wm > cap):
                            break
                        local_tokens += p + 1
                        kv_need += p
                        nb += 1
                    queue.popleft()
                    t_start[r] = T
                    batch.append(r)
                    n += 1
                    full += p
                    if x == p:
                        tok += p
                        sq += p * p
                    else:  # suffix x: linear terms on x, attention over the whole context
                        tok += x
                        sq += p * p - (p - x) * (p - x)
                        cl.cached[r] = p - x
                    if pc is not None and h:  # counted now, touched by the insert at the end
                        pc.record(len(h), k, p)
            if n:
                if kv_need > self.max_c:
                    self.max_c = kv_need
                self.rc = []
                self.pbatch = batch
                self.ptoks = tok
                self.kvu = self.C + full + self.B
                B = self.B
                if not B:
                    dur = self.pf(n, tok, sq)
                elif self.fused:
                    dur = self.pf(n, tok + B, sq + B) + self.c * self.C
                else:
                    dur = self.pf(n, tok, sq) + self.a + (self.b + self.q * B) * B + self.c * self.C
                if self.ovh:  # served overhead (replay.serving): n prompts and B decodes (the
                    # sequential decode step has its share in a and b already)
                    dur += self.o0 + self.o1 * (n + B if self.fused else n)
                self.kind = PREFILL
                self.t0 = T
                self.schedule(T + dur)
                return
        B = self.B
        if B:
            cap = self.cap
            C = self.C
            d0 = self.a + (self.b + self.q * B) * B + self.c * C
            inc = self.c * B
            n = self.done[0][0] - self.it
            nf = (cap - C) // B + 1
            if nf < n:
                n = nf
            self.kind = DECODE
            self.t0 = T
            self.d0 = d0
            self.inc = inc
            if self.incoming:
                ni = self.boundary_at_or_after(self.incoming[0][0])
                if ni < n:
                    n = ni
            self.wake_n = n
            self.schedule(T + n * d0 + inc * n * (n - 1) * 0.5)
            return
        if self.wait:  # preempted requests waiting with an empty batch: admit now
            self._admit(T)
            if self.rc:
                self._start(T)
                return
        if self.incoming:
            self.schedule(self.incoming[0][0])

    def _maybe_return(self, T):
        if self.home == TOKEN:
            if not self.queue and self.kind != PREFILL and self.p_load == 0:
                self.set_role(TOKEN, T)
        elif (
            self.B == 0
            and not self.wait
            and not self.incoming
            and not self.rc
            and self.d_load == 0
            and self.kind != PREFILL
        ):
            self.set_role(PROMPT, T)


#: machine-level policies by name (``SchedulerConfig.machine_policy``)
MACHINE_POLICIES: dict[str, type[Machine]] = {"reference": Machine}


def machine_class(policy: str, role: int) -> type[Machine]:
    """The class that runs an instance of pool ``role`` (PROMPT, TOKEN, MIXED) under
    ``policy`` (checked by SchedulerConfig; ``replay.simulate`` picks each pool's policy:
    ``design.machine_policy`` for machines that run both phases, else
    ``scheduler.machine_policy``)."""
    return MACHINE_POLICIES[policy]
