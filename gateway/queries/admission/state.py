"""The queue's state: what admission control reads and writes, behind one interface with two
implementations, memory (``memory_state``: one worker, nothing kept) and SQL (``sql_state``: SQLite or
PostgreSQL, shared by every worker and node on the store). The algorithm (``admission``) is written
once against it; ``tests/gateway/test_queue_state.py`` holds both to the same promises.

Three things are kept:
- **waiting queries** (``WaitingRow``): a query that waits in the gateway, from its submission until a
  backend took it (or it failed, or was cancelled), with what any worker needs to answer its client's
  polls and to send it;
- **slots**: one per query running under admission control on a backend (its backend and user), with
  a lease that its client's polls renew: a slot counts until whichever worker sees its query end
  releases it, or until its lease runs out (a client gone, a node dead with the only knowledge of it);
- **turns**: where each routing group's fair queue stands (``FairQueue.turns``).

A decision about a group (who starts, who waits) runs inside ``QueueState.decide(group)``: everything
it reads and writes at once, under the group's lock, so two workers never give the same room away.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol

from gateway.queries.admission.fair_queue import FairQueue
from gateway.queries.states import ABANDONED, ADMITTED, CANCELED, EXCEEDED_TIME_LIMIT, FAILED, QUEUED
from gateway.queries.states import exceeded_message as _exceeded
from gateway.queries.submission import Submission


@dataclass(slots=True, eq=False)
class WaitingRow:
    """A query waiting in the gateway, as the queue keeps it."""

    query_id: str
    slug: str
    """The secret its pages' slugs are made with (``HeldQuery.secret``)."""
    routing_group: str
    party: str
    user_name: str | None
    weight: float
    user_limit: int | None
    state: str
    backend_name: str | None
    """Chosen when ADMITTED."""
    token: int
    enqueued_at: int
    """When it last joined the queue (epoch ms)."""
    place: int
    """Its order in its party's line: ``enqueued_at``, or before every other for a query sent again."""
    deadline_at: int | None
    max_queue_wait: float | None
    queued_ms: int
    """How long it waited, once admitted."""
    last_seen_at: int
    submission: Submission
    trace_parent: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    started_query_id: str | None = None
    attempts: str | None = None
    """The backends that failed it before ("; "-joined "name: why"), if it was sent before."""
    slot_id: str | None = None
    """The slot it holds once ADMITTED (freed when it ends before a backend took it)."""
    queued: int = 0
    """Its ticket in a fair queue while it is in one (never stored)."""

    @property
    def excluded(self) -> frozenset[str]:
        return excluded_by(self.attempts)


COLUMNS = [field.name for field in fields(WaitingRow) if field.name != "queued"]


@dataclass(slots=True, eq=False)
class QueuedHead:
    """What deciding which waiting query starts next needs of one (a SQL store reads no more)."""

    query_id: str
    party: str
    user_name: str | None
    weight: float
    user_limit: int | None
    enqueued_at: int
    attempts: str | None
    queued: int = 0

    @property
    def excluded(self) -> frozenset[str]:
        return excluded_by(self.attempts)


Head = WaitingRow | QueuedHead
Counts = dict[str, int]


def excluded_by(attempts: str | None) -> frozenset[str]:
    return frozenset(attempt.split(":", 1)[0] for attempt in attempts.split("; ")) if attempts else frozenset()


def overdue(row: WaitingRow, now_ms: int, unseen_before_ms: int) -> tuple[str, str, str | None, str] | None:
    """The one expiry rule: (state, error name, message, outcome) for a waiting query that must end
    now, else None. A query past its ``max_queue_wait`` fails (Trino's EXCEEDED_TIME_LIMIT); one whose
    client stopped polling, or admitted and never sent, is cancelled (abandoned)."""
    if row.state == QUEUED and row.deadline_at is not None and row.deadline_at <= now_ms:
        return FAILED, EXCEEDED_TIME_LIMIT, _exceeded(row.max_queue_wait), "expired"
    if row.state in (QUEUED, ADMITTED) and row.last_seen_at < unseen_before_ms:
        return CANCELED, ABANDONED, None, "abandoned"
    return None


