"""Single flight: while an eligible query runs, identical ones wait for it instead of reaching a
cluster, and are answered from its result.

One flight per key in a worker: the first query of a key *leads* (it runs, captured); the next ones
*join* and wait, each at most ``cache.grace``. The flight lands once: with the stored entry, and
every waiter is answered from it; or with nothing (the query failed, was cancelled, or its result
could not be cached), and every waiter runs on its own. An error is never shared.

A flight one waiter gave up on (its grace passed) takes no more waiters: the next query of the key
leads a new one, rather than every later query waiting out the grace behind a slow one.
"""

from __future__ import annotations

import asyncio
import time

from gateway.cache.stored import Stored

# A flight nobody landed in this long is forgotten (its query went to another worker, say).
STALE_SECONDS = 600.0


class Flight:
    __slots__ = ("_landed", "entry", "key", "outwaited", "started", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key
        self.entry: Stored | None = None
        self.waiters = 0
        self.outwaited = False
        self.started = time.monotonic()
        self._landed = asyncio.Event()

    async def wait(self, grace: float) -> Stored | None:
        """The leader's entry, or None when it landed without one or ``grace`` passed first."""
        if self._landed.is_set():
            return self.entry
        if grace <= 0:
            return None  # (cache.grace 0: nobody waits, which is not giving up on a slow flight)
        self.waiters += 1
        try:
            async with asyncio.timeout(grace):
                await self._landed.wait()
        except TimeoutError:
            self.outwaited = True
            return None
        finally:
            self.waiters -= 1
        return self.entry


class Flights:
    def __init__(self) -> None:
        self._flying: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flying)

    def lead(self, key: str) -> tuple[Flight, bool]:
        """The flight of ``key``, and whether the caller leads it (no query of the key was running)."""
        self._forget_stale()
        flight = self._flying.get(key)
        if flight is not None and not flight.outwaited:
            return flight, False
        self._flying.pop(key, None)  # (its leader may still land it: its waiters are answered all the same)
        flight = self._flying[key] = Flight(key)
        return flight, True

    def _forget_stale(self) -> None:
        # Flights are kept in the order they started: the stale ones are at the front.
        limit = time.monotonic() - STALE_SECONDS
        while self._flying:
            first = next(iter(self._flying.values()))
            if first.started > limit:
                return
            del self._flying[first.key]

    def land(self, flight: Flight, entry: Stored | None) -> None:
        """The leader's query ended: its waiters are answered (``entry``) or run on their own (None)."""
        if self._flying.get(flight.key) is flight:
            del self._flying[flight.key]
        flight.entry = entry
        flight._landed.set()
