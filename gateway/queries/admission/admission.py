"""Admission control: who may start a query now, and the queries that wait in the gateway until they
may. One algorithm over the queue's state (``state.QueueState``), whatever keeps it: this worker's
memory, or the SQL store every worker and node shares.

    submit ──(group lock: waiting queries first, then room for this one?)──▶ slot, sent at once
       └──no room──▶ QUEUED (a gateway id, QUEUED pages) ──a dispatch, under the group lock──▶ ADMITTED
                       │                                  the worker its client polls claims it: SENDING
                       │                                  ──the backend took it──▶ STARTED
                       └─ max_queued reached: FAILED at once; max_queue_wait passed, client gone: FAILED, CANCELED

A *slot* is one query running under admission control on one backend for one user. A backend has
room while its slots are fewer than its ``max_running`` (none set: always); a user while theirs are
fewer than their limit. A decision reads and writes the group's state under its lock, queries that
waited go first, and the fair queue picks among them. Only what needs it pays for it: a query none of
whose backends has ``max_running``, with no user limit configured anywhere, is sent at once without
touching the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.config import AdmissionConfig, GroupConfig
from gateway.queries.admission.state import Counts, GroupDecision, Head, QueueState, WaitingRow, overdue
from gateway.queries.held import GATEWAY_ID_MARK, HeldQuery, WaitingQueries
from gateway.queries.slots import Slot
from gateway.queries.states import (
    ADMITTED,
    CANCELED,
    ENDED,
    EXCEEDED_TIME_LIMIT,
    FAILED,
    IN_QUEUE,
    QUEUED,
    RANK,
    SENDING,
    STARTED,
    exceeded_message,
)
from gateway.queries.submission import Submission
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.store import now_ms
from gateway.store.backend import Backend

log = logging.getLogger("gateway.queries.admission")

NO_USER = ""
# How often a worker looks for a change while one of its clients' polls waits (and otherwise).
POLLING_TICK_SECONDS = 0.1
IDLE_TICK_SECONDS = 1.0
COALESCE_SECONDS = 0.005
# The most waiting queries of one party a decision reads (where a backend has no max_running, only a
# user limit holds queries back).
FREE_SLOTS_CAP = 100


@dataclass(slots=True)
class Admitted:
    """A new query may start now: on one of ``backends``, best first (``slot``: taken on the first)."""

    backends: list[Backend]
    slot: Slot | None


class QueueFull(Exception):
    """The group's queue holds ``max_queued`` queries already."""


