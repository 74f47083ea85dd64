"""The estimate cache: bounded in entries and in bytes, each entry kept for a TTL, least recently used
out first.

A value is stored under its normalised statement's key and, beside it, under the key of each text that
led to it (``alias``), so that a statement sent again as it was costs a dictionary lookup rather than a
parse. Both kinds of key count against the bounds. Reads may come from a worker thread (rules over a
long statement run in one), so every operation holds a lock; it is held for a dictionary operation
only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

# What an entry costs besides its key's text: the entry, its key object and the dictionary's slot.
ENTRY_OVERHEAD = 200


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float
    size: int


class BoundedCache(Generic[V]):
    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl: float,
        size_of: Callable[[V], int] = lambda value: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.size_of = size_of
        self.clock = clock
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= self.clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: str, value: V, expires: float | None = None) -> None:
        """Keep ``value`` under ``key`` until ``expires`` (default: the TTL from now)."""
        size = len(key) + self.size_of(value) + ENTRY_OVERHEAD
        if self.max_entries == 0 or size > self.max_bytes:
            return  # it could never fit: it would only push out everything else
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(value, self.clock() + self.ttl if expires is None else expires, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def expiry(self, key: str) -> float | None:
        """When ``key``'s entry expires (an alias of it must not outlive it)."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry.expires

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
