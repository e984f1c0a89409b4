"""replay.prefix_cache.PrefixCache: hand-computed LRU sequences, and the same cache as a per-block
OrderedDict LRU on random prefix trees."""

import math
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.prefix_cache import BlockHashError, PrefixCache


def test_match_counts_leading_blocks_only():
    c = PrefixCache(512, 10)
    assert c.insert((1, 2, 3)) == 3
    assert c.match((1, 2, 3, 4)) == 3
    assert c.match((1, 9, 3)) == 1  # block 3 is useless after a miss at 9
    assert c.match((9, 1, 2)) == 0
    assert c.lookups == 3 and c.hits == 2
    assert c.lookup_blocks == 10 and c.hit_blocks == 4
    assert c.saved_tokens == 4 * 512
    assert c.hit_rate == pytest.approx(0.4)


def test_saved_tokens_bounded_by_prompt():
    c = PrefixCache(512, 10)
    c.insert((1, 2))
    # prompt of 700 tokens: 2 blocks (the second partial); a full hit still computes 1 token
    assert c.match((1, 2), prompt_tokens=700) == 2
    assert c.saved_tokens == 699
    # 1 block of a 2000-token prompt: 512 saved
    assert c.match((1, 7, 8, 9), prompt_tokens=2000) == 1
    assert c.saved_tokens == 699 + 512
    assert c.saved(3, 1024) == 1023 and c.saved(1, 1024) == 512 and c.saved(2) == 1024
    assert c.saved(1, 0) == 0


def test_insert_orders_chain_tail_first_and_evicts_lru():
    c = PrefixCache(16, 4)
    c.insert((1, 2, 3))
    assert c.order() == [3, 2, 1]  # tail least recent
    c.insert((1, 5))  # 1 touched, 5 added before it
    assert c.order() == [3, 2, 5, 1]
    c.insert((6,))  # over by one: 3 (the oldest tail) goes
    assert c.order() == [2, 5, 1, 6]
    assert len(c) == 4 and 3 not in c and c.evicted_blocks == 1
    assert c.inserted_blocks == 5


def test_match_touches_hits_tail_first():
    c = PrefixCache(16, 5)
    c.insert((1, 2, 3))
    c.insert((7, 8))
    assert c.order() == [3, 2, 1, 8, 7]
    assert c.match((1, 2, 4)) == 2
    assert c.order() == [3, 8, 7, 2, 1]
    assert c.peek((1, 2, 3)) == 3
    assert c.order() == [3, 8, 7, 2, 1]  # peek touches nothing
    assert c.lookups == 1  # and counts nothing


def test_resize_evicts_lru_and_regrows_empty():
    c = PrefixCache(16, 6)
    c.insert((1, 2, 3))
    c.insert((4, 5, 6))
    assert c.order() == [3, 2, 1, 6, 5, 4]
    assert c.resize(4) == 2
    assert c.order() == [1, 6, 5, 4]
    assert c.match((1, 2)) == 1  # 2 was evicted
    assert c.resize(-3) == 4 and len(c) == 0 and c.capacity == 0
    assert c.insert((1,)) == 0  # no room at all
    c.resize(8)
    assert c.insert((1, 2)) == 2 and c.evicted_blocks == 6


def test_chain_longer_than_capacity_keeps_its_head():
    c = PrefixCache(16, 3)
    assert c.insert((1, 2, 3, 4, 5)) == 3
    assert c.order() == [3, 2, 1]
    assert c.match((1, 2, 3, 4, 5)) == 3


def test_stats_and_validation():
    c = PrefixCache(512, 2)
    assert math.isnan(c.hit_rate)
    c.insert((1,))
    c.match((1, 2))
    assert c.stats() == {
        "block_tokens": 512,
        "capacity_blocks": 2,
        "cached_blocks": 1,
        "lookups": 1,
        "hits": 1,
        "lookup_blocks": 2,
        "hit_blocks": 1,
        "saved_tokens": 512,
        "inserted_blocks": 1,
        "evicted_blocks": 0,
    }
    c.clear()
    assert len(c) == 0 and c.hits == 1
    with pytest.raises(ValueError, match="block_tokens"):
        PrefixCache(0, 1)
    with pytest.raises(ValueError, match="capacity_blocks"):
        PrefixCache(16, -1)


