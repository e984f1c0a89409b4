"""An LRU block cache of prefix KV for one model instance (issue 14).

A prompt is a chain of fixed-size token blocks (``block_tokens`` each; Mooncake's traces use
512), each named by a hash that identifies the whole prefix up to and including that block (the
trace column ``block_hashes``). A block is useful only while every block before it in its chain
is cached too, so a lookup counts the *leading* cached blocks of a prompt.

Capacity is counted in blocks: the KV memory that the instance's running requests do not use.
It shrinks and grows as they allocate and free (:meth:`PrefixCache.resize`), evicting the least
recently used blocks. Blocks of one chain are touched tail first, so the head of a chain is the
most recently used and eviction takes chains from their tails (as vLLM frees a request's blocks
in reverse order): a block is never less recent than a block after it in any chain, so an
eviction never leaves a cached block whose predecessor is gone (the cached blocks of a chain are
always a leading run).

Modelling choice (disclosed where the figures are shown): the cache holds prefix KV only in
free memory; a running request that hit the cache allocates its whole context as before (no
sharing of blocks between the cache and running requests), which is conservative on memory.

Structure (exact LRU at a fraction of the per-block work): the blocks inserted together form a
*segment* ``[chain, lo, hi]`` whose cached blocks are ``chain[lo:hi]``; segments are kept oldest
first, and inside one the tail is least recent. ``_blocks`` maps each cached hash to its
segment (membership is one dict lookup). An insert makes one new segment and stores each new
block once; the prompt's cached leading blocks leave the heads of their old segments (``lo``
moves up, no reordering); eviction deletes from the oldest segment's tail, with no per-block
bookkeeping of an order. This is
the same cache, block for block and in the same LRU order, as a per-block ``OrderedDict`` touched
tail first (tests/test_prefix_cache.py checks it against one on random prefix trees), on one
condition the trace layer states and the cache checks as it goes: a block id names its whole
prefix (equal ids sit at equal positions after equal predecessors, as Mooncake's ``hash_ids``
do). An insert that finds otherwise raises :class:`BlockHashError` (the replay names the
request). Measured on the Mooncake conversation case (benchmarks/replay_speed.py): see the
README's speed paragraph.
"""

from __future__ import annotations

from collections import deque

__all__ = ["BlockHashError", "PrefixCache"]


class BlockHashError(ValueError):
    """Block ids that do not name their prefix (the same id at two positions, or after two
    different predecessors): the replay reports it as a ReplayError naming the request."""


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
        "block_tokens", "capacity", "_blocks", "_segs", "lookups", "hits", "lookup_blocks",
        "hit_blocks", "saved_tokens", "inserted_blocks", "evicted_blocks",
    )  # fmt: skip

    def __init__(self, block_tokens: int, capacity_blocks: int):
        if int(block_tokens) <= 0:
            raise ValueError(f"block_tokens must be > 0 (got {block_tokens})")
        if int(capacity_blocks) < 0:
            raise ValueError(f"capacity_blocks must be >= 0 (got {capacity_blocks})")
        self.block_tokens = int(block_tokens)
        self.capacity = int(capacity_blocks)
        self._blocks: dict = {}  # cached hash -> its segment [chain, lo, hi]
        self._segs: deque = deque()  # segments, least recently inserted first
        self.lookups = 0
        self.hits = 0
        self.lookup_blocks = 0
        self.hit_blocks = 0
        self.saved_tokens = 0
        self.inserted_blocks = 0
        self.evicted_blocks = 0

    # ---- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, h) -> bool:
        return h in self._blocks

    def peek(self, hashes) -> int:
        """Leading cached blocks of ``hashes``, without touching them or counting a lookup
        (routing decisions, batch formation)."""
        blocks = self._blocks
        n = 0
        for h in hashes:
            if h not in blocks:
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
        n = self.peek(hashes)
        if n:
            self._touch(hashes[:n])
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
        Raises :class:`BlockHashError` when the ids do not name their prefix (module doc).
        """
        cap = self.capacity
        if cap <= 0:
            return 0
        if len(hashes) > cap:
            hashes = hashes[:cap]
        added = self._touch(hashes)
        self.inserted_blocks += added
        over = len(self._blocks) - cap
        if over > 0:
            self._evict(over)
        return added

    def _touch(self, chain) -> int:
        """Make ``chain`` the most recent segment; returns the blocks that were not cached."""
        blocks = self._blocks
        get = blocks.get
        seg = [chain, 0, len(chain)]
        j = 0  # the chain's cached blocks: a leading run, each the head of its old segment
        for h in chain:
            old = get(h)
            if old is None:
                break
            if old[1] != j or old[0][j] != h:
                raise BlockHashError(_mismatch(h, j, old))
            old[1] = j + 1
            blocks[h] = seg
            j += 1
        before = len(blocks)
        for h in chain[j:]:  # (a loop: measured faster than update(dict.fromkeys(...)))
            blocks[h] = seg
        self._segs.append(seg)
        added = len(blocks) - before
        if added != len(chain) - j:  # a block after the leading run was cached, or repeated
            raise BlockHashError(
                f"block ids {_show(chain)} repeat an id, or hold a cached id after an uncached "
                "one: block ids must name their whole prefix (trace column block_hashes)"
            )
        return added

    def _evict(self, over: int) -> None:
        """Drop the ``over`` least recently used blocks (oldest segment, tail first)."""
        self.evicted_blocks += over
        blocks = self._blocks
        segs = self._segs
        while over:
            seg = segs[0]
            chain, lo, hi = seg
            if hi - lo > over:
                lo = hi - over
                seg[2] = lo
                over = 0
            else:
                over -= hi - lo
                segs.popleft()
            for h in chain[lo:hi]:
                del blocks[h]

    def resize(self, capacity_blocks: int) -> int:
        """Set the capacity (clipped at 0), evicting least recently used blocks; returns the
        blocks evicted."""
        cap = int(capacity_blocks)
        if cap < 0:
            cap = 0
        self.capacity = cap
        over = len(self._blocks) - cap
        if over <= 0:
            return 0
        self._evict(over)
        return over

    def clear(self) -> None:
        """Drop every block (counters kept)."""
        self._blocks.clear()
        self._segs.clear()

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
            "cached_blocks": len(self._blocks),
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
        out: list = []
        for chain, lo, hi in self._segs:
            out.extend(reversed(chain[lo:hi]))
        return out


def _show(chain) -> str:
    ids = list(chain)
    return str(ids) if len(ids) <= 6 else f"[{', '.join(map(str, ids[:6]))}, ... ({len(ids)} ids)]"


def _mismatch(h, j: int, seg) -> str:
    chain, lo = seg[0], seg[1]
    where = next((i for i in range(lo, seg[2]) if chain[i] == h), lo)
    return (
        f"block id {h!r} at position {j} of a prompt is cached at position {where} of an earlier "
        f"one (after {_show(chain[:where])}): block ids must name their whole prefix "
        "(trace column block_hashes)"
    )
