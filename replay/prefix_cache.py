"""An LRU block cache of prefix KV for one model instance (issue 14).

A prompt is a chain of fixed-size token blocks (``block_tokens`` each; Mooncake's traces use
512), each named by a hash that identifies the whole prefix up to and including that block (the
trace column ``block_hashes``). A block is useful only while every block before it in its chain
is cached too, so a lookup counts the *leading* cached blocks of a prompt.

Capacity is counted in blocks: the KV memory that the instance's running requests do not use.
It shrinks and grows as they allocate and free (:meth:`PrefixCache.resize`), evicting the least
recently used blocks. Blocks of one chain are touched tail first, so the head of a chain is the
most recently used and eviction takes chains from their tails (as vLLM frees a request's blocks
in reverse order): an eviction never leaves a cached block whose predecessor is gone, unless the
predecessor was shared with another chain and evicted by it (then :meth:`match` stops there).

Modelling choice (disclosed where the figures are shown): the cache holds prefix KV only in
free memory; a running request that hit the cache allocates its whole context as before (no
sharing of blocks between the cache and running requests), which is conservative on memory.

Speed: an ``OrderedDict`` keyed by hash; every operation is O(blocks touched). (Plain loops
over ``in`` / ``move_to_end`` / ``popitem`` measured faster here than ``map``/``takewhile``
tricks and than ``OrderedDict.update``.) The simulator's hot path uses :meth:`peek` at batch
formation, :meth:`record` for the counters and :meth:`insert` when the prefill ends (which
touches the whole chain), so a prompt costs about one pass over its blocks at each step.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixCache"]


class PrefixCache:
    """LRU cache of prefix KV blocks for one instance.

    Args:
        block_tokens: tokens per block (> 0).
        capacity_blocks: blocks the cache may hold now (>= 0; see :meth:`resize`).

    Counters (plain ints, read freely): ``lookups`` (calls of :meth:`match`), ``hits`` (lookups
    that matched at least one block), ``lookup_blocks`` / ``hit_blocks`` (blocks asked for /
    found), ``saved_tokens`` (prompt tokens not recomputed thanks to hits), ``inserted_blocks``,
    ``evicted_blocks``.
    """

    __slots__ = (
        "block_tokens", "capacity", "_lru", "lookups", "hits", "lookup_blocks", "hit_blocks",
        "saved_tokens", "inserted_blocks", "evicted_blocks",
    )  # fmt: skip

    def __init__(self, block_tokens: int, capacity_blocks: int):
        if int(block_tokens) <= 0:
            raise ValueError(f"block_tokens must be > 0 (got {block_tokens})")
        if int(capacity_blocks) < 0:
            raise ValueError(f"capacity_blocks must be >= 0 (got {capacity_blocks})")
        self.block_tokens = int(block_tokens)
        self.capacity = int(capacity_blocks)
        self._lru: OrderedDict = OrderedDict()  # hash -> None; first = least recently used
        self.lookups = 0
        self.hits = 0
        self.lookup_blocks = 0
        self.hit_blocks = 0
        self.saved_tokens = 0
        self.inserted_blocks = 0
        self.evicted_blocks = 0

    # ---- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, h) -> bool:
        return h in self._lru

    def peek(self, hashes) -> int:
        """Leading cached blocks of ``hashes``, without touching them or counting a lookup
        (routing decisions, batch formation)."""
        lru = self._lru
        n = 0
        for h in hashes:
            if h not in lru:
                break
            n += 1
        return n

    def match(self, hashes, prompt_tokens: int | None = None) -> int:
        """Leading cached blocks of ``hashes``; touches them (most recently used) and counts
        the lookup.

        ``prompt_tokens`` (the prompt's length) bounds the saved tokens counted:
        ``min(blocks * block_tokens, prompt_tokens - 1)`` (at least one prompt token is always
        computed, as vLLM does on a full hit; the last block may be partial). Without it the
        saved tokens are ``blocks * block_tokens``. :meth:`saved` gives the same figure.
        """
        lru = self._lru
        n = 0
        for h in hashes:
            if h not in lru:
                break
            n += 1
        if n:
            mte = lru.move_to_end
            for h in hashes[n - 1 :: -1]:  # tail first: the chain's head ends most recent
                mte(h)
        self.record(len(hashes), n, prompt_tokens)
        return n

    def record(self, blocks: int, hit_blocks: int, prompt_tokens: int | None = None) -> int:
        """Count one lookup of ``blocks`` blocks that found ``hit_blocks`` leading blocks (as
        :meth:`match` does, without touching: for a :meth:`peek` whose blocks the caller
        touches later, e.g. by :meth:`insert`). Returns the saved tokens counted."""
        self.lookups += 1
        self.lookup_blocks += blocks
        if hit_blocks:
            self.hits += 1
            self.hit_blocks += hit_blocks
            s = self.saved(hit_blocks, prompt_tokens)
            self.saved_tokens += s
            return s
        return 0

    def saved(self, blocks: int, prompt_tokens: int | None = None) -> int:
        """Prompt tokens that ``blocks`` leading cached blocks spare (see :meth:`match`)."""
        s = blocks * self.block_tokens
        if prompt_tokens is not None and s > prompt_tokens - 1:
            s = prompt_tokens - 1 if prompt_tokens > 0 else 0
        return s

    # ---- updates ------------------------------------------------------------------------
    def insert(self, hashes) -> int:
        """Cache the chain ``hashes`` (touching blocks already there); returns blocks added.

        Only the first ``capacity`` blocks of a chain longer than the cache are kept (a block
        is of no use without its predecessors). Evicts least recently used blocks to fit.
        """
        cap = self.capacity
        if cap <= 0:
            return 0
        lru = self._lru
        m = len(hashes)
        if m > cap:
            m = cap
        mte = lru.move_to_end
        before = len(lru)
        for h in hashes[m - 1 :: -1]:  # tail first: the chain's head ends most recent
            if h in lru:
                mte(h)
            else:
                lru[h] = None
        n = len(lru)
        added = n - before
        self.inserted_blocks += added
        over = n - cap
        if over > 0:
            pop = lru.popitem
            for _ in range(over):
                pop(False)
            self.evicted_blocks += over
        return added

    def resize(self, capacity_blocks: int) -> int:
        """Set the capacity (clipped at 0), evicting least recently used blocks; returns the
        blocks evicted."""
        cap = int(capacity_blocks)
        if cap < 0:
            cap = 0
        self.capacity = cap
        lru = self._lru
        over = len(lru) - cap
        if over <= 0:
            return 0
        pop = lru.popitem
        for _ in range(over):
            pop(False)
        self.evicted_blocks += over
        return over

    def clear(self) -> None:
        """Drop every block (counters kept)."""
        self._lru.clear()

    # ---- reporting ----------------------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """Block hit rate: ``hit_blocks / lookup_blocks`` (NaN before any lookup block)."""
        return self.hit_blocks / self.lookup_blocks if self.lookup_blocks else float("nan")

    def stats(self) -> dict:
        """The counters, the cached blocks and the capacity, as a plain dict."""
        return {
            "block_tokens": self.block_tokens,
            "capacity_blocks": self.capacity,
            "cached_blocks": len(self._lru),
            "lookups": self.lookups,
            "hits": self.hits,
            "lookup_blocks": self.lookup_blocks,
            "hit_blocks": self.hit_blocks,
            "saved_tokens": self.saved_tokens,
            "inserted_blocks": self.inserted_blocks,
            "evicted_blocks": self.evicted_blocks,
        }

    def order(self) -> list:
        """Cached hashes from least to most recently used (tests, debugging)."""
        return list(self._lru)
