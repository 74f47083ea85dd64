"""A worker's result cache over its tiers: memory, the node's disk and the fleet's store; purges and
the purge marks other workers leave in the store; the results it keeps decoded for page reads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import orjson

from gateway.cache import results as results_module
from gateway.cache.memory import ENTRY_OVERHEAD
from gateway.cache.result import Result
from gateway.cache.results import ResultCache
from gateway.cache.stored import Stored
from gateway.config import CacheConfig
from gateway.store import Store, open_store
from gateway.store.memory import MemoryStore

T = TypeVar("T")
NOW = int(time.time() * 1000)
LATER = NOW + 3_600_000


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


def entry(n: int, size: int = 100, group: str = "adhoc", created_ms: int = NOW) -> Stored:
    return Stored(f"{n:064x}", group, created_ms, LATER, bytes([n % 256]) * size)


def cache(
    directory: Path,
    store: Store | None = None,
    memory_bytes: int = 1_000_000,
    disk_bytes: int = 1_000_000,
    shared_entry_bytes: int = 0,
    page_bytes: int = 1024,
) -> ResultCache:
    settings = CacheConfig(
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
        directory=str(directory),
        shared_entry_bytes=shared_entry_bytes,
        page_bytes=page_bytes,
    )
    return ResultCache(settings, store if store is not None else MemoryStore(), 1, b"s" * 32)


async def put(results: ResultCache, key: str, group: str, result: Result, ttl: float) -> Stored:
    """``ResultCache.put``, waited for: the entry it kept."""
    kept: asyncio.Future[Stored | None] = asyncio.get_running_loop().create_future()
    results.put(key, group, result, ttl, kept.set_result)
    stored = await kept
    assert stored is not None
    return stored


def result(rows: int) -> Result:
    return Result(b'[{"name":"n","type":"bigint"}]', [orjson.dumps([n]) for n in range(rows)])


# -- memory and disk --------------------------------------------------------------------------------
def test_a_put_result_is_got_from_memory_until_it_expires(tmp_path):
    async def scenario() -> None:
        results = cache(tmp_path)
        stored = await put(results, "a" * 64, "adhoc", result(3), ttl=60)
        assert await results.get("a" * 64, stored.created_ms) is stored
        assert Result.decode(stored.blob) == result(3)
        assert await results.get("a" * 64, stored.expires_ms) is None
        assert await results.get("b" * 64, stored.created_ms) is None
        await results.close()

    run(scenario)


def test_an_entry_evicted_from_memory_is_found_on_disk(tmp_path):
    async def scenario() -> None:
        results = cache(tmp_path, memory_bytes=2 * (100 + ENTRY_OVERHEAD))
        for n in (1, 2, 3):
            results.keep(entry(n))
        await results.close()  # (the spill to disk is written in the background)
        assert results.tiers()["memory"][0] == 2
        assert results.tiers()["disk"][0] == 1
        assert await results.get(entry(1).key, NOW) == entry(1)
        # ...and is in memory again: the least recently used went to disk in its place.
        assert results.memory.get(entry(1).key, NOW) == entry(1)
        await results.close()
        assert await results.get(entry(2).key, NOW) == entry(2)

    run(scenario)


def test_an_entry_too_large_for_memory_is_found_on_disk_at_once(tmp_path):
    async def scenario() -> None:
        results = cache(tmp_path, memory_bytes=50 + ENTRY_OVERHEAD)
        stored = await put(results, "a" * 64, "adhoc", result(100), ttl=60)
        assert results.memory.entries == 0
        # A waiter answered from this entry reads its first page at once: before the write is through.
        assert await results.get(stored.key, NOW) == stored
        await results.close()
        assert await results.get(stored.key, NOW) == stored

    run(scenario)


def test_an_entry_read_from_disk_that_memory_cannot_hold_is_not_written_again(tmp_path, monkeypatch):
    async def scenario() -> None:
        results = cache(tmp_path, memory_bytes=50 + ENTRY_OVERHEAD)
        results.keep(entry(1))
        await results.close()
        assert results.disk is not None
        writes: list[str] = []
        put = results.disk.put

        async def counted(stored: Stored) -> list[str]:
            writes.append(stored.key)
            return await put(stored)

        monkeypatch.setattr(results.disk, "put", counted)
        for _ in range(3):
            assert await results.get(entry(1).key, NOW) == entry(1)
        await results.close()
        assert writes == []

    run(scenario)


def test_an_expired_entry_evicted_from_memory_is_not_written_to_disk(tmp_path):
    async def scenario() -> None:
        results = cache(tmp_path, memory_bytes=100 + ENTRY_OVERHEAD)
        results.keep(Stored("a" * 64, "adhoc", NOW - 10_000, NOW - 1, bytes(100)))
        results.keep(entry(2))
        await results.close()
        assert results.tiers()["disk"][0] == 0

    run(scenario)


# -- purges -----------------------------------------------------------------------------------------
def test_purge_removes_one_groups_entries_from_memory_and_disk_and_leaves_the_others(tmp_path):
    async def scenario() -> None:
        results = cache(tmp_path, memory_bytes=2 * (100 + ENTRY_OVERHEAD))
        for n, group in ((1, "etl"), (2, "adhoc"), (3, "etl"), (4, "adhoc")):
            results.keep(entry(n, group=group))
        await results.close()  # 1 and 2 on disk, 3 and 4 in memory
        assert await results.purge("etl") == 2
        assert await results.get(entry(1).key, NOW) is None
        assert await results.get(entry(3).key, NOW) is None
        assert await results.get(entry(2).key, NOW) == entry(2, group="adhoc")
        assert await results.get(entry(4).key, NOW) == entry(4, group="adhoc")

    run(scenario)


def test_another_workers_purge_hides_older_entries_once_the_marks_are_read_again(tmp_path, monkeypatch):
    clock = [1_000.0]
    monkeypatch.setattr(results_module.time, "monotonic", lambda: clock[0])

    async def scenario() -> None:
        store = MemoryStore()
        results = cache(tmp_path, store)
        results.keep(entry(1, created_ms=NOW - 10))
        results.keep(entry(2, created_ms=NOW + 10))
        results.keep(entry(3, group="etl", created_ms=NOW - 10))
        assert await results.get(entry(1).key, NOW) is not None  # (the marks are read: none)

        await store.purge_cached_results("adhoc", NOW)  # another worker's purge
        assert await results.get(entry(1).key, NOW) is not None  # not read again yet
        clock[0] += results_module.MARKS_SECONDS
        assert await results.get(entry(1).key, NOW) is None
        assert await results.get(entry(2).key, NOW) == entry(2, created_ms=NOW + 10)
        assert await results.get(entry(3).key, NOW) is not None  # another group

        await store.purge_cached_results(None, NOW + 20)  # every group
        clock[0] += results_module.MARKS_SECONDS
        assert [await results.get(entry(n).key, NOW) for n in (1, 2, 3)] == [None, None, None]

    run(scenario)


def test_an_entry_purged_elsewhere_is_dropped_from_memory_and_a_newer_one_on_disk_answers(tmp_path):
    async def scenario() -> None:
        store = MemoryStore()
        results = cache(tmp_path, store)
        assert results.disk is not None
        older, newer = entry(1, created_ms=NOW - 10), entry(1, size=50, created_ms=NOW + 10)
        results.keep(older)
        await results.disk.put(newer)  # (another worker of the node spilled a newer one)
        await store.purge_cached_results("adhoc", NOW)
        assert await results.get(older.key, NOW) == newer
        assert results.memory.get(older.key, NOW) == newer

    run(scenario)


def test_purged_entries_are_let_go_from_memory_when_the_mark_is_read(tmp_path):
    async def scenario() -> None:
        store = MemoryStore()
        results = cache(tmp_path, store)
        for n in range(5):
            results.keep(entry(n, created_ms=NOW - 10))
        results.keep(entry(9, created_ms=NOW + 10))
        await store.purge_cached_results("adhoc", NOW)
        assert await results.get(entry(9).key, NOW) is not None
        assert results.memory.entries == 1

    run(scenario)


# -- decoded results --------------------------------------------------------------------------------
def test_a_decoded_result_is_kept_for_the_next_page_read(tmp_path):
    results = cache(tmp_path, page_bytes=1024)
    stored = Stored("a" * 64, "adhoc", NOW, LATER, result(500).encode())
    first = results.decoded(stored)
    assert first is not None
    assert first[0] == result(500) and first[1] == result(500).pages(1024)
    second = results.decoded(stored)
    assert second is not None and second[0] is first[0]
    assert results.decoded(Stored("b" * 64, "adhoc", NOW, LATER, b"not a blob")) is None


def test_a_new_entry_under_the_same_key_is_decoded_again_and_counted_once(tmp_path):
    results = cache(tmp_path)
    old = Stored("a" * 64, "adhoc", NOW, LATER, result(10).encode())
    new = Stored("a" * 64, "adhoc", NOW + 1, LATER, result(20).encode())
    assert results.decoded(old)[0] == result(10)
    assert results.decoded(new)[0] == result(20)
    assert results._decoded_bytes == len(new.blob)
    assert results.decoded(old)[0] == result(10)
    assert results._decoded_bytes == len(old.blob)


def test_the_decoded_results_stay_within_their_bound_least_recently_read_out_first(tmp_path, monkeypatch):
    blob = result(50).encode()
    monkeypatch.setattr(results_module, "DECODED_BYTES", 4 * len(blob) + 10)
    results = cache(tmp_path)
    stored = [Stored(f"{n:064x}", "adhoc", NOW, LATER, blob) for n in range(6)]
    for item in stored[:4]:
        results.decoded(item)
    results.decoded(stored[0])  # read again: 1 is now the least recently read
    results.decoded(stored[4])
    results.decoded(stored[5])
    assert list(results._decoded) == [stored[n].key for n in (3, 0, 4, 5)]
    assert results._decoded_bytes == 4 * len(blob) <= results_module.DECODED_BYTES
    # A result larger than a quarter of the bound is decoded but not kept.
    large = Stored("f" * 64, "adhoc", NOW, LATER, result(2_000).encode())
    assert results.decoded(large)[0] == result(2_000)
    assert large.key not in results._decoded


# -- the store's tier -------------------------------------------------------------------------------
def test_an_entry_put_by_one_worker_is_found_by_another_on_the_same_store(tmp_path):
    async def scenario() -> None:
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
        first_store, second_store = await open_store(url), await open_store(url)
        try:
            first = cache(tmp_path / "node-1", first_store, shared_entry_bytes=1_000)
            second = cache(tmp_path / "node-2", second_store, shared_entry_bytes=1_000)
            stored = await put(first, "a" * 64, "adhoc", result(10), ttl=60)
            await first.close()  # (the store is written in the background)
            assert await second.get(stored.key, NOW) == stored
            assert second.memory.get(stored.key, NOW) == stored  # kept nearer from then on
            # Larger than cache.shared_entry_bytes: kept on its node only.
            large = await put(first, "b" * 64, "adhoc", result(2_000), ttl=60)
            await first.close()
            assert len(large.blob) > 1_000
            assert await second.get(large.key, NOW) is None
            assert await first.get(large.key, NOW) == large
            # A purge on one worker is seen by the other.
            assert await second.purge("adhoc") >= 1
            fresh = cache(tmp_path / "node-3", first_store, shared_entry_bytes=1_000)
            assert await fresh.get(stored.key, NOW) is None
        finally:
            await first_store.close()
            await second_store.close()

    run(scenario)


def test_a_store_that_fails_is_logged_and_the_cache_goes_on_without_it(tmp_path, caplog):
    async def scenario() -> None:
        store = MemoryStore()
        store.failing = "the store is down"
        results = cache(tmp_path, store, shared_entry_bytes=100_000)
        assert await results.get("a" * 64, NOW) is None
        stored = await put(results, "a" * 64, "adhoc", result(3), ttl=60)
        await results.close()
        assert await results.get("a" * 64, NOW) == stored  # from memory
        await results.sweep()

    with caplog.at_level(logging.WARNING, logger="gateway.cache"):
        run(scenario)
    messages = [record.getMessage() for record in caplog.records]
    assert any("could not read the purge marks" in message for message in messages)
    assert any("could not read the store" in message for message in messages)
    assert any("could not write the store" in message for message in messages)