def test_peek_then_record_counts_as_match_without_touching():
    c = PrefixCache(512, 10)
    c.insert((1, 2))
    c.insert((7,))
    assert c.order() == [2, 1, 7]
    k = c.peek((1, 2, 3))
    assert k == 2 and c.record(3, k, prompt_tokens=1200) == 1024
    assert c.order() == [2, 1, 7]  # record touches nothing
    assert (c.lookups, c.hits, c.lookup_blocks, c.hit_blocks, c.saved_tokens) == (1, 1, 3, 2, 1024)
    assert c.record(4, 0) == 0 and c.lookups == 2 and c.hits == 1
    assert c.insert([1, 2, 3]) == 1  # a list works too; 3 added, the chain moves up
    assert c.order() == [7, 3, 2, 1]


class _OrderedDictLRU:
    """The reference: one OrderedDict entry per block, a chain touched tail first."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.lru = OrderedDict()
        self.evicted = 0

    def leading(self, hashes):
        n = 0
        for h in hashes:
            if h not in self.lru:
                break
            n += 1
        return n

    def touch(self, hashes):
        for h in reversed(hashes):
            if h in self.lru:
                self.lru.move_to_end(h)
            else:
                self.lru[h] = None

    def evict_to(self, cap):
        while len(self.lru) > cap:
            self.lru.popitem(last=False)
            self.evicted += 1

    def insert(self, hashes):
        if self.capacity <= 0:
            return 0
        before = len(self.lru)
        self.touch(list(hashes)[: self.capacity])
        added = len(self.lru) - before
        self.evict_to(self.capacity)
        return added

    def match(self, hashes):
        n = self.leading(hashes)
        self.touch(list(hashes)[:n])
        return n

    def resize(self, cap):
        self.capacity = max(cap, 0)
        before = self.evicted
        self.evict_to(self.capacity)
        return self.evicted - before


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_same_cache_as_a_per_block_ordered_dict_on_prefix_trees(data):
    """Segments give the very cache of a per-block OrderedDict LRU (module doc): random prompts
    that extend random prefixes of earlier ones (ids name their prefix), random inserts,
    matches, peeks and resizes."""
    cap = data.draw(st.integers(0, 12))
    seg, ref = PrefixCache(16, cap), _OrderedDictLRU(cap)
    chains = [()]
    next_id = 0
    for _ in range(data.draw(st.integers(1, 40))):
        op = data.draw(st.sampled_from(["new", "insert", "match", "peek", "resize"]))
        if op == "resize":
            c = data.draw(st.integers(-1, 14))
            assert seg.resize(c) == ref.resize(c)
        else:
            base = data.draw(st.sampled_from(chains))
            cut = data.draw(st.integers(0, len(base)))
            grow = data.draw(st.integers(0 if op != "new" else 1, 5))
            chain = base[:cut] + tuple(range(next_id, next_id + grow))
            next_id += grow
            chains.append(chain)
            if op == "match":
                assert seg.match(chain) == ref.match(chain)
            elif op == "peek":
                assert seg.peek(chain) == ref.leading(chain)
            else:
                assert seg.insert(chain) == ref.insert(chain)
        assert seg.order() == list(ref.lru)
        assert len(seg) == len(ref.lru) and seg.evicted_blocks == ref.evicted
        assert all(h in seg for h in ref.lru)


def test_ids_that_do_not_name_their_prefix_are_refused():
    c = PrefixCache(16, 10)
    c.insert((1, 2, 3))
    with pytest.raises(BlockHashError, match="block id 2 at position 0 .* cached at position 1"):
        c.insert((2, 5))  # id 2 after no predecessor here, after 1 before
    c = PrefixCache(16, 10)
    with pytest.raises(BlockHashError, match="repeat an id"):
        c.insert((4, 4))
    c = PrefixCache(16, 10)
    c.insert((1, 2))
    with pytest.raises(BlockHashError, match="cached id after an uncached one"):
        c.insert((7, 2))  # 2 is cached, 7 (its predecessor here) is not
