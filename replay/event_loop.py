"""The event loop of the simulator: request arrivals merged with machine wake-ups.

Event loop (SimPy-style, specialised): one heap of ``(time, seq, machine, version)`` machine
wake-ups, merged with the sorted stream of request arrivals (arrivals need no heap entries).
A machine keeps at most one live wake-up; rescheduling bumps its version and the stale entry is
skipped when popped. Ties: an arrival at the same time as a wake-up is handled first (so requests
arriving together are batched together: an idle machine starts work through a wake-up at the
arrival time, not inside the arrival); wake-ups at the same time run in the order they were
scheduled (``seq``).

The cluster holds the per-request tables (parallel lists indexed by request); routing at
arrival is :mod:`replay.routing`, what a machine does when it wakes is :mod:`replay.machine`.

Arrivals are the requests' arrivals at the scheduler: the trace's own, or, with the serving
component's arrival delay (:mod:`replay.serving`), the trace's delayed per request and taken in
time order (``reach``, ``order``; ties keep the trace's order). The request table's
``arrival_s`` stays the client's.
"""

from __future__ import annotations

import math
from array import array
from heapq import heappop
from itertools import count

import numpy as np

from replay.machine import INF, machine_class
from replay.prefix_cache import PrefixCache
from replay.routing import Routing


class Cluster(Routing):
    """All machines, the request tables (parallel lists indexed by request), and the run loop."""

    def __init__(
        self,
        trace_arrays,
        machines_cfg,
        links,
        cfg,
        split,
        seed,
        max_tokens,
        mixed_pool,
        hashes=None,
        block_tokens=0,
        policies=None,
        reach=None,
        decode_leg=(0.0, 0.0),
    ):
        rid, arrival, ptok, otok = trace_arrays
        n = len(arrival)
        self.n = n
        self.cfg = cfg
        self.jsq = cfg.policy == "jsq"  # (read on every arrival)
        self.split = split
        self.mixed_pool = bool(mixed_pool)
        self.rid = rid
        self.arrival = arrival
        self.ptok = ptok
        self.otok = otok
        self.max_tokens = max_tokens  # prompt + output above this: rejected
        self.pm_of = [-1] * n
        self.tm_of = [-1] * n
        self.t_start = [math.nan] * n
        self.t_first = [math.nan] * n
        self.t_done = [math.nan] * n
        self.t_last = [0.0] * n
        self.kvx = [0.0] * n
        self.npre = [0] * n
        self.gen = [0] * n
        self.jit = [0] * n
        self.jseg = [0] * n
        self.recompute = [False] * n
        self.rejected = [False] * n
        # arrivals at the scheduler (replay.serving): (time, request) in time order; without an
        # arrival delay the trace's own arrivals, in its order
        if reach is None:
            self.reach = arrival
            self.order = list(range(n))
        else:
            self.order = sorted(range(n), key=reach.__getitem__)  # stable: ties keep trace order
            self.reach = [reach[r] for r in self.order]
        self.leg0, self.leg1 = decode_leg  # disaggregated: the proxy's decode leg (s, s/token)
        self.gap_req = array("q")
        self.gap_val = array("d")
        self.heap = []
        self.seq = count()
        self.links = links
        self.completed = 0
        self.preemptions = 0
        self.n_rejected = 0
        self.role_changes = []
        policy = cfg.machine_policy
        policies = policies or [policy] * len(machines_cfg)  # per machine (its pool's policy)
        self.machines = [
            machine_class(policies[i], mc[1])(self, i, *mc) for i, mc in enumerate(machines_cfg)
        ]
        self.rng = np.random.default_rng(seed)
        self.rr = [0, 0]
        # prefix caching (replay.prefix_cache): per-request block hashes, a cache per machine
        self.hashes = hashes
        self.cached = [0] * n if hashes is not None else None  # prompt tokens not recomputed
        self.cache_route = bool(hashes is not None and cfg.cache_aware_routing)
        self.tx_uncached = bool(hashes is not None and cfg.kv_transfer.uncached_only and split)
        self.tx_saved = 0  # context tokens the KV transfers did not send (held by the receiver)
        if hashes is not None:
            for m in self.machines:
                m.pc = PrefixCache(block_tokens, m.cap // block_tokens)
        self.repool()

    def run(self, progress=None):
        """Run to completion; ``progress(done_arrivals, total)`` is called every ~1%."""
        heap = self.heap
        arr = list(self.reach) + [INF]
        order = self.order
        n = self.n
        i = 0
        nxt = arr[0]
        step = max(1, n // 100)
        mark = step if progress is not None else n + 1
        now = 0.0
        while True:
            if heap and heap[0][0] < nxt:
                t, _, m, ver = heappop(heap)
                if ver == m.ver:
                    now = t
                    m.wake(t)
            elif nxt == INF:
                break
            else:
                now = nxt
                self._arrive(order[i], nxt)
                i += 1
                nxt = arr[i]
                if i >= mark:
                    progress(i, n)
                    mark += step
        if progress is not None:
            progress(n, n)
        self.end_time = now
        for m in self.machines:
            m.pool_time[m.role] += now - m.role_since
            m.role_since = now
