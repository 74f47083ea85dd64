"""The estimate cache's bounds (entries, bytes, TTL, least recently used first) and the per-user
EXPLAIN rate, on a clock the tests move."""

from __future__ import annotations

from gateway.routing.estimates.cache import ENTRY_OVERHEAD, BoundedCache
from gateway.routing.estimates.rate import UserRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_keeps_entries_for_their_ttl():
    clock = Clock()
    cache: BoundedCache[str] = BoundedCache(10, 10**6, ttl=60, clock=clock)
    cache.put("a", "A")
    clock.now += 59
    assert cache.get("a") == "A"
    clock.now += 2
    assert cache.get("a") is None and len(cache) == 0 and cache.bytes == 0
    # An alias may be given its entry's own expiry (it must not outlive it).
    cache.put("b", "B")
    cache.put("b-alias", "B", expires=cache.expiry("b"))
    clock.now += 61
    assert cache.get("b-alias") is None


def test_the_cache_is_bounded_in_entries_least_recently_used_out_first():
    cache: BoundedCache[str] = BoundedCache(3, 10**6, ttl=60)
    for key in "abc":
        cache.put(key, key)
    assert cache.get("a") == "a"  # a is now the most recently used
    cache.put("d", "d")
    assert (cache.get("b"), len(cache)) == (None, 3)
    assert [cache.get(key) for key in "acd"] == ["a", "c", "d"]


def test_the_cache_is_bounded_in_bytes():
    cache: BoundedCache[str] = BoundedCache(1000, 3 * (ENTRY_OVERHEAD + 101), ttl=60, size_of=len)
    for n in range(10):
        cache.put(f"k{n}", "x" * 99)  # 2 + 99 characters, and the overhead
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert [cache.get(f"k{n}") is not None for n in (6, 7, 8, 9)] == [False, True, True, True]
    cache.put("huge", "x" * 10_000)  # could never fit: kept out, and nothing else pushed out
    assert cache.get("huge") is None and len(cache) == 3
    nothing: BoundedCache[str] = BoundedCache(0, 10**6, ttl=60)
    nothing.put("a", "a")
    assert nothing.get("a") is None


def test_each_user_has_a_burst_then_a_rate_of_explains():
    clock = Clock()
    rate = UserRate(per_second=0.5, burst=3, clock=clock)
    assert [rate.allow("heavy") for _ in range(5)] == [True, True, True, False, False]
    assert rate.allow("light")  # another user's bucket is full
    clock.now += 2.0  # one token back at 0.5 per second
    assert [rate.allow("heavy") for _ in range(2)] == [True, False]
    clock.now += 3600  # a quiet hour fills the bucket up to the burst, not beyond
    assert [rate.allow("heavy") for _ in range(4)] == [True, True, True, False]


def test_the_rate_remembers_a_bounded_number_of_users():
    rate = UserRate(per_second=0.001, burst=1, max_users=100)
    for n in range(1000):
        rate.allow(f"user-{n}")
    assert len(rate._buckets) == 100
    assert not rate.allow("user-999")  # a recent user's empty bucket is remembered