class Admission:
    def __init__(
        self,
        settings: AdmissionConfig,
        groups: dict[str, GroupConfig],
        decider: RouteDecider,
        state: QueueState,
        waiting: WaitingQueries,
        users_limited: bool,
        seen_since: Callable[[float], list[str]] = lambda moment: [],
        on_event: Callable[[str, str], None] = lambda group, outcome: None,
        on_wait: Callable[[str, float], None] = lambda group, seconds: None,
    ) -> None:
        """``users_limited``: a user limit may apply to any query (``admission.user_max_running``, or
        routing rules that can set ``maxRunning``), so every query is counted; ``seen_since(t)``: the
        ids of the queries whose clients this worker saw since monotonic time ``t`` (their slots'
        leases go on); ``on_event(group, outcome)``: each outcome (queued, admitted, queue_full,
        expired, failed, canceled, abandoned); ``on_wait(group, seconds)``: how long an admitted query
        waited (the metrics', handed in so that this package imports none)."""
        self.settings = settings
        self.groups = groups
        self.decider = decider
        self.state = state
        self.waiting = waiting
        self.users_limited = users_limited
        self.seen_since = seen_since
        self.on_event = on_event
        self.on_wait = on_wait
        self.lease_ms = int(settings.slot_lease * 1000)
        self.backends: list[Backend] = []
        self.by_name: dict[str, Backend] = {}
        self.polling: set[HeldQuery] = set()  # whose clients' polls wait here now
        self.claimed: set[str] = set()  # admitted queries this worker claimed to send
        self.orphans: set[str] = set()  # read-only ones another node was sending when it stopped
        self.wake = asyncio.Event()
        self.dispatch_due = False
        self.snapshot: dict[tuple[str, str], int] = {}
        self.running_slots: Counts = {}
        self._counted_at = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        # Cluster management's word (``gateway.clusters``), set once it exists: how long a query may wait
        # for a cluster of its group to start, and why it still waits.
        self.start_wait: Callable[[str], float | None] = lambda group: None
        self.why_waiting: Callable[[str], str | None] = lambda group: None

    # -- the policy -----------------------------------------------------------------------------
    def counted(self, backend: Backend, user_limit: int | None) -> bool:
        return backend.max_running is not None or user_limit is not None or self.users_limited

    def counts_any(self, backends: Iterable[Backend], user_limit: int | None) -> bool:
        return any(self.counted(backend, user_limit) for backend in backends)

    def user_limit(self, rule_limit: int | None) -> int | None:
        """A rule's limit for the query's user, else admission.user_max_running."""
        return rule_limit if rule_limit is not None else self.settings.user_max_running

    def weight_of(self, user: str | None, rule_weight: float | None) -> float:
        if rule_weight is not None:
            return rule_weight
        return self.settings.user_weights.get(user or NO_USER, 1.0)

    def party_of(self, user: str | None, source: str | None) -> str:
        by = self.settings.fair_by
        if by == "user":
            return user or NO_USER
        if by == "source":
            return source or NO_USER
        return f"{user or NO_USER}/{source or NO_USER}"

    def _fifo(self, group: str) -> bool:
        settings = self.groups.get(group)
        return settings is not None and settings.queue_policy == "fifo"

    def refresh(self, backends: list[Backend]) -> None:
        """The registry's current backends (re-read by the tick and by every submission)."""
        if backends is not self.backends:
            self.backends = backends
            self.by_name = {backend.name: backend for backend in backends}

    # -- a new query ----------------------------------------------------------------------------
    async def admit(self, ranked: list[Backend], submission: Submission) -> Admitted | HeldQuery:
        """A new query of ``ranked``'s group: the backends it may start on now; or, when it must wait,
        the query waiting (QueueFull when its group's queue is full)."""
        user_limit = self.user_limit(submission.user_limit)
        if ranked and not self.counts_any(ranked, user_limit):
            return Admitted(ranked, None)
        # (No backend at all: the group's clusters are starting, and the query waits for one.)
        group, user = submission.group, submission.user or NO_USER
        now = now_ms()
        settings = self.groups.get(group)
        limit = None if settings is None else settings.max_queued
        held: HeldQuery | None = None
        # One decision: queries that waited go first, then this one starts if room is left, else waits.
        async with self.state.decide(group, self._fifo(group)) as decision:
            running, user_running = await self._dispatch(decision, group, ranked, now)
            user_has_room = user_limit is None or user_running.get(user, 0) < user_limit
            room = [backend for backend in ranked if _has_room(backend, running)] if user_has_room else []
            if room:
                slot_id = _slot_id()
                await decision.take(slot_id, room[0].name, user, now + self.lease_ms)
            elif limit is not None and await decision.count_waiting() >= limit:
                self.on_event(group, "queue_full")
                raise QueueFull(f'Too many queued queries for "{group}"')
            else:
                held = HeldQuery(submission)
                held.wait(self._max_wait(group, starting=not ranked))
                await decision.add(self._row(held, now, now))
        if held is None:
            return Admitted(room, Slot(self, slot_id, room[0].name, user))
        self.waiting.add(held)
        self.on_event(group, "queued")
        return held

    def _max_wait(self, group: str, starting: bool = False) -> float | None:
        """How long a query of ``group`` may wait (``starting``: for a cluster of it to start, too)."""
        settings = self.groups.get(group)
        limit = None if settings is None else settings.max_queue_wait
        start = self.start_wait(group) if starting else None
        if start is not None:
            limit = start if limit is None else min(limit, start)
        return limit

    async def claim_slot(self, backend: Backend, user: str | None) -> Slot | None:
        """A slot on ``backend`` without a check: the next backend of a query its first one refused."""
        if not self.counted(backend, None):
            return None
        slot_id = _slot_id()
        await self.state.take(slot_id, backend.name, user or NO_USER, now_ms() + self.lease_ms)
        return Slot(self, slot_id, backend.name, user or NO_USER)

    async def requeue(self, held: HeldQuery, ranked: list[Backend]) -> None:
        """``held`` (sent before, and failed or refused) goes back first in its group's line, and is
        ADMITTED at once if a backend of ``ranked`` has room."""
        group = held.group
        held.wait(self._max_wait(group))
        self.waiting.add(held)
        now = now_ms()
        async with self.state.decide(group, self._fifo(group)) as decision:
            first = await decision.first_place()
            # Before every other waiting query's place: it goes back first.
            await decision.add(self._row(held, now, min(now, first if first is not None else now) - 1))
            await self._dispatch(decision, group, ranked, now)
        self.on_event(group, "queued")

    def _row(self, held: HeldQuery, now: int, place: int) -> WaitingRow:
        """What the queue keeps of ``held``, which joins it now (``place``: its order in its party's line)."""
        assert held.secret is not None
        submission = held.submission
        max_wait = self._max_wait(submission.group)
        return WaitingRow(
            query_id=held.id,
            slug=held.secret,
            routing_group=submission.group,
            party=self.party_of(submission.user, submission.source),
            user_name=submission.user,
            weight=self.weight_of(submission.user, submission.weight),
            user_limit=self.user_limit(submission.user_limit),
            state=QUEUED,
            backend_name=None,
            token=held.token,
            enqueued_at=now,
            place=place,
            deadline_at=None if held.deadline is None else now + int((held.deadline - time.monotonic()) * 1000),
            max_queue_wait=max_wait,
            queued_ms=int(held.queued_seconds * 1000),
            last_seen_at=now,
            submission=submission,
            trace_parent=held.trace_parent,
            attempts="; ".join(held.attempts) if held.attempts else None,
        )

    # -- deciding, under a group's lock -----------------------------------------------------------
    async def _dispatch(
        self, decision: GroupDecision, group: str, ranked: list[Backend], now: int, housekeeping: bool = False
    ) -> tuple[Counts, Counts]:
        """Admits waiting queries while a backend of ``ranked`` has room (``housekeeping``: first ends
        the group's overdue ones); the slot counts after that."""
        if housekeeping:
            await self._end_overdue(decision, group, now)
        running, user_running = await decision.running(now)
        room = _free_slots(ranked, running)
        if not room:
            return running, user_running
        # At most that many of each party are read, however many wait (a SQL store reads no more).
        line = await decision.line(per_party=room)
        admitted: list[tuple[Head, Backend, str]] = []
        while line:
            free = [backend for backend in ranked if _has_room(backend, running)]
            if not free:
                break
            head = line.pick(lambda waiter, free=free: self._may_start(waiter, free, ranked, user_running))
            if head is None:
                break
            backend = _backends_for(head.excluded, free, ranked)[0]
            slot_id = _slot_id()
            await decision.admit(head, backend.name, slot_id, now + self.lease_ms, max(0, now - head.enqueued_at))
            admitted.append((head, backend, slot_id))
        await decision.close(line, changed=bool(admitted))
        for head, backend, slot_id in admitted:
            waited = max(0, now - head.enqueued_at) / 1000
            self.on_event(group, "admitted")
            if not head.attempts:
                self.on_wait(group, waited)
            self._admitted_here(head.query_id, backend, head.user_name or NO_USER, slot_id)
        return running, user_running

    def _may_start(self, head: Head, free: list[Backend], ranked: list[Backend], user_running: Counts) -> bool:
        limit = head.user_limit
        if limit is not None and user_running.get(head.user_name or NO_USER, 0) >= limit:
            return False
        return bool(_backends_for(head.excluded, free, ranked))

    async def _end_overdue(self, decision: GroupDecision, group: str, now: int) -> None:
        for row in await decision.overdue(now, now - int(self.settings.abandon_after * 1000)):
            ending = overdue(row, now, now - int(self.settings.abandon_after * 1000))
            if ending is None:
                continue
            state, name, message, outcome = ending
            if name == EXCEEDED_TIME_LIMIT:
                message = self.why_waiting(group) or message
            await decision.end(row, state, name, message)
            self.on_event(group, outcome)
            self._ended_here(row.query_id, state, (name, message or ""))

    async def _dispatch_group(self, group: str, now: int, housekeeping: bool) -> None:
        try:
            ranked, why = self.decider.decide(self.backends, group).ranked, None
        except NoBackendAvailable as error:
            ranked, why = [], str(error)
        async with self.state.decide(group, self._fifo(group)) as decision:
            await self._dispatch(decision, group, ranked, now, housekeeping)
            if why is not None:
                # New queries wait (until their max_queue_wait) for a backend to come back; one sent
                # again after its backend failed had found one, and fails now with the group's error,
                # as it would have without failover.
                for row in await decision.sent_before():
                    message = f"{why} (after failing on {row.attempts})"
                    await decision.end(row, FAILED, "NO_NODES_AVAILABLE", message)
                    self.on_event(group, "failed")
                    self._ended_here(row.query_id, FAILED, ("NO_NODES_AVAILABLE", message))

    def _admitted_here(self, query_id: str, backend: Backend, user: str, slot_id: str) -> None:
        """A waiting query this worker knows was admitted: its client's poll, if one waits, sends it."""
        held = self.waiting.get(query_id)
        if held is not None and held.state == QUEUED:
            held.admitted(backend, Slot(self, slot_id, backend.name, user))
            held.signal()

    def _ended_here(self, query_id: str, state: str, error: tuple[str, str]) -> None:
        held = self.waiting.get(query_id)
        if held is not None and held.state in IN_QUEUE:
            held.end(state, error)

    # -- slots ------------------------------------------------------------------------------------
    def slot_released(self, slot: Slot) -> None:
        self._later(self._release(slot.slot_id, None))

    async def slot_bound(self, slot: Slot, query_id: str) -> None:
        assert slot.slot_id is not None
        await self.state.bind(slot.slot_id, query_id)

    def query_ended(self, query_id: str, backend: Backend) -> None:
        """A query this worker did not send ended here (its client polled another worker or node
        before): its slot, wherever it was taken, is freed."""
        if self.counted(backend, None):
            self._later(self._release(None, query_id))

    async def _release(self, slot_id: str | None, query_id: str | None) -> None:
        if await self.state.release(slot_id=slot_id, query_id=query_id):
            self.dispatch_all()  # room: a waiting query may start (this worker decides which)

    def _later(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as error:
                log.error("admission control cannot update the queue: %s", error)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- waiting queries ----------------------------------------------------------------------------
    async def find(self, query_id: str) -> HeldQuery | None:
        """A waiting query by its gateway id: this worker's copy, else the queue's."""
        known = self.waiting.get(query_id)
        if known is not None or GATEWAY_ID_MARK not in query_id:
            return known
        row = await self.state.get(query_id)
        if row is None:
            return None
        held = self.waiting.known(_held_from_row(row))
        self._sync(held, row)
        return held

    async def reread(self, held: HeldQuery) -> None:
        """``held`` as it stands now (another worker or node may have moved it on)."""
        self._sync(held, await self.state.get(held.id))

    def _sync(self, held: HeldQuery, row: WaitingRow | None) -> None:
        """``held`` takes what another worker or node did to it (states only move forward)."""
        if row is None:
            if RANK[held.state] < RANK[STARTED]:
                held.state, held.error = CANCELED, None  # forgotten by the queue: long gone
            return
        held.token = max(held.token, row.token)
        held.trace_parent = held.trace_parent or row.trace_parent
        if RANK[row.state] <= RANK[held.state] or (row.state == SENDING and held.id in self.claimed):
            return
        orphan = row.state == SENDING and held.submission.failover
        if row.state == ADMITTED or orphan:
            # (A read-only query another node was sending when it stopped, its client now asking
            # here, is sent again: running twice does no harm, as for failover.)
            backend = self.by_name.get(row.backend_name or "")
            if backend is None:
                return  # not in this worker's registry yet: the next look finds it
            slot = Slot(self, row.slot_id, backend.name, row.user_name or NO_USER)
            held.admitted(backend, slot, row.queued_ms / 1000)
            if orphan:
                self.orphans.add(row.query_id)
                log.warning("query %s: the node sending it stopped before it answered; it is sent again", held.id)
        elif row.state == SENDING:
            # Another node claimed it to send it, and its client now asks here: that node stopped
            # before it answered. The query may have reached the backend: it is not sent again.
            held.state = FAILED
            held.error = (
                "GENERIC_INTERNAL_ERROR",
                f"trino-gateway: the gateway node sending query {held.id} to backend {row.backend_name} "
                "stopped before it answered; the query may have run there",
            )
        elif row.state in ENDED:
            held.state = row.state
            held.error = (row.error_name or "GENERIC_INTERNAL_ERROR", row.error_message or "")
        else:
            held.state = STARTED
        held.signal()

    async def wait_turn(self, held: HeldQuery, timeout: float) -> None:
        """Until ``held`` leaves the queue or ``timeout`` passes; then its time limit is checked."""
        self.polling.add(held)
        try:
            await held.wait_for_change(timeout)
        finally:
            self.polling.discard(held)
        if held.state == QUEUED and held.deadline is not None and time.monotonic() >= held.deadline:
            error = EXCEEDED_TIME_LIMIT, self.why_waiting(held.group) or exceeded_message(self._max_wait(held.group))
            if await self.state.update(
                held.id, only_from=(QUEUED,), state=FAILED, error_name=error[0], error_message=error[1]
            ):
                self.fail(held, *error)
            else:
                await self.reread(held)  # admitted meanwhile, by another worker

    async def claim(self, held: HeldQuery) -> bool:
        """Whether this worker sends the admitted ``held`` (with several workers or nodes, one does)."""
        orphan = held.id in self.orphans
        self.orphans.discard(held.id)
        if await self.state.update(held.id, only_from=(SENDING if orphan else ADMITTED,), state=SENDING):
            self.claimed.add(held.id)
            return True
        await self.reread(held)
        return False

    async def persist(self, held: HeldQuery) -> None:
        """``held``'s token and state, for every worker and node."""
        if not held.waits:
            return
        values: dict[str, Any] = {"token": held.token, "trace_parent": held.trace_parent, "last_seen_at": now_ms()}
        if held.state in ENDED:
            name, message = held.error or ("USER_CANCELED", "Query was canceled")
            values.update(state=held.state, error_name=name, error_message=message)
            if await self.state.update(held.id, only_from=IN_QUEUE, **values):
                self.dispatch_all()  # its slot, if it was admitted (here or elsewhere), is free
        elif held.state == STARTED:
            started = None if held.query is None else held.query.id
            await self.state.update(held.id, state=STARTED, started_query_id=started, **values)
        elif held.token <= 1:
            # Its first page: the trace it joined. A later page changes only the token, which the next
            # poll carries (proven by its slug) to whichever worker it reaches, and the time it was
            # seen, written with every other one's (``_renew``): no write per poll.
            await self.state.update(held.id, **values)

    def started(self, held: HeldQuery) -> None:
        """A backend took the admitted query: its slot now belongs to the book's query."""
        held.state, held.slot = STARTED, None
        self._later(self.persist(held))

    def fail(self, held: HeldQuery, error_name: str, message: str) -> None:
        if held.state in (QUEUED, ADMITTED):
            self.on_event(held.group, "expired" if error_name == EXCEEDED_TIME_LIMIT else "failed")
        held.end(FAILED, (error_name, message))

    def cancel(self, held: HeldQuery, outcome: str = "canceled") -> None:
        if held.state in (QUEUED, ADMITTED):
            self.on_event(held.group, outcome)
        held.end(CANCELED)

    # -- housekeeping ---------------------------------------------------------------------------------
    def dispatch_all(self) -> None:
        self.dispatch_due = True
        self.wake.set()

    def changed_elsewhere(self) -> None:
        """Another worker or node freed a slot or admitted a query (the store's notification)."""
        self.wake.set()

    async def run_forever(self, backends: Callable[[], Awaitable[list[Backend]]]) -> None:
        renew_every = min(5.0, self.settings.slot_lease / 4)
        renewed = time.monotonic()
        dispatched = 0.0
        while True:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLLING_TICK_SECONDS if self.polling else IDLE_TICK_SECONDS):
                    await self.wake.wait()
            # Dispatch where a slot was freed here, and every second everywhere (time limits, leases
            # run out, backends back); a notification from elsewhere only has this worker look at its
            # clients' queries, so that a release costs one decision, not one per worker.
            periodic = time.monotonic() - dispatched >= IDLE_TICK_SECONDS
            dispatch = self.dispatch_due or periodic
            if dispatch:
                await asyncio.sleep(COALESCE_SECONDS)  # a burst of releases becomes one decision
                self.dispatch_due, dispatched = False, time.monotonic()
            try:
                self.refresh(await backends())
                await self._tick(dispatch, housekeeping=periodic)
                if time.monotonic() - renewed >= renew_every:
                    await self._renew(renewed - renew_every)
                    renewed = time.monotonic()
            except Exception as error:
                log.error("admission housekeeping failed: %s", error)

    async def _tick(self, dispatch: bool, housekeeping: bool) -> None:
        now = now_ms()
        if dispatch:
            for group in await self.state.groups_waiting():
                await self._dispatch_group(group, now, housekeeping)
        if self.polling and self.state.shared:
            # (Polls that begin while this reads are looked at by the next tick.)
            polling = list(self.polling)
            rows = await self.state.rows(held.id for held in polling)
            for held in polling:
                row = rows.get(held.id)
                if row is not None and row.state != QUEUED:
                    self._sync(held, row)
        if time.monotonic() - self._counted_at >= IDLE_TICK_SECONDS:
            # The views' figures: once a second is enough, and a long queue's count is not free.
            self.snapshot, self.running_slots = await self.state.counts(now)
            self._counted_at = time.monotonic()

    async def _renew(self, since: float) -> None:
        """The slots of queries whose clients this worker saw lately run on; waiting queries polled here
        are not abandoned; forgotten: what ended long ago, and copies no poll needs any more."""
        now = now_ms()
        seen = [
            held.id
            for held in self.waiting
            if held.waits and held.state in (QUEUED, ADMITTED) and held.last_seen >= since
        ]
        await self.state.renew(self.seen_since(since), seen, now, now + self.lease_ms)
        keep_ms = int(max(self.settings.abandon_after, 60.0) * 2000)
        await self.state.purge(now - keep_ms, now)
        for held in self.waiting.forget_unneeded():
            self.claimed.discard(held.id)

    # -- views ------------------------------------------------------------------------------------------
    def _views(self) -> tuple[dict[tuple[str, str], int], Counts]:
        # As they stand where that costs nothing (memory), else as the tick read them last.
        return self.state.counts_now() or (self.snapshot, self.running_slots)

    def queued_by_group_and_user(self) -> dict[tuple[str, str], int]:
        return dict(self._views()[0])

    def queued(self, group: str) -> int:
        return sum(count for (name, _), count in self._views()[0].items() if name == group)

    async def queued_by_group_now(self) -> dict[str, int]:
        """Queries waiting per group as they stand now, over every worker and node (a read of the store
        where it is shared: ``queued`` gives the last tick's count, up to a second old, which a caller
        that weighs it against fresh counts of running queries must not use)."""
        counts = self.state.counts_now()
        waiting = counts[0] if counts is not None else (await self.state.counts(now_ms()))[0]
        by_group: dict[str, int] = {}
        for (group, _), count in waiting.items():
            by_group[group] = by_group.get(group, 0) + count
        return by_group

    @property
    def running(self) -> Counts:
        """Slots in use per backend (every worker's and node's where the store is shared)."""
        return self._views()[1]


