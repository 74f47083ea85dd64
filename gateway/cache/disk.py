"""A node's second tier of the result cache: the entries its workers' memory tiers evicted, one file
each in a directory every worker of the node shares.

A file is a header (a magic number, when the entry was made and when it expires, its group) and the
blob. Files are written whole to a temporary name and renamed into place, so a reader sees an old
file or a new one, never half of one. Each worker keeps an index of the files (group, times, size),
built by reading their headers when it first uses the tier and again at each ``sweep``; a file that
another worker wrote since is found by ``get`` all the same, and counted from then on. A file that
cannot be read as an entry (cut short, or not one at all) is deleted and answers nothing: a cache
never fails a query.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import re
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.cache.stored import Stored

MAGIC = b"TGRC\x01"  # the format's name and version: a file of another format is not read as an entry
HEADER = struct.Struct(">5sqqHQ")  # magic, created_ms, expires_ms, the group's length, the blob's length
KEY = re.compile(r"[0-9a-f]{64}")
TEMP_SUFFIX = ".tmp"
STALE_TEMP_SECONDS = 3600.0
"""A temporary file this old was left by a writer that died mid-write: the next scan deletes it (a
younger one may be another worker's write under way)."""
SCAN_LIMIT = 100_000
"""The most files one scan reads the header of, so that a worker's start and each sweep take bounded
time whatever the directory holds; files beyond it are still found by ``get``."""
log = logging.getLogger("gateway.cache")


@dataclass(slots=True, frozen=True)
class _Known:
    """What the index holds of one file."""

    group: str
    created_ms: int
    expires_ms: int
    size: int  # the file's bytes, header included


class DiskTier:
    """At most ``max_bytes`` of files in ``directory`` (as far as this worker knows them: its index,
    rebuilt by each ``sweep``); the oldest made go first. The directory is made when the first entry
    is written (a gateway that never spills leaves no trace), readable by this user only (0o700), and
    each file is too (0o600): entries are query results."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._index: dict[str, _Known] = {}
        self._bytes = 0
        self._oldest: list[tuple[int, str]] = []  # (created_ms, key), a heap; stale pairs are skipped
        self._scanned = False
        self._scanning = asyncio.Lock()
        self._put_while_scanning: dict[str, _Known] | None = None

    @property
    def bytes(self) -> int:
        """The size of the files this worker knows of."""
        return self._bytes

    @property
    def entries(self) -> int:
        return len(self._index)

    async def get(self, key: str, now_ms: int) -> Stored | None:
        """The entry under ``key`` whichever worker wrote it; None when there is none, it has
        expired, or its file is damaged (expired and damaged files are deleted)."""
        if not KEY.fullmatch(key):
            return None
        await self._ready()
        path = self.directory / key
        try:
            data = await asyncio.to_thread(_read, path)
        except OSError as error:
            log.warning("cannot read the result cache's file %s: %s", path, error)
            return None
        stored = None if data is None else _decode(key, data)
        if stored is None or stored.expired(now_ms):
            if data is not None:
                if stored is None:
                    log.warning("the result cache's file %s is damaged: deleted", path)
                await asyncio.to_thread(_unlink, [path])
            self._forget(key)
            return None
        known = _Known(stored.group, stored.created_ms, stored.expires_ms, len(data))
        if self._index.get(key) != known:
            # Another worker wrote it (or wrote it again): counted from now on.
            await self._delete(self._admit(key, known))
        return stored

    async def put(self, stored: Stored) -> list[str]:
        """Write ``stored`` (replacing any file under its key); the keys of the files deleted to stay
        within ``max_bytes``, oldest made first. An entry larger than ``max_bytes`` by itself, or one
        that cannot be written (the disk is full), is not kept: its own key is among them."""
        if not KEY.fullmatch(stored.key):
            raise ValueError(f"a result cache key is 64 hexadecimal digits, not {stored.key!r}")
        await self._ready()
        data = _encode(stored)
        if len(data) > self.max_bytes:
            # What the key held before is superseded by this entry: it goes too.
            await self._delete([stored.key])
            return [stored.key]
        try:
            await asyncio.to_thread(_write, self.directory, stored.key, data)
        except OSError as error:
            log.warning("cannot write the result cache's file for %s: %s", stored.key, error)
            await self._delete([stored.key])
            return [stored.key]
        known = _Known(stored.group, stored.created_ms, stored.expires_ms, len(data))
        if self._put_while_scanning is not None:
            self._put_while_scanning[stored.key] = known
        victims = self._admit(stored.key, known)
        await self._delete(victims)
        return victims

    async def purge(self, group: str | None = None) -> int:
        """Delete every entry's file (``group`` None) or the group's, whichever worker wrote it; how
        many were deleted."""
        await self._ready()
        deleted = await asyncio.to_thread(_purge, self.directory, group)
        for key in deleted:
            self._forget(key)
        return len(deleted)

    async def sweep(self, now_ms: int) -> int:
        """Read the directory again (every worker's files count from now on), delete the expired
        files, then the oldest made while there are more than ``max_bytes``; how many went."""
        async with self._scanning:
            await self._rescan()
            self._scanned = True
        expired = [key for key, known in self._index.items() if now_ms >= known.expires_ms]
        for key in expired:
            self._forget(key)
        victims = expired + self._evict()
        await asyncio.to_thread(_unlink, [self.directory / key for key in victims])
        return len(victims)

    # -- the index ------------------------------------------------------------------------------
    async def _ready(self) -> None:
        if self._scanned:
            return
        async with self._scanning:
            if not self._scanned:
                await self._rescan()
                self._scanned = True

    async def _rescan(self) -> None:
        self._put_while_scanning = {}
        try:
            found = await asyncio.to_thread(_scan, self.directory)
            # A put that finished while the scan ran may have written after the scan passed its name.
            found.update(self._put_while_scanning)
        finally:
            self._put_while_scanning = None
        self._index = found
        self._bytes = sum(known.size for known in found.values())
        self._oldest = [(known.created_ms, key) for key, known in found.items()]
        heapq.heapify(self._oldest)

    def _admit(self, key: str, known: _Known) -> list[str]:
        """Index ``known``; the keys evicted to stay within ``max_bytes`` (their files still to delete)."""
        self._forget(key)
        self._index[key] = known
        self._bytes += known.size
        heapq.heappush(self._oldest, (known.created_ms, key))
        return self._evict()

    def _evict(self) -> list[str]:
        victims = []
        while self._bytes > self.max_bytes and self._oldest:
            created_ms, key = heapq.heappop(self._oldest)
            known = self._index.get(key)
            if known is not None and known.created_ms == created_ms:
                self._forget(key)
                victims.append(key)
        if len(self._oldest) > 2 * len(self._index) + 64:
            # Pairs of replaced and deleted entries pile up: the heap is rebuilt from the index.
            self._oldest = [(known.created_ms, key) for key, known in self._index.items()]
            heapq.heapify(self._oldest)
        return victims

    def _forget(self, key: str) -> None:
        known = self._index.pop(key, None)
        if known is not None:
            self._bytes -= known.size

    async def _delete(self, keys: list[str]) -> None:
        for key in keys:
            self._forget(key)
        if keys:
            await asyncio.to_thread(_unlink, [self.directory / key for key in keys])


# -- files (in a thread: each of these blocks) ------------------------------------------------------
def _encode(stored: Stored) -> bytes:
    group = stored.group.encode()
    header = HEADER.pack(MAGIC, stored.created_ms, stored.expires_ms, len(group), len(stored.blob))
    return header + group + stored.blob


def _decode(key: str, data: bytes) -> Stored | None:
    """The entry in a file's bytes; None when they are not one whole entry."""
    header = _header(data[: HEADER.size], len(data))
    if header is None:
        return None
    created_ms, expires_ms, group_length = header
    try:
        group = data[HEADER.size : HEADER.size + group_length].decode()
    except UnicodeDecodeError:
        return None
    return Stored(key, group, created_ms, expires_ms, data[HEADER.size + group_length :])


def _header(head: bytes, size: int) -> tuple[int, int, int] | None:
    """(created_ms, expires_ms, the group's length in bytes); None when ``head`` is not an entry's
    header or ``size`` is not the whole length of the entry it announces (a file cut short)."""
    if len(head) < HEADER.size:
        return None
    magic, created_ms, expires_ms, group_length, blob_length = HEADER.unpack(head[: HEADER.size])
    if magic != MAGIC or size != HEADER.size + group_length + blob_length:
        return None
    return created_ms, expires_ms, group_length


def _read_known(path: Path) -> _Known | None:
    """A file's header as the index holds it; None when it is not an entry's (raises OSError, and
    FileNotFoundError when another worker deleted it meanwhile)."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        header = _header(file.read(HEADER.size), size)
        if header is None:
            return None
        created_ms, expires_ms, group_length = header
        try:
            group = file.read(group_length).decode()
        except UnicodeDecodeError:
            return None
        return _Known(group, created_ms, expires_ms, size)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(directory: Path, key: str, data: bytes) -> None:
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode goes through the umask; this one does not
    # mkstemp makes the file readable by this user only.
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, directory / key)
    except BaseException:
        _unlink([Path(temp)])
        raise


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot delete the result cache's file %s: %s", path, error)


def _entry_files(directory: Path) -> list[os.DirEntry[str]]:
    """The directory's entry files, at most SCAN_LIMIT; stale temporary files are deleted on the way."""
    found: list[os.DirEntry[str]] = []
    stale_before = time.time() - STALE_TEMP_SECONDS
    if not directory.is_dir():
        return found  # (nothing was spilled yet)
    with os.scandir(directory) as names:
        for item in names:
            if KEY.fullmatch(item.name):
                found.append(item)
                if len(found) >= SCAN_LIMIT:
                    log.warning("the result cache's directory %s has more than %d files", directory, SCAN_LIMIT)
                    break
            elif item.name.endswith(TEMP_SUFFIX):
                try:
                    if item.stat().st_mtime < stale_before:
                        _unlink([Path(item.path)])
                except OSError:
                    continue
    return found


def _scan(directory: Path) -> dict[str, _Known]:
    """Every entry file's header by key; damaged files are deleted."""
    index: dict[str, _Known] = {}
    for item in _entry_files(directory):
        try:
            known = _read_known(Path(item.path))
        except OSError:
            continue  # deleted by another worker meanwhile, or unreadable: not indexed
        if known is None:
            log.warning("the result cache's file %s is damaged: deleted", item.path)
            _unlink([Path(item.path)])
        else:
            index[item.name] = known
    return index


def _purge(directory: Path, group: str | None) -> list[str]:
    """Delete every entry file, or the group's; the keys deleted."""
    deleted = []
    for item in _entry_files(directory):
        path = Path(item.path)
        try:
            if group is not None:
                known = _read_known(path)
                if known is None or known.group != group:
                    continue
            path.unlink()
        except OSError:
            continue
        deleted.append(item.name)
    return deleted
