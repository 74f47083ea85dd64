"""The result cache of one worker: its tiers, its flights and its counts.

    lookup: memory ──miss──▶ disk (the node's) ──miss──▶ store (the fleet's, on PostgreSQL)
    put:    memory ──evicts──▶ disk;  results up to cache.shared_entry_bytes also ──▶ store

A purge (``DELETE /gateway/cache``) deletes the store's entries and leaves a mark there; every worker
reads the marks at most once a second and treats what it holds from before a mark as gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path

from gateway.cache.disk import DiskTier
from gateway.cache.flights import Flights
from gateway.cache.memory import MemoryTier
from gateway.cache.result import Result
from gateway.cache.stored import Stored
from gateway.config import CacheConfig
from gateway.store import Store, StoreError
from gateway.store.records import ALL_GROUPS, CachedResult

log = logging.getLogger("gateway.cache")

# The words a query's history record and span carry.
HIT, WAITED, MISS, REFUSED = "hit", "waited", "miss", "refused"
NOT_ELIGIBLE = "not eligible"
MARKS_SECONDS = 1.0
# Results up to this size are encoded on the event loop (well under a millisecond); larger ones in a thread.
ENCODED_INLINE_BYTES = 256 * 1024
# Results decoded lately (a client reads a result page by page): bounded by their blobs' bytes.
DECODED_BYTES = 32 * 1024 * 1024


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"trino-gateway-cache-{os.getuid()}"


class ResultCache:
    def __init__(
        self,
        settings: CacheConfig,
        store: Store,
        workers: int,
        secret: bytes,
        on_counted: Callable[[str, str], None] = lambda group, word: None,
    ) -> None:
        self.settings = settings
        self.on_counted = on_counted
        self.store = store
        self.secret = secret
        self.memory = MemoryTier(settings.memory_bytes // max(1, workers))
        directory = Path(settings.directory) if settings.directory else default_directory()
        self.disk = DiskTier(directory, settings.disk_bytes) if settings.disk_bytes > 0 else None
        self.flights = Flights()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._marks: dict[str, int] = {}
        self._marks_read = 0.0
        self._decoded: OrderedDict[str, tuple[Result, list[tuple[int, int]], int, int]] = OrderedDict()
        self._decoded_bytes = 0
        self._background: set[asyncio.Task[None]] = set()
        # Entries evicted from memory whose disk write is under way: a read meanwhile (a waiter's first
        # page, when memory cannot hold the entry at all) finds them here.
        self._spilling: dict[str, Stored] = {}

    def counted(self, group: str, word: str) -> None:
        self.counts[(group, word)] += 1
        self.on_counted(group, word)

    # -- lookup -------------------------------------------------------------------------------------
    async def get(self, key: str, now_ms: int) -> Stored | None:
        """The entry of ``key``, from the nearest tier that has it (and not purged since it was made)."""
        await self._read_marks()
        # Each tier's entry is checked against the purge marks: one made before a purge answers nothing,
        # and does not hide a newer one further on.
        stored = self.memory.get(key, now_ms)
        if stored is not None and not self._purged(stored):
            return stored
        stored = self._spilling.get(key)
        if stored is not None and not stored.expired(now_ms) and not self._purged(stored):
            return stored  # (on its way to disk)
        if self.disk is not None:
            stored = await self.disk.get(key, now_ms)
            if stored is not None and not self._purged(stored):
                self._keep_in_memory(stored, on_disk=True)
                return stored
        if self.settings.shared_entry_bytes > 0:
            try:
                shared = await self.store.get_cached_result(key, now_ms)
            except StoreError as error:
                log.warning("the result cache could not read the store: %s", error)
                shared = None
            if shared is not None:
                stored = Stored(shared.key, shared.group, shared.created_ms, shared.expires_ms, shared.blob)
                if not self._purged(stored):
                    self._keep_in_memory(stored)
                    return stored
        return None

    def decoded(self, stored: Stored) -> tuple[Result, list[tuple[int, int]]] | None:
        """The result in ``stored`` and its pages, decoded once for the pages a client reads one by one."""
        kept = self._decoded.get(stored.key)
        if kept is not None and kept[2] == stored.created_ms:
            self._decoded.move_to_end(stored.key)
            return kept[0], kept[1]
        result = Result.decode(stored.blob)
        if result is None:
            return None
        pages = result.pages(self.settings.page_bytes)
        if kept is not None:  # an older entry of the key: its bytes are counted no more
            del self._decoded[stored.key]
            self._decoded_bytes -= kept[3]
        if len(stored.blob) <= DECODED_BYTES // 4:
            self._decoded[stored.key] = (result, pages, stored.created_ms, len(stored.blob))
            self._decoded_bytes += len(stored.blob)
            while self._decoded_bytes > DECODED_BYTES and self._decoded:
                _, (_, _, _, size) = self._decoded.popitem(last=False)
                self._decoded_bytes -= size
        return result, pages

    # -- put ----------------------------------------------------------------------------------------
    def put(self, key: str, group: str, result: Result, ttl: float, then: Callable[[Stored | None], None]) -> None:
        """A finished result into the cache (in memory; to the store in the background when it is small
        enough to share); ``then`` is told the entry once it is kept (None: it could not be). A large
        result is encoded (compressed) in a thread: the event loop serves every other query meanwhile."""
        if result.size <= ENCODED_INLINE_BYTES:
            then(self._made(key, group, result.encode(), ttl))
            return

        async def encode() -> None:
            stored = None
            try:
                stored = self._made(key, group, await asyncio.to_thread(result.encode), ttl)
            finally:
                then(stored)

        self._in_background(encode())

    def _made(self, key: str, group: str, blob: bytes, ttl: float) -> Stored:
        now = int(time.time() * 1000)
        stored = Stored(key, group, now, now + int(ttl * 1000), blob)
        self.keep(stored)
        return stored

    def keep(self, stored: Stored) -> None:
        """``stored`` into this worker's memory, and, when small enough, the fleet's store."""
        self._keep_in_memory(stored)
        if 0 < len(stored.blob) <= self.settings.shared_entry_bytes:
            self._in_background(self._share(stored))

    async def _share(self, stored: Stored) -> None:
        try:
            await self.store.put_cached_result(
                CachedResult(stored.key, stored.group, stored.created_ms, stored.expires_ms, stored.blob)
            )
        except StoreError as error:
            log.warning("the result cache could not write the store: %s", error)

    def _keep_in_memory(self, stored: Stored, on_disk: bool = False) -> None:
        """``stored`` into memory; what that evicts spills to disk (``on_disk``: ``stored`` was read from
        there, and is not written again when memory cannot hold it)."""
        now = int(time.time() * 1000)
        for evicted in self.memory.put(stored):
            if self.disk is None or evicted.expired(now) or (on_disk and evicted is stored):
                continue
            self._spilling[evicted.key] = evicted
            self._in_background(self._spill(evicted))

    async def _spill(self, stored: Stored) -> None:
        assert self.disk is not None
        try:
            await self.disk.put(stored)
        finally:
            if self._spilling.get(stored.key) is stored:
                del self._spilling[stored.key]

    # -- purge --------------------------------------------------------------------------------------
    async def purge(self, group: str | None) -> int:
        """Every entry (or one group's) gone, on every worker and node of the store; the count of
        entries deleted from the store and this worker's tiers."""
        deleted = await self.store.purge_cached_results(group, int(time.time() * 1000))
        deleted_here = self.memory.purge(group)
        if self.disk is not None:
            deleted_here += await self.disk.purge(group)
        self._decoded.clear()
        self._decoded_bytes = 0
        self._marks_read = 0.0  # read the new mark at the next lookup
        return max(deleted, deleted_here)

    async def _read_marks(self) -> None:
        now = time.monotonic()
        if now - self._marks_read < MARKS_SECONDS:
            return
        self._marks_read = now
        try:
            marks = await self.store.cache_purge_marks()
        except StoreError as error:
            log.warning("the result cache could not read the purge marks: %s", error)
            return
        if marks != self._marks:
            # Another worker's purge: what memory holds from before it is let go at once.
            for group, mark in marks.items():
                if mark != self._marks.get(group):
                    self.memory.purge(None if group == ALL_GROUPS else group, created_before=mark + 1)
            self._marks = marks

    def _purged(self, stored: Stored) -> bool:
        mark = max(self._marks.get(ALL_GROUPS, 0), self._marks.get(stored.group, 0))
        return stored.created_ms <= mark

    # -- housekeeping -------------------------------------------------------------------------------
    def _in_background(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def totals(self) -> Counter[str]:
        """This worker's counts of each word, over every group."""
        totals: Counter[str] = Counter()
        for (_, word), count in self.counts.items():
            totals[word] += count
        return totals

    def tiers(self) -> dict[str, tuple[int, int]]:
        """Entries and bytes of this worker's memory tier and the node's disk tier."""
        tiers = {"memory": (self.memory.entries, self.memory.bytes)}
        if self.disk is not None:
            tiers["disk"] = (self.disk.entries, self.disk.bytes)
        return tiers

    async def sweep_forever(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as error:  # housekeeping must outlive any one failure
                log.warning("the result cache's sweep failed: %s", error)

    async def sweep(self) -> None:
        """Expired entries out of the disk and the store (every minute, from the worker's housekeeping)."""
        now = int(time.time() * 1000)
        if self.disk is not None:
            await self.disk.sweep(now)
        with contextlib.suppress(StoreError):
            await self.store.expire_cached_results(now)

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(5):
                    await task