def _slot_id() -> str:
    return "slot_" + secrets.token_hex(10)


def _held_from_row(row: WaitingRow) -> HeldQuery:
    """A waiting query another worker or node took (or this one before a restart), as the queue has it."""
    held = HeldQuery(row.submission)
    held._id, held.secret = row.query_id, row.slug
    now, mono = now_ms(), time.monotonic()
    held.state = QUEUED
    held.queued_since = mono - max(0, now - row.enqueued_at) / 1000
    held.deadline = None if row.deadline_at is None else mono + (row.deadline_at - now) / 1000
    held.last_seen = mono
    held.trace_parent = row.trace_parent
    held.token = row.token
    held.attempts = row.attempts.split("; ") if row.attempts else None
    return held


def _backends_for(excluded: frozenset[str], room: list[Backend], routable: list[Backend]) -> list[Backend]:
    """Of the backends with ``room``, those a query may go to: not one that failed it, unless every
    routable backend has."""
    if not excluded:
        return room
    fresh = [backend for backend in room if backend.name not in excluded]
    if fresh or any(backend.name not in excluded for backend in routable):
        return fresh
    return room


def _free_slots(ranked: list[Backend], running: Counts) -> int:
    """How many queries the backends of ``ranked`` may start now, all together (capped: a backend
    without a limit has room for any number)."""
    free = 0
    for backend in ranked:
        if backend.max_running is None:
            return FREE_SLOTS_CAP
        free += max(0, backend.max_running - running.get(backend.name, 0))
    return min(free, FREE_SLOTS_CAP)


def _has_room(backend: Backend, running: Counts) -> bool:
    return backend.max_running is None or running.get(backend.name, 0) < backend.max_running
