"""The queue's state in one worker's memory (``store.url: memory://``, one worker): the same promises
as the SQL store's (``state.QueueState``), with each group's fair queue kept whole between decisions
instead of rebuilt from the store's rows, and counts kept as they change instead of counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from gateway.queries.admission.fair_queue import FairQueue
from gateway.queries.admission.state import Counts, Head, WaitingRow, overdue
from gateway.queries.states import ADMITTED, ENDED, IN_QUEUE, QUEUED

_REPLACED = "REPLACED"  # (the state an earlier row of a query that joins again leaves for)


class _Slot:
    __slots__ = ("backend", "lease_until", "query_id", "user")

    def __init__(self, backend: str, user: str, lease_until: int) -> None:
        self.backend, self.user, self.lease_until = backend, user, lease_until
        self.query_id: str | None = None


class MemoryQueueState:
    shared = False

    def __init__(self) -> None:
        self.by_id: dict[str, WaitingRow] = {}
        self.in_queue: dict[str, dict[str, WaitingRow]] = {}  # group -> QUEUED, ADMITTED or SENDING rows
        self.lines: dict[str, FairQueue[WaitingRow]] = {}
        self.queued: dict[tuple[str, str], int] = {}
        self.slots: dict[str, _Slot] = {}
        self.slot_of_query: dict[str, str] = {}
        self.running: Counts = {}
        self.user_running: Counts = {}
        self.earliest_lease = 0  # no slot's lease ends before this (a look for run-out ones is due after)
        self.locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def decide(self, group: str, fifo: bool = False) -> AsyncIterator[_MemoryDecision]:
        lock = self.locks.setdefault(group, asyncio.Lock())
        async with lock:
            line = self.lines.get(group)
            if line is None:
                line = self.lines[group] = FairQueue(fifo=fifo)
            yield _MemoryDecision(self, group, line)

    # -- rows ----------------------------------------------------------------------------------------
    def _insert(self, row: WaitingRow) -> None:
        old = self.by_id.get(row.query_id)
        if old is not None:
            self._leave(old, _REPLACED)
        self.by_id[row.query_id] = row
        if row.state in IN_QUEUE:
            self.in_queue.setdefault(row.routing_group, {})[row.query_id] = row
        if row.state == QUEUED:
            key = (row.routing_group, row.user_name or "")
            self.queued[key] = self.queued.get(key, 0) + 1
            line = self.lines.setdefault(row.routing_group, FairQueue())
            # A place before its arrival: it was sent before and goes back first (as the SQL store orders).
            line.push(row, front=row.place < row.enqueued_at)

    def _leave(self, row: WaitingRow, new_state: str) -> None:
        """``row`` moves from its state to ``new_state``: the counts and lines follow."""
        if row.state == QUEUED and new_state != QUEUED:
            key = (row.routing_group, row.user_name or "")
            self.queued[key] -= 1
            if not self.queued[key]:
                del self.queued[key]
            line = self.lines.get(row.routing_group)
            if line is not None:
                line.remove(row)
        if row.state in IN_QUEUE and new_state not in IN_QUEUE:
            group = self.in_queue.get(row.routing_group, {})
            group.pop(row.query_id, None)
            if not group:
                self.in_queue.pop(row.routing_group, None)

    async def get(self, query_id: str) -> WaitingRow | None:
        return self.by_id.get(query_id)

    async def rows(self, query_ids: Iterable[str]) -> dict[str, WaitingRow]:
        return {query_id: row for query_id in query_ids if (row := self.by_id.get(query_id)) is not None}

    async def update(self, query_id: str, only_from: Iterable[str] | None = None, **values: Any) -> bool:
        row = self.by_id.get(query_id)
        if row is None or (only_from is not None and row.state not in tuple(only_from)):
            return False
        state = values.get("state", row.state)
        if state != row.state:
            self._leave(row, state)
            if state in ENDED and row.slot_id is not None:
                self._release(row.slot_id)
        for name, value in values.items():
            setattr(row, name, value)
        return True

    # -- slots ---------------------------------------------------------------------------------------
    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        self._take(slot_id, backend, user, lease_until)

    def _take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        self.slots[slot_id] = _Slot(backend, user, lease_until)
        self.running[backend] = self.running.get(backend, 0) + 1
        self.user_running[user] = self.user_running.get(user, 0) + 1
        self.earliest_lease = min(self.earliest_lease, lease_until) if self.earliest_lease else lease_until

    async def bind(self, slot_id: str, query_id: str) -> None:
        slot = self.slots.get(slot_id)
        if slot is not None:
            slot.query_id = query_id
            self.slot_of_query[query_id] = slot_id

    async def release(self, slot_id: str | None = None, query_id: str | None = None) -> int:
        if slot_id is None and query_id is not None:
            slot_id = self.slot_of_query.get(query_id)
        return self._release(slot_id) if slot_id is not None else 0

    def _release(self, slot_id: str) -> int:
        slot = self.slots.pop(slot_id, None)
        if slot is None:
            return 0
        if slot.query_id is not None:
            self.slot_of_query.pop(slot.query_id, None)
        for counts, key in ((self.running, slot.backend), (self.user_running, slot.user)):
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
        return 1

    def _run_out(self, now_ms: int) -> None:
        """Slots whose lease ran out stop counting (looked for only once one may have)."""
        if not self.slots or now_ms <= self.earliest_lease:
            return
        for slot_id in [slot_id for slot_id, slot in self.slots.items() if slot.lease_until < now_ms]:
            self._release(slot_id)
        self.earliest_lease = min((slot.lease_until for slot in self.slots.values()), default=0)

    async def renew(self, query_ids: list[str], waiting_ids: list[str], now_ms: int, lease_until: int) -> None:
        for query_id in query_ids:
            slot = self.slots.get(self.slot_of_query.get(query_id, query_id))
            if slot is not None:
                slot.lease_until = max(slot.lease_until, lease_until)
        for query_id in waiting_ids:
            row = self.by_id.get(query_id)
            if row is not None:
                row.last_seen_at = now_ms

    # -- views and housekeeping ------------------------------------------------------------------------
    async def groups_waiting(self) -> list[str]:
        return list(self.in_queue)

    async def counts(self, now_ms: int) -> tuple[dict[tuple[str, str], int], Counts]:
        self._run_out(now_ms)
        return dict(self.queued), dict(self.running)

    def counts_now(self) -> tuple[dict[tuple[str, str], int], Counts] | None:
        return dict(self.queued), dict(self.running)

    async def purge(self, ended_before_ms: int, slots_before_ms: int) -> None:
        for query_id in [
            query_id
            for query_id, row in self.by_id.items()
            if row.state not in IN_QUEUE and row.last_seen_at < ended_before_ms
        ]:
            del self.by_id[query_id]
        self._run_out(slots_before_ms)

    async def close(self) -> None:
        pass


class _MemoryDecision:
    def __init__(self, state: MemoryQueueState, group: str, line: FairQueue[WaitingRow]) -> None:
        self.state = state
        self.group = group
        self._line = line

    def _rows(self) -> list[WaitingRow]:
        return list(self.state.in_queue.get(self.group, {}).values())

    async def overdue(self, now_ms: int, unseen_before_ms: int) -> list[WaitingRow]:
        return [row for row in self._rows() if overdue(row, now_ms, unseen_before_ms) is not None]

    async def sent_before(self) -> list[WaitingRow]:
        return [row for row in self._rows() if row.state == QUEUED and row.attempts]

    async def end(self, row: WaitingRow, state: str, error_name: str | None, message: str | None) -> None:
        await self.state.update(row.query_id, state=state, error_name=error_name, error_message=message)

    async def running(self, now_ms: int) -> tuple[Counts, Counts]:
        self.state._run_out(now_ms)
        return self.state.running, self.state.user_running

    async def line(self, per_party: int) -> FairQueue[Any]:
        return self._line  # whole: picking from it costs a look per party, however many wait

    async def admit(self, head: Head, backend: str, slot_id: str, lease_until: int, queued_ms: int) -> None:
        row = self.state.by_id[head.query_id]
        await self.state.update(
            row.query_id, state=ADMITTED, backend_name=backend, queued_ms=queued_ms, slot_id=slot_id
        )
        self.state._take(slot_id, backend, row.user_name or "", lease_until)

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        self.state._take(slot_id, backend, user, lease_until)

    async def add(self, row: WaitingRow) -> None:
        self.state._insert(row)

    async def count_waiting(self) -> int:
        return len(self._line)

    async def first_place(self) -> int | None:
        return min((row.place for row in self._rows() if row.state == QUEUED), default=None)

    async def close(self, line: FairQueue[Any] | None, changed: bool) -> None:
        pass  # the line is kept as it is, turns and all