class GroupDecision(Protocol):
    """One decision about a routing group, under its lock: reads see every earlier decision's writes."""

    async def overdue(self, now_ms: int, unseen_before_ms: int) -> list[WaitingRow]:
        """Its waiting queries that ``overdue`` ends now (possibly more: the rule decides)."""

    async def sent_before(self) -> list[WaitingRow]:
        """Its waiting queries that a backend failed before (``attempts``)."""

    async def end(self, row: WaitingRow, state: str, error_name: str | None, message: str | None) -> None:
        """``row`` ends (FAILED or CANCELED); an admitted one's slot is freed."""

    async def running(self, now_ms: int) -> tuple[Counts, Counts]:
        """Slots in use (leases not run out) per backend and per user, over every worker and node;
        ``admit`` and ``take`` in this decision count in them."""

    async def line(self, per_party: int) -> FairQueue[Any]:
        """The group's fair queue: at least its first ``per_party`` waiting queries of each party, in
        line, with the group's turns. A query ``pick``ed from it is admitted or stays waiting."""

    async def admit(self, head: Head, backend: str, slot_id: str, lease_until: int, queued_ms: int) -> None:
        """``head`` may start on ``backend``: ADMITTED, holding slot ``slot_id``."""

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        """A slot for a query that starts at once."""

    async def add(self, row: WaitingRow) -> None:
        """``row`` joins the queue (replacing an earlier row of the same query)."""

    async def count_waiting(self) -> int: ...

    async def first_place(self) -> int | None:
        """The smallest place in line of the group's waiting queries, if any wait."""

    async def close(self, line: FairQueue[Any] | None, changed: bool) -> None:
        """The decision is over: the turns of ``line`` are kept; ``changed``: every node hears of it."""


class QueueState(Protocol):
    shared: bool
    """Whether other processes change it too (a worker then re-reads the rows of the queries its
    clients wait on; in memory, nothing changes behind a worker's back)."""

    def decide(self, group: str, fifo: bool = False) -> AbstractAsyncContextManager[GroupDecision]:
        """A decision about ``group`` (``fifo``: its queue is first come first served, not fair)."""

    async def get(self, query_id: str) -> WaitingRow | None: ...

    async def rows(self, query_ids: Iterable[str]) -> dict[str, WaitingRow]: ...

    async def update(self, query_id: str, only_from: Iterable[str] | None = None, **values: Any) -> bool:
        """Changes the row (only while its state is one of ``only_from``, if given); whether it did. A
        row that ends (FAILED, CANCELED) frees the slot it holds."""

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        """A slot taken without a check (the next backend of a query its first one refused)."""

    async def bind(self, slot_id: str, query_id: str) -> None:
        """The backend took the slot's query under ``query_id``: whoever sees it end frees the slot."""

    async def release(self, slot_id: str | None = None, query_id: str | None = None) -> int: ...

    async def renew(self, query_ids: list[str], waiting_ids: list[str], now_ms: int, lease_until: int) -> None:
        """Queries whose clients polled lately: their slots' leases go on (by query or slot id), waiting
        ones are not abandoned."""

    async def groups_waiting(self) -> list[str]:
        """The groups with queries waiting, or admitted and not sent yet (which may be abandoned)."""

    async def counts(self, now_ms: int) -> tuple[dict[tuple[str, str], int], Counts]:
        """Waiting queries per (group, user) and slots in use per backend, over every worker and node."""

    async def purge(self, ended_before_ms: int, slots_before_ms: int) -> None:
        """Forgets waiting queries that ended (or moved to a backend) before ``ended_before_ms``, and
        slots whose lease ran out before ``slots_before_ms``."""

    def counts_now(self) -> tuple[dict[tuple[str, str], int], Counts] | None:
        """``counts`` as they stand, where that costs nothing (memory); None where it costs a read."""

    async def close(self) -> None: ...
