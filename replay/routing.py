"""Cluster-level scheduling: routing each request at arrival, and the mixed pool.

Cluster scheduler (at arrival; both machines are chosen then, so the KV transfer overlaps the
prompt): ``jsq`` picks the prompt machine with the fewest pending prompt tokens (queued or in a
prefill iteration) and the token machine with the fewest assigned context tokens (prompt tokens
of requests assigned and not finished); baselines use the sum of both. ``round-robin`` and
``random`` (seeded) are the alternatives. Mixed pool (split designs): when the chosen prompt
machine holds >= ``prompt_queue_threshold_tokens`` pending prompt tokens, the least-loaded token
pool machine moves to the mixed pool and takes the request (both phases); when the chosen token
machine's assigned tokens would exceed ``token_kv_threshold_fraction`` of its KV capacity, the
least-loaded prompt machine (other than the chosen one) moves to the mixed pool and takes the
token phase. A request whose prompt machine is mixed runs both phases there. A mixed machine goes
back to its home pool when it holds no work of the other kind.

Cache-aware routing (``SchedulerConfig.cache_aware_routing``, with prefix caching and ``jsq``):
the prompt machine (baselines: the machine) minimises ``load - cached`` where ``load`` is the
jsq load above (pending prompt tokens; baselines add assigned decode tokens) and ``cached`` the
prompt tokens its prefix cache holds for this prompt (leading cached blocks, at most prompt - 1
tokens). One cached token weighs as one token of queue: the machine with the longest cached
prefix wins unless its queue is longer by more than the prefill it spares (Mooncake's Conductor
and llm-d's prefix-cache scorer balance the same two terms; Mooncake in estimated seconds, llm-d
as a weighted sum of scores). The token machine is chosen as before.

"""

from __future__ import annotations

from operator import attrgetter

from replay.states import MIXED, PREFILL, PROMPT, TOKEN


class Routing:
    """The cluster scheduler, mixed into :class:`replay.event_loop.Cluster` (its state: the
    machines, ``cfg``, ``split``, ``mixed_pool``, the request tables, ``rng``, ``rr``)."""

    def repool(self):
        ms = self.machines
        self.prompt_capable = [m for m in ms if m.role != TOKEN]
        self.token_capable = [m for m in ms if m.role != PROMPT]
        self.prompt_pool = [m for m in ms if m.role == PROMPT]
        self.token_pool = [m for m in ms if m.role == TOKEN]

    def _pick(self, pool, which, key):
        if self.jsq:
            return min(pool, key=key)
        if self.cfg.policy == "round-robin":
            i = self.rr[which]
            self.rr[which] = i + 1
            return pool[i % len(pool)]
        return pool[int(self.rng.integers(len(pool)))]

    def _arrive(self, r, now):
        p = self.ptok[r]
        if p + self.otok[r] > self.max_tokens:
            self.rejected[r] = True
            self.n_rejected += 1
            return
        cfg = self.cfg
        h = self.hashes[r] if self.cache_route else None
        if self.split:
            pm = (
                _cache_pick(self.prompt_capable, h, p, 0)
                if h
                else self._pick(self.prompt_capable, 0, _p_load)
            )
            if (
                self.mixed_pool
                and pm.role == PROMPT
                and pm.p_load >= cfg.prompt_queue_threshold_tokens
                and self.token_pool
            ):
                m = min(self.token_pool, key=_d_load)
                m.set_role(MIXED, now)
                pm = m
            if pm.role == MIXED:
                tm = pm
            else:
                tm = self._pick(self.token_capable, 1, _d_load)
                if (
                    self.mixed_pool
                    and tm.role == TOKEN
                    and tm.d_load + p > cfg.token_kv_threshold_fraction * tm.cap
                    and len(self.prompt_pool) > 1
                ):
                    m = min([x for x in self.prompt_pool if x is not pm], key=_p_load)
                    m.set_role(MIXED, now)
                    tm = m
        else:
            pm = tm = (
                _cache_pick(self.machines, h, p, 1) if h else self._pick(self.machines, 0, _load)
            )
        self.pm_of[r] = pm.idx
        self.tm_of[r] = tm.idx
        self.t_last[r] = now
        tm.d_load += p
        pm.queue.append(r)
        pm.p_load += p
        if pm.kind != PREFILL:
            pm.notify(now, now)


def _cache_pick(pool, hashes, p, with_decode):
    """Cache-aware jsq: the machine with the least pending prompt tokens (plus, in baselines,
    assigned decode tokens) less the prompt tokens its prefix cache would spare; the first such
    machine on ties (as ``min``)."""
    best = None
    bv = 0
    cap = p - 1  # saved tokens: at most prompt - 1 (PrefixCache.saved, inlined)
    bt = pool[0].pc.block_tokens  # one block size for the cluster
    for m in pool:
        v = m.p_load + m.d_load if with_decode else m.p_load
        lru = m.pc._blocks  # PrefixCache.peek, inlined: once per machine per arrival
        k = 0
        for h in hashes:
            if h not in lru:
                break
            k += 1
        if k:
            k *= bt
            v -= k if k < cap else cap
        if best is None or v < bv:
            best = m
            bv = v
    return best


_p_load = attrgetter("p_load")  # (C-level keys for min: no Python frame per machine)
_d_load = attrgetter("d_load")


def _load(m):
    return m.p_load + m.d_load
