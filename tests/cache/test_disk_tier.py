"""The result cache's disk tier: one file per entry in a directory the workers of a node share,
bounded in bytes (oldest made out first), expired and damaged files deleted and never an error,
purges by group, and the directory and its files readable by their owner only."""

from __future__ import annotations

import asyncio
import os
import random
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.cache.disk import HEADER, STALE_TEMP_SECONDS, DiskTier
from gateway.cache.stored import Stored

T = TypeVar("T")


def entry(n: int, size: int = 100, group: str = "adhoc", created_ms: int = 1_000, expires_ms: int = 10_000) -> Stored:
    return Stored(f"{n:064x}", group, created_ms, expires_ms, bytes([n % 256]) * size)


def file_size(stored: Stored) -> int:
    return HEADER.size + len(stored.group.encode()) + len(stored.blob)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


def files(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def test_an_entry_is_written_to_a_file_of_its_own_and_read_back_until_it_expires(tmp_path):
    tier = DiskTier(tmp_path, 100_000)
    stored = entry(1, group="ünïcode group", expires_ms=5_000)

    async def scenario() -> None:
        assert await tier.put(stored) == []
        assert files(tmp_path) == {stored.key}
        assert await tier.get(stored.key, 4_999) == stored
        assert (tier.entries, tier.bytes) == (1, file_size(stored))
        assert await tier.get(entry(2).key, 1_000) is None
        assert await tier.get(stored.key, 5_000) is None  # expired from expires_ms on: and deleted
        assert files(tmp_path) == set()
        assert (tier.entries, tier.bytes) == (0, 0)

    run(scenario)


def test_the_directory_is_made_for_its_owner_only_and_so_is_every_file(tmp_path):
    directory = tmp_path / "cache" / "results"
    tier = DiskTier(directory, 100_000)
    run(lambda: tier.put(entry(1)))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / entry(1).key).stat().st_mode) == 0o600


def test_the_oldest_made_go_first_and_the_bytes_never_go_above_the_bound(tmp_path):
    tier = DiskTier(tmp_path, 3 * file_size(entry(0)))

    async def scenario() -> None:
        for n, created in ((1, 3_000), (2, 1_000), (3, 2_000)):
            assert await tier.put(entry(n, created_ms=created)) == []
        assert await tier.put(entry(4, created_ms=4_000)) == [entry(2).key]
        assert await tier.put(entry(5, created_ms=5_000, size=150)) == [entry(3).key, entry(1).key]
        assert files(tmp_path) == {entry(4).key, entry(5).key}

        chance = random.Random(25)
        for step in range(300):
            await tier.put(entry(chance.randrange(40), size=chance.randrange(0, 300), created_ms=10_000 + step))
            on_disk = sum(path.stat().st_size for path in tmp_path.iterdir())
            assert tier.bytes == on_disk <= tier.max_bytes
            assert tier.entries == len(files(tmp_path))

    run(scenario)


def test_an_entry_larger_than_the_tier_is_not_kept_and_takes_the_keys_older_entry_with_it(tmp_path):
    tier = DiskTier(tmp_path, 1_000)

    async def scenario() -> None:
        await tier.put(entry(1))
        big = entry(1, size=1_000)
        assert await tier.put(big) == [big.key]
        assert await tier.get(big.key, 2_000) is None
        assert files(tmp_path) == set() and tier.bytes == 0

    run(scenario)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # cut short in the blob
        lambda data: data[: HEADER.size - 3],  # cut short in the header
        lambda data: data + b"more",  # longer than its header says
        lambda data: b"not an entry at all",
        lambda data: b"",
        lambda data: b"XXXX" + data[4:],  # another format
    ],
    ids=["blob cut", "header cut", "too long", "garbage", "empty", "magic"],
)
def test_a_damaged_file_is_a_miss_and_is_deleted_whether_met_by_a_get_or_a_scan(tmp_path, damage):
    stored = entry(7)

    async def scenario() -> None:
        writer = DiskTier(tmp_path, 100_000)
        await writer.put(stored)
        path = tmp_path / stored.key
        path.write_bytes(damage(path.read_bytes()))
        assert await writer.get(stored.key, 2_000) is None
        assert files(tmp_path) == set() and writer.bytes == 0
        # A worker that starts later meets it in its first scan.
        await writer.put(stored)
        path.write_bytes(damage(path.read_bytes()))
        reader = DiskTier(tmp_path, 100_000)
        assert await reader.get(entry(8).key, 2_000) is None  # its first call scans
        assert files(tmp_path) == set() and reader.entries == 0

    run(scenario)


def test_two_workers_on_one_directory_read_and_purge_each_others_files(tmp_path):
    async def scenario() -> None:
        first, second = DiskTier(tmp_path, 100_000), DiskTier(tmp_path, 100_000)
        assert await second.get(entry(9).key, 1_000) is None  # second has scanned: an empty index
        await first.put(entry(1, group="etl"))
        await first.put(entry(2, group="adhoc"))
        await first.put(entry(3, group="etl"))
        assert second.entries == 0
        assert await second.get(entry(1).key, 2_000) == entry(1, group="etl")
        assert (second.entries, second.bytes) == (1, file_size(entry(1, group="etl")))
        # A group's purge deletes every worker's files of the group, indexed here or not.
        assert await second.purge("etl") == 2
        assert files(tmp_path) == {entry(2).key}
        # The writer learns of it when it meets it (or at its next sweep).
        assert await first.get(entry(3).key, 2_000) is None and await first.get(entry(1).key, 2_000) is None
        assert first.entries == 1
        assert await second.purge() == 1
        assert files(tmp_path) == set()

    run(scenario)


def test_a_sweep_counts_every_workers_files_deletes_the_expired_and_keeps_the_bound(tmp_path):
    async def scenario() -> None:
        first = DiskTier(tmp_path, 100_000)
        second = DiskTier(tmp_path, 3 * file_size(entry(0)))
        assert await second.get(entry(9).key, 1_000) is None  # scanned while empty
        for n in range(1, 6):
            await first.put(entry(n, created_ms=n * 1_000, expires_ms=3_500 if n == 1 else 10_000))
        assert second.entries == 0
        # Entry 1 expired; of the four left, 2 is the oldest made and one too many.
        assert await second.sweep(4_000) == 2
        assert files(tmp_path) == {entry(n).key for n in (3, 4, 5)}
        assert (second.entries, second.bytes) == (3, 3 * file_size(entry(0)))

    run(scenario)


def test_a_scan_deletes_temporary_files_left_by_a_dead_writer_and_leaves_a_live_one(tmp_path):
    stale, live = tmp_path / ".dead.tmp", tmp_path / ".writing.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (long_ago, long_ago))
    tier = DiskTier(tmp_path, 100_000)
    assert run(lambda: tier.sweep(1_000)) == 0
    assert files(tmp_path) == {live.name}


def test_a_key_that_is_not_64_hexadecimal_digits_is_a_miss_and_is_never_written(tmp_path):
    tier = DiskTier(tmp_path, 100_000)
    assert run(lambda: tier.get("../../etc/passwd", 1_000)) is None
    with pytest.raises(ValueError):
        run(lambda: tier.put(Stored("../escape", "adhoc", 1, 2, b"x")))
    assert files(tmp_path) == set()


def test_a_tier_that_never_spills_leaves_no_directory(tmp_path):
    directory = tmp_path / "cache"
    tier = DiskTier(directory, 100_000)

    async def lookups() -> None:
        assert await tier.get(entry(1).key, 1_000) is None
        assert await tier.sweep(1_000) == 0
        assert await tier.purge(None) == 0

    run(lookups)
    assert not directory.exists()
