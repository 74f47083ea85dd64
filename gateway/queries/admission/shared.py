"""Admission control for a fleet on PostgreSQL: the queue and the running counts live in the store,
so every node (and worker) admits against the same counts, any node answers a waiting query's poll,
and a node's restart or death loses no waiting query.

    submission ──(group lock: waiting queries first, then room for this one?)──▶ slot row, sent at once
         └──no room──▶ waiting row (QUEUED) ──a node's dispatch, under the group lock──▶ ADMITTED + slot row
                                                 the node the client polls next claims it: SENDING
                                                 ──the backend took it──▶ STARTED (slot bound to its id)

What each decision reads (waiting rows, slot counts, the fair queue's turns) is read and written in
one transaction holding the group's advisory lock: two nodes never give away the same room. The fair
queue itself is the one-worker ``FairQueue``, rebuilt from the rows with its turns kept in the store.
A slot row is deleted by whichever node sees its query end (by the backend's query id), and it runs
out (``admission.slot_lease``) if no node sees the query's client poll for that long: a client that
vanished, or a node that died with the only knowledge of a slot, gives its capacity back.

Only the groups that need it pay for it: a query none of whose backends has ``max_running``, with no
user limit configured anywhere, is sent as without admission control (no store round trip).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import AdmissionConfig, GroupConfig
from gateway.queries.admission.controller import (
    ADMITTED,
    CANCELED,
    FAILED,
    NO_USER,
    QUEUED,
    STARTED,
    Admission,
    QueueFull,
    Slot,
    WaitingQuery,
    _duration,
)
from gateway.queries.admission.fair_queue import FairQueue
from gateway.queries.submission import Submission
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.store.backend import Backend
from gateway.store.records import now_ms
from gateway.store.shared_queue import SENDING, GroupTransaction, QueuedHead, SharedQueueStore, WaitingRow

log = logging.getLogger("gateway.queries.admission")

# How often a node looks for a change while one of its clients' polls waits (and otherwise).
POLLING_TICK_SECONDS = 0.1
IDLE_TICK_SECONDS = 1.0
COALESCE_SECONDS = 0.005
# The order of a waiting query's states: a row only ever moves forward.
_RANK = {QUEUED: 0, ADMITTED: 1, SENDING: 2, STARTED: 3, FAILED: 3, CANCELED: 3}
# The most waiting queries of one party a decision reads (where a backend has no max_running, only a
# user limit holds queries back).
FREE_SLOTS_CAP = 100
# What a gateway id looks like (gateway.queries.admission.controller.waiting_query_id): only such ids are
# looked up in the queue's table.
_GATEWAY_ID_MARK = "_gw"


class SharedSlot(Slot):
    """A slot whose row is in the store (its id: the waiting query's gateway id, or a random one)."""

    __slots__ = ("slot_id",)

    def __init__(self, owner: SharedAdmission, backend: str, user: str, slot_id: str) -> None:
        super().__init__(owner, backend, user)
        self.slot_id = slot_id

    async def bind(self, query_id: str) -> None:
        owner = self.owner
        assert isinstance(owner, SharedAdmission)
        await owner.store.bind(self.slot_id, query_id)


@dataclass(slots=True, eq=False)
class _Queued:
    """A waiting row in a rebuilt fair queue."""

    row: QueuedHead
    party: str
    weight: float
    queued: int = 0


class SharedAdmission(Admission):
    """Admission control whose queue and counts every node of a fleet shares through the store."""

    requeues = False  # type: ignore[assignment]  # a failed-over query goes to its next backend at once

    def __init__(
        self,
        settings: AdmissionConfig,
        groups: dict[str, GroupConfig],
        decider: RouteDecider,
        store: SharedQueueStore,
        users_limited: bool,
        seen_since: Callable[[float], list[str]],
        on_event: Callable[[str, str], None] = lambda group, outcome: None,
        on_wait: Callable[[str, float], None] = lambda group, seconds: None,
    ) -> None:
        """``users_limited``: a user limit may apply to any query (``admission.user_max_running``, or
        routing rules that can set ``maxRunning``), so every query is counted; ``seen_since(t)``: the
        ids of the queries whose clients this worker saw since monotonic time ``t`` (their slots'
        leases go on)."""
        super().__init__(settings, groups, decider, on_event, on_wait, enabled=True)
        self.store = store
        self.users_limited = users_limited
        self.seen_since = seen_since
        self.lease_ms = int(settings.slot_lease * 1000)
        self.polling: set[WaitingQuery] = set()
        self.wake = asyncio.Event()
        self.dispatch_due = False
        self.snapshot: dict[tuple[str, str], int] = {}
        self._counted_at = 0.0
        self.claimed: set[str] = set()  # waiting queries this worker claimed to send
        self.orphans: set[str] = set()  # read-only ones another node was sending when it stopped
        self._background: set[asyncio.Task[Any]] = set()

    # -- capacity ----------------------------------------------------------------------------
    def counted(self, backend: Backend, user_limit: int | None) -> bool:
        return backend.max_running is not None or user_limit is not None or self.users_limited

    async def admit(
        self, ranked: list[Backend], submission: Submission, user_limit: int | None, rule_weight: float | None
    ) -> tuple[list[Backend], Slot | None, WaitingQuery | None]:
        if not any(self.counted(backend, user_limit) for backend in ranked):
            return ranked, None, None
        group, user = submission.group, submission.user or NO_USER
        now = now_ms()
        slot_id = "slot_" + secrets.token_hex(10)
        waiting, row = self._new_waiting(submission, user_limit, rule_weight, now)
        settings = self.groups.get(group)
        limit = None if settings is None else settings.max_queued
        # One transaction under the group's lock: queries that waited go first (as on one worker),
        # then this one starts if room is left, else it joins them.
        async with self.store.locked(group) as tx:
            running, user_running = await self._dispatch(tx, group, ranked, now)
            user_has_room = user_limit is None or user_running.get(user, 0) < user_limit
            room = [backend for backend in ranked if _has_room(backend, running)] if user_has_room else []
            if room:
                await tx.take(slot_id, room[0].name, user, now + self.lease_ms)
            elif limit is not None and await tx.count_waiting() >= limit:
                self.on_event(group, "queue_full")
                raise QueueFull(f'Too many queued queries for "{group}"')
            else:
                await tx.add(row)
        if room:
            return room, SharedSlot(self, room[0].name, user, slot_id), None
        self.queries[waiting.id] = waiting
        self.on_event(group, "queued")
        return [], None, waiting

    async def claim_slot(self, backend: Backend, user: str | None) -> Slot:
        if not self.counted(backend, None):
            return Slot(self, backend.name, user or NO_USER)
        slot_id = "slot_" + secrets.token_hex(10)
        await self.store.take(slot_id, backend.name, user or NO_USER, now_ms() + self.lease_ms)
        return SharedSlot(self, backend.name, user or NO_USER, slot_id)

    def released(self, slot: Slot) -> None:
        if isinstance(slot, SharedSlot):
            self._later(self._release(slot.slot_id, None))

    def query_ended(self, query_id: str, backend: Backend) -> None:
        """A query this worker did not send ended here (its client polled another node before): its
        slot, wherever it was taken, is freed."""
        if self.counted(backend, None):
            self._later(self._release(None, query_id))

    async def _release(self, slot_id: str | None, query_id: str | None) -> None:
        if await self.store.release(slot_id=slot_id, query_id=query_id):
            self.dispatch_all()  # room: a waiting query may start (this node decides which)

    def _later(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as error:
                log.error("admission control cannot update the store: %s", error)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- deciding, under a group's lock --------------------------------------------------------
    async def _dispatch(
        self, tx: GroupTransaction, group: str, ranked: list[Backend], now: int, housekeeping: bool = False
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Admits waiting queries while a backend of ``ranked`` has room (``housekeeping``: first ends
        the group's overdue ones); the slot counts after that."""
        ended: list[str] = []
        if housekeeping:
            ended = await tx.end_overdue(now, now - int(self.settings.abandon_after * 1000), _expired_message)
            for _, outcome in ended:
                self.on_event(group, outcome)
        running, user_running = await tx.running(now)
        room = _free_slots(ranked, running)
        # With no room (the usual state of a long queue) nothing is read; else at most that many of
        # each party, however many wait (10,000 waiting cost a decision no more than 10).
        rows = await tx.waiting(per_party=room) if room else []
        if not rows:
            if ended:
                self.wake.set()
            return running, user_running
        settings = self.groups.get(group)
        queue: FairQueue[_Queued] = FairQueue(fifo=settings is not None and settings.queue_policy == "fifo")
        turns = await tx.turns()
        if turns:
            queue.restore(orjson.loads(turns))
        for row in rows:
            queue.push(_Queued(row, row.party, row.weight))

        def may_start(waiter: _Queued) -> bool:
            limit = waiter.row.user_limit
            return limit is None or user_running.get(waiter.row.user_name or NO_USER, 0) < limit

        admitted = 0
        while queue:
            room = [backend for backend in ranked if _has_room(backend, running)]
            if not room:
                break
            picked = queue.pick(may_start)
            if picked is None:
                break
            row, backend, user = picked.row, room[0], picked.row.user_name or NO_USER
            running[backend.name] = running.get(backend.name, 0) + 1
            user_running[user] = user_running.get(user, 0) + 1
            waited_ms = max(0, now - row.enqueued_at)
            await tx.admit(row.query_id, backend.name, user, now + self.lease_ms, waited_ms)
            self.on_event(group, "admitted")
            self.on_wait(group, waited_ms / 1000)
            admitted += 1
        await tx.save_turns(orjson.dumps(queue.turns()).decode())
        if admitted:
            await tx.announce()
        if admitted or ended:
            self.wake.set()
        return running, user_running

    async def _dispatch_group(self, group: str, now: int, housekeeping: bool) -> None:
        try:
            ranked = self.decider.decide(self.backends, group).ranked
        except NoBackendAvailable:
            ranked = []  # they wait (until their max_queue_wait) for a backend to come back
        async with self.store.locked(group) as tx:
            await self._dispatch(tx, group, ranked, now, housekeeping)

    # -- waiting queries -----------------------------------------------------------------------
    def _new_waiting(
        self, submission: Submission, user_limit: int | None, rule_weight: float | None, now: int
    ) -> tuple[WaitingQuery, WaitingRow]:
        """A new query that may have to wait, and its row."""
        settings = self.groups.get(submission.group)
        max_wait = None if settings is None else settings.max_queue_wait
        waiting = WaitingQuery(
            submission,
            self.party_of(submission.user, submission.source),
            self.weight_of(submission.user, rule_weight),
            user_limit,
            max_wait,
        )
        waiting.stored = True
        row = WaitingRow(
            query_id=waiting.id,
            slug=waiting.slug,
            routing_group=submission.group,
            party=waiting.party,
            user_name=submission.user,
            weight=waiting.weight,
            user_limit=user_limit,
            state=QUEUED,
            backend_name=None,
            token=0,
            enqueued_at=now,
            deadline_at=None if max_wait is None else now + int(max_wait * 1000),
            max_queue_wait=max_wait,
            queued_ms=0,
            last_seen_at=now,
            submission=_submission_json(submission),
        )
        return waiting, row

    async def find(self, query_id: str) -> WaitingQuery | None:
        if _GATEWAY_ID_MARK not in query_id:
            return None  # a backend's id: never in the queue's table
        row = await self.store.get(query_id)
        if row is None:
            return None
        known = self.queries.get(query_id)
        if known is not None:
            return known
        waiting = _from_row(row)
        self._sync(waiting, row)
        self.queries[waiting.id] = waiting
        return waiting

    async def reread(self, waiting: WaitingQuery) -> None:
        if waiting.stored:
            self._sync(waiting, await self.store.get(waiting.id))

    def _sync(self, waiting: WaitingQuery, row: WaitingRow | None) -> None:
        """``waiting`` takes what another node did to it (states only move forward)."""
        if row is None:
            if _RANK[waiting.state] < _RANK[STARTED]:
                waiting.state, waiting.error = CANCELED, None  # forgotten by the store: long gone
            return
        waiting.token = max(waiting.token, row.token)
        waiting.trace_parent = waiting.trace_parent or row.trace_parent
        if _RANK[row.state] <= _RANK[waiting.state] or (row.state == SENDING and waiting.id in self.claimed):
            return
        orphan = row.state == SENDING and waiting.submission.failover
        if row.state == ADMITTED or orphan:
            # (A read-only query another node was sending when it stopped, its client now asking
            # here, is sent again: running twice does no harm, as for failover.)
            backend = self.by_name.get(row.backend_name or "")
            if backend is None:
                return  # not in this node's registry yet: the next look finds it
            waiting.state, waiting.backend = ADMITTED, backend
            waiting.slot = SharedSlot(self, backend.name, row.user_name or NO_USER, row.query_id)
            waiting.queued_seconds = row.queued_ms / 1000
            if orphan:
                self.orphans.add(waiting.id)
                log.warning("query %s: the node sending it stopped before it answered; it is sent again", waiting.id)
        elif row.state == SENDING:
            # Another node claimed it to send it, and its client now asks here: that node stopped
            # before it answered. The query may have reached the backend: it is not sent again.
            waiting.state = FAILED
            waiting.error = (
                "GENERIC_INTERNAL_ERROR",
                f"trino-gateway: the gateway node sending query {waiting.id} to backend {row.backend_name} "
                "stopped before it answered; the query may have run there",
            )
        elif row.state in (FAILED, CANCELED):
            waiting.state = row.state
            waiting.error = (row.error_name or "GENERIC_INTERNAL_ERROR", row.error_message or "")
        else:
            waiting.state = STARTED
        waiting.changed.set()

    async def wait_turn(self, waiting: WaitingQuery, timeout: float) -> None:
        self.polling.add(waiting)
        try:
            waiting.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiting.changed.wait()
        finally:
            self.polling.discard(waiting)
        if waiting.state == QUEUED and waiting.deadline is not None and time.monotonic() >= waiting.deadline:
            message = _expired_message_for(waiting.max_queue_wait)
            if await self.store.update(
                waiting.id,
                only_from=(QUEUED,),
                state=FAILED,
                error_name="EXCEEDED_TIME_LIMIT",
                error_message=message,
            ):
                self.fail(waiting, "EXCEEDED_TIME_LIMIT", message)
            else:
                await self.reread(waiting)  # admitted meanwhile, by another node

    async def claim(self, waiting: WaitingQuery) -> bool:
        if not waiting.stored:
            return True
        orphan = waiting.id in self.orphans
        self.orphans.discard(waiting.id)
        if await self.store.update(waiting.id, only_from=(SENDING if orphan else ADMITTED,), state=SENDING):
            self.claimed.add(waiting.id)
            return True
        await self.reread(waiting)
        return False

    async def persist(self, waiting: WaitingQuery) -> None:
        if not waiting.stored:
            return
        values: dict[str, Any] = {
            "token": waiting.token,
            "trace_parent": waiting.trace_parent,
            "last_seen_at": now_ms(),
        }
        if waiting.state in (FAILED, CANCELED):
            name, message = waiting.error or ("USER_CANCELED", "Query was canceled")
            values.update(state=waiting.state, error_name=name, error_message=message)
            if await self.store.update(waiting.id, only_from=(QUEUED, ADMITTED, SENDING), **values):
                await self._release(waiting.id, None)
        elif waiting.state == STARTED:
            started = None if waiting.query is None else waiting.query.id
            await self.store.update(waiting.id, state=STARTED, started_query_id=started, **values)
        elif waiting.token <= 1:
            # Its first page: the trace it joined. A later page changes only the token, which the
            # next poll carries (proven by its slug) to whichever node it reaches, and the time it was
            # seen, written with every other one's (``_renew``): no store write per poll.
            await self.store.update(waiting.id, **values)

    def started(self, waiting: WaitingQuery) -> None:
        super().started(waiting)
        self._later(self.persist(waiting))

    # -- housekeeping --------------------------------------------------------------------------
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
            # run out, backends back); a notification from another node only has this one look at
            # its clients' queries, so that a release costs one decision, not one per worker.
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
            for group in await self.store.groups_waiting():
                await self._dispatch_group(group, now, housekeeping)
        if self.polling:
            # (Polls that begin while this reads are looked at by the next tick.)
            polling = list(self.polling)
            rows = await self.store.rows(waiting.id for waiting in polling)
            for waiting in polling:
                row = rows.get(waiting.id)
                if row is not None and row.state != QUEUED:
                    self._sync(waiting, row)
        if time.monotonic() - self._counted_at >= IDLE_TICK_SECONDS:
            # The views' figures: once a second is enough, and a long queue's count is not free.
            queued, running = await self.store.counts(now)
            self.snapshot, self.running = queued, running
            self._counted_at = time.monotonic()

    async def _renew(self, since: float) -> None:
        """The slots of queries whose clients this worker saw lately run on; waiting queries polled
        here are not abandoned; forgotten: what ended long ago."""
        now = now_ms()
        waiting_ids = [
            waiting.id
            for waiting in self.queries.values()
            if waiting.stored and waiting.state in (QUEUED, ADMITTED) and waiting.last_seen >= since
        ]
        await self.store.renew(self.seen_since(since), waiting_ids, now, now + self.lease_ms)
        keep_ms = int(max(self.settings.abandon_after, 60.0) * 2000)
        await self.store.purge(now - keep_ms, now)
        forget_before = time.monotonic() - self.settings.abandon_after
        for waiting in list(self.queries.values()):
            if waiting.stored and waiting.last_seen < forget_before:
                del self.queries[waiting.id]  # this node's copy; the store keeps the query
                self.claimed.discard(waiting.id)
        self.expire()  # the held queries of failover, this worker's own

    # -- views ---------------------------------------------------------------------------------
    def queued_by_group_and_user(self) -> dict[tuple[str, str], int]:
        return dict(self.snapshot)

    def queued(self, group: str) -> int:
        return sum(count for (name, _), count in self.snapshot.items() if name == group)

    def dispatch_all(self) -> None:
        self.dispatch_due = True
        self.wake.set()

    def changed_elsewhere(self) -> None:
        self.wake.set()

    def dispatch(self, group: str) -> None:
        self.dispatch_all()


def _free_slots(ranked: list[Backend], running: dict[str, int]) -> int:
    """How many queries the backends of ``ranked`` may start now, all together (capped: a backend
    without a limit has room for any number)."""
    free = 0
    for backend in ranked:
        if backend.max_running is None:
            return FREE_SLOTS_CAP
        free += max(0, backend.max_running - running.get(backend.name, 0))
    return min(free, FREE_SLOTS_CAP)


def _has_room(backend: Backend, running: dict[str, int]) -> bool:
    return backend.max_running is None or running.get(backend.name, 0) < backend.max_running


def _expired_message_for(max_queue_wait: float | None) -> str:
    return f"Query exceeded maximum queued time limit of {_duration(max_queue_wait or 0)}"


def _expired_message(row: WaitingRow) -> str:
    return _expired_message_for(row.max_queue_wait)


def _submission_json(submission: Submission) -> str:
    return orjson.dumps(
        {
            "sql": submission.sql,
            "body": base64.b64encode(submission.body).decode(),
            "user": submission.user,
            "source": submission.source,
            "client_tags": submission.client_tags,
            "group": submission.group,
            "routed_by": list(submission.routed_by),
            "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in submission.headers],
            "failover": submission.failover,
        }
    ).decode()


def _from_row(row: WaitingRow) -> WaitingQuery:
    """A waiting query another node took (or this node before a restart), as the store has it."""
    data = orjson.loads(row.submission)
    submission = Submission(
        data["sql"],
        base64.b64decode(data["body"]),
        data["user"],
        data["source"],
        data["client_tags"],
        None,
        data["group"],
        (data["routed_by"][0], data["routed_by"][1]),
        [(name.encode("latin-1"), value.encode("latin-1")) for name, value in data["headers"]],
        failover=bool(data["failover"]),
    )
    waiting = WaitingQuery(submission, row.party, row.weight, row.user_limit, row.max_queue_wait)
    waiting.id, waiting.slug, waiting.stored = row.query_id, row.slug, True
    waiting.created_ms = row.enqueued_at
    now, mono = now_ms(), time.monotonic()
    waiting.enqueued = waiting.queued_since = mono - max(0, now - row.enqueued_at) / 1000
    waiting.deadline = None if row.deadline_at is None else mono + (row.deadline_at - now) / 1000
    waiting.trace_parent = row.trace_parent
    waiting.token = row.token
    return waiting
