"""Which waiting query starts next: users take turns in proportion to their weights (stride
scheduling), or, by choice, first come first served.

Each party (a user, a source, or both: ``admission.fair_by``) has its own first-in-first-out line and a
*pass*: the virtual time of its next turn. The next start goes to the eligible party with the lowest
pass, which then moves on by ``1 / weight``. A party that was idle joins at the current virtual time,
not at its old pass: waiting nothing earns no credit, so a burst cannot be saved up. One user's 200
queries therefore take every other turn with one other waiting user, not the next 200.

No asyncio here: admission control picks from it inside one decision, between the reads and writes
of the queue's state.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class Waiter(Protocol):
    party: str
    weight: float
    queued: int
    """The ticket of its place while it waits, else 0: a queue's entries whose ticket is no longer
    the waiter's are skipped (a waiter taken out and put back is not seen twice)."""


W = TypeVar("W", bound=Waiter)


class _Line(Generic[W]):
    __slots__ = ("pass_", "waiting")

    def __init__(self, pass_: float) -> None:
        self.pass_ = pass_
        self.waiting: deque[tuple[int, W]] = deque()

    def head(self) -> W | None:
        waiting = self.waiting
        while waiting and waiting[0][1].queued != waiting[0][0]:
            waiting.popleft()
        return waiting[0][1] if waiting else None


class FairQueue(Generic[W]):
    """The waiting queries of one routing group. Every operation but a fifo pick past ineligible
    waiters costs O(parties), whatever the number waiting: a removal only clears the waiter's flag,
    and lines drop such entries when they reach their head."""

    def __init__(self, fifo: bool = False) -> None:
        self.fifo = fifo
        self._lines: dict[str, _Line[W]] = {}
        self._arrivals: deque[tuple[int, W]] = deque()  # in arrival order (for fifo and listings)
        self._tickets = itertools.count(1)
        self._virtual_time = 0.0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[W]:
        return (waiter for ticket, waiter in list(self._arrivals) if waiter.queued == ticket)

    def push(self, waiter: W, front: bool = False) -> None:
        """``waiter`` joins its party's line (``front``: it had been picked, and goes back first)."""
        if waiter.queued:
            self._taken(waiter)
        line = self._lines.get(waiter.party)
        if line is None:
            line = self._lines[waiter.party] = _Line(self._virtual_time)
        elif line.head() is None:
            line.pass_ = max(line.pass_, self._virtual_time)
        ticket = waiter.queued = next(self._tickets)
        if front:
            line.waiting.appendleft((ticket, waiter))
            self._arrivals.appendleft((ticket, waiter))
        else:
            line.waiting.append((ticket, waiter))
            self._arrivals.append((ticket, waiter))
        self._size += 1

    def remove(self, waiter: W) -> bool:
        """Takes ``waiter`` out (cancelled, expired, abandoned); False if it was not waiting."""
        if not waiter.queued:
            return False
        self._taken(waiter)
        return True

    def pick(self, eligible: Callable[[W], bool]) -> W | None:
        """The waiter that starts next among those ``eligible`` says may (a party at its running
        limit is skipped, not blocked behind); it leaves the queue."""
        if self.fifo:
            for ticket, waiter in self._arrivals:
                if waiter.queued == ticket and eligible(waiter):
                    self._taken(waiter)
                    return waiter
            return None
        best: _Line[W] | None = None
        chosen: W | None = None
        for line in self._lines.values():
            if best is not None and line.pass_ >= best.pass_:
                continue
            head = line.head()
            if head is not None and eligible(head):
                best, chosen = line, head
        if best is None or chosen is None:
            return None
        self._virtual_time = max(self._virtual_time, best.pass_)
        best.pass_ += 1.0 / chosen.weight
        self._taken(chosen)
        return chosen

    def _taken(self, waiter: W) -> None:
        waiter.queued = 0
        self._size -= 1
        line = self._lines.get(waiter.party)
        if line is not None and line.head() is None and line.pass_ <= self._virtual_time:
            # An idle party's pass is reset when it comes back anyway: keep the table small.
            del self._lines[waiter.party]
        arrivals = self._arrivals
        while arrivals and arrivals[0][1].queued != arrivals[0][0]:
            arrivals.popleft()

    def turns(self) -> dict[str, Any]:
        """Where the turns stand (virtual time, each party's pass): what a queue rebuilt elsewhere
        needs to go on fairly (``restore``)."""
        passes = {
            party: line.pass_
            for party, line in self._lines.items()
            if line.head() is not None or line.pass_ > self._virtual_time
        }
        return {"time": self._virtual_time, "passes": passes}

    def restore(self, turns: dict[str, Any]) -> None:
        """Takes up the turns another queue left (before any push): a party keeps its pass."""
        self._virtual_time = float(turns.get("time", 0.0))
        for party, pass_ in dict(turns.get("passes", {})).items():
            self._lines[str(party)] = _Line(float(pass_))

    def parties(self) -> dict[str, int]:
        """How many wait per party."""
        counts: dict[str, int] = {}
        for waiter in self:
            counts[waiter.party] = counts.get(waiter.party, 0) + 1
        return counts
