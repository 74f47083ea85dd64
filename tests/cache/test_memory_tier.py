"""The result cache's memory tier: bounded in bytes after every put, least recently used out first,
expired entries never returned, purges by group and by a purge mark's time."""

from __future__ import annotations

import random

from gateway.cache.memory import ENTRY_OVERHEAD, MemoryTier, size_of
from gateway.cache.stored import Stored


def entry(n: int, size: int = 100, group: str = "adhoc", created_ms: int = 1_000, expires_ms: int = 10_000) -> Stored:
    return Stored(f"{n:064x}", group, created_ms, expires_ms, bytes(size))


def test_a_put_entry_is_got_until_it_expires_and_then_dropped():
    tier = MemoryTier(10_000)
    assert tier.put(entry(1, expires_ms=5_000)) == []
    assert tier.get(entry(1).key, 4_999) == entry(1, expires_ms=5_000)
    assert tier.get(entry(2).key, 4_999) is None
    assert tier.get(entry(1).key, 5_000) is None  # expired from expires_ms on
    assert (tier.entries, tier.bytes) == (0, 0)


def test_the_least_recently_used_go_first_and_a_read_counts_as_a_use():
    tier = MemoryTier(3 * size_of(entry(0)))
    for n in (1, 2, 3):
        assert tier.put(entry(n)) == []
    assert tier.get(entry(1).key, 2_000) is not None  # 2 is now the least recently used
    assert tier.put(entry(4)) == [entry(2)]
    assert tier.put(entry(5, size=250)) == [entry(3), entry(1)]  # least recently used first
    assert {n for n in range(1, 6) if tier.get(entry(n).key, 2_000) is not None} == {4, 5}


def test_a_replaced_entry_is_not_evicted_and_its_bytes_are_counted_once():
    tier = MemoryTier(1_000)
    tier.put(entry(1, size=300))
    assert tier.put(entry(1, size=500, created_ms=2_000)) == []
    assert (tier.entries, tier.bytes) == (1, 500 + ENTRY_OVERHEAD)
    assert tier.get(entry(1).key, 3_000) == entry(1, size=500, created_ms=2_000)


def test_an_entry_larger_than_the_tier_is_not_kept_and_comes_back_as_evicted():
    tier = MemoryTier(1_000)
    tier.put(entry(1))
    big = entry(2, size=1_000 - ENTRY_OVERHEAD + 1)
    assert tier.put(big) == [big]
    assert tier.get(big.key, 2_000) is None
    assert tier.entries == 1
    # Replacing a kept entry with one too large: neither is kept.
    assert tier.put(entry(1, size=5_000)) == [entry(1, size=5_000)]
    assert (tier.entries, tier.bytes) == (0, 0)


def test_the_bytes_never_go_above_the_bound_after_any_put():
    chance = random.Random(25)
    tier = MemoryTier(5_000)
    kept: dict[str, Stored] = {}
    for _ in range(2_000):
        stored = entry(chance.randrange(60), size=chance.randrange(0, 2_000))
        evicted = tier.put(stored)
        kept[stored.key] = stored
        for gone in evicted:
            if kept.get(gone.key) is gone:
                del kept[gone.key]
        assert tier.bytes <= tier.max_bytes
        assert tier.bytes == sum(size_of(s) for s in kept.values())
        assert tier.entries == len(kept)


def test_purge_drops_everything_or_a_groups_entries_or_those_made_before_a_mark():
    tier = MemoryTier(100_000)
    tier.put(entry(1, group="adhoc", created_ms=1_000))
    tier.put(entry(2, group="etl", created_ms=1_000))
    tier.put(entry(3, group="etl", created_ms=3_000))
    tier.put(entry(4, group="adhoc", created_ms=3_000))
    assert tier.purge("etl", created_before=2_000) == 1
    assert tier.get(entry(2).key, 4_000) is None and tier.get(entry(3).key, 4_000) is not None
    assert tier.purge(None, created_before=2_000) == 1  # entry 1
    assert tier.purge("etl") == 1
    assert tier.purge("nobody") == 0
    assert tier.purge() == 1
    assert (tier.entries, tier.bytes) == (0, 0)
