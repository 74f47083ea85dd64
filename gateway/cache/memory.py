"""A worker's first tier of the result cache: entries in its own memory, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict

from gateway.cache.stored import Stored

ENTRY_OVERHEAD = 320
"""Bytes counted for each entry on top of its blob: the key (113 B as a str), the blob's object header,
the record and the dictionary's slot (measured with tracemalloc: 284 B in all, on CPython 3.11), so
that many small entries cannot hold far more memory than ``max_bytes`` says."""


def size_of(stored: Stored) -> int:
    """What an entry counts against ``MemoryTier.max_bytes``."""
    return len(stored.blob) + ENTRY_OVERHEAD


class MemoryTier:
    """At most ``max_bytes`` of entries (``size_of`` each); a put makes room by evicting the least
    recently used (read or put) entries, and returns them so that they can go to the next tier."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Stored] = OrderedDict()  # least recently used first
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """What the entries held count (``size_of``), never above ``max_bytes``."""
        return self._bytes

    @property
    def entries(self) -> int:
        return len(self._entries)

    def get(self, key: str, now_ms: int) -> Stored | None:
        """The entry under ``key``, now the most recently used; None when there is none or it has
        expired (it is dropped then)."""
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored.expired(now_ms):
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return stored

    def put(self, stored: Stored) -> list[Stored]:
        """Keep ``stored`` (replacing any entry under its key) as the most recently used; what was
        evicted to stay within ``max_bytes``, least recently used first. An entry larger than
        ``max_bytes`` by itself is not kept: it comes back as the one evicted."""
        if stored.key in self._entries:
            # The old entry is superseded, not evicted: nothing of it should spill to the next tier.
            self._remove(stored.key)
        if size_of(stored) > self.max_bytes:
            return [stored]
        self._entries[stored.key] = stored
        self._bytes += size_of(stored)
        evicted = []
        while self._bytes > self.max_bytes:
            key = next(iter(self._entries))
            evicted.append(self._remove(key))
        return evicted

    def purge(self, group: str | None = None, created_before: int | None = None) -> int:
        """Drop every entry (``group`` None) or the group's; only those created before
        ``created_before`` when it is given (a purge mark read from the store: entries made after
        that purge stay). How many were dropped."""
        doomed = [
            key
            for key, stored in self._entries.items()
            if group in (None, stored.group) and (created_before is None or stored.created_ms < created_before)
        ]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def _remove(self, key: str) -> Stored:
        stored = self._entries.pop(key)
        self._bytes -= size_of(stored)
        return stored
