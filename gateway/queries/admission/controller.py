"""Admission control: who may start a query now, and the queries that wait in the gateway until
they may.

    submit ──room on a backend and under the user's limit──▶ slot taken, sent at once (as before)
       │
       └─no room──▶ WAITING (gateway query id, QUEUED pages) ──room appears: dispatch──▶ ADMITTED
                      │  │                                                   (slot taken, backend chosen)
                      │  └─ max_queue_wait passed / client gone / cancelled ──▶ FAILED / CANCELED
                      └─ max_queued reached at submission ──▶ FAILED at once (QUERY_QUEUE_FULL)

    ADMITTED ──the client's next poll sends it (gateway.dataplane)──▶ STARTED: the client goes on with
                                                                the backend's own pages

A *slot* is one query running on one backend for one user; every query this worker starts holds
one until the query book sees it end. A backend has room while its slots are fewer than its
``max_running`` (none set: always); a user while theirs are fewer than their limit. Whenever a
slot is released, a waiting query of that backend's group may take it (``dispatch``), picked by
the group's fair queue. Nothing here awaits: a release dispatches at once, before any new
submission can take the slot ahead of the queries that waited for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from gateway.config import AdmissionConfig, GroupConfig
from gateway.queries.admission.fair_queue import FairQueue
from gateway.queries.submission import Submission
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.store.backend import Backend

log = logging.getLogger("gateway.queries.admission")

QUEUED, ADMITTED, STARTED, FAILED, CANCELED = "QUEUED", "ADMITTED", "STARTED", "FAILED", "CANCELED"
NO_USER = ""
# How long a query that moved on to its backend's own URIs stays known by its gateway id.
HANDED_OVER_KEPT_SECONDS = 10.0
# How often waiting queries meet backends that came back (a released slot dispatches at once).
ADMISSION_TICK_SECONDS = 0.5


class Slot:
    """One query's claim on a backend's and a user's capacity; released once."""

    __slots__ = ("backend", "owner", "released", "user")

    def __init__(self, owner: Admission, backend: str, user: str) -> None:
        self.owner = owner
        self.backend = backend
        self.user = user
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner.released(self)

    async def bind(self, query_id: str) -> None:
        """The backend took the slot's query under ``query_id`` (a fleet's slot is then freed by
        whichever node sees that query end)."""


class QueueFull(Exception):
    """The group's queue holds ``max_queued`` queries already."""


class WaitingQuery:
    """A query the gateway holds: what it needs to send it later, and where it is in its life."""

    __slots__ = (
        "attempts",
        "backend",
        "changed",
        "created_ms",
        "deadline",
        "enqueued",
        "error",
        "excluded",
        "id",
        "last",
        "last_seen",
        "lock",
        "max_queue_wait",
        "party",
        "query",
        "queued",
        "queued_seconds",
        "queued_since",
        "slot",
        "slug",
        "state",
        "stored",
        "submission",
        "token",
        "trace_parent",
        "upstream_next",
        "user_limit",
        "weight",
    )

    def __init__(
        self,
        submission: Submission,
        party: str,
        weight: float,
        user_limit: int | None,
        max_queue_wait: float | None,
    ) -> None:
        self.id = waiting_query_id()
        self.slug = secrets.token_hex(16)  # the secret its pages' slugs are made with
        self.submission = submission
        self.party = party
        self.weight = weight
        self.user_limit = user_limit
        self.trace_parent: str | None = None
        now = time.monotonic()
        self.enqueued = now
        self.created_ms = int(time.time() * 1000)
        self.last_seen = now
        self.max_queue_wait = max_queue_wait
        self.deadline = None if max_queue_wait is None else now + max_queue_wait
        self.queued = 0
        self.state = QUEUED
        self.backend: Backend | None = None
        self.slot: Slot | None = None
        self.queued_since = now  # when it last joined its queue
        self.queued_seconds = 0.0  # time spent in the queue before its last admission
        self.query: Any = None  # the book's Query once a backend took it
        self.error: tuple[str, str] | None = None  # (Trino error name, message) once FAILED
        self.token = 0  # the token of the request the client is expected to send next (0: the submission)
        self.excluded: set[str] = set()  # backends that failed it (failover): not tried again while others can
        self.attempts: list[str] = []  # those failures, "trino-1: connection refused"
        # While it runs on a backend that has sent no row yet: the backend's own nextUri, which the
        # gateway polls when the client asks for it (the query may still move to another backend).
        self.upstream_next: str | None = None
        # The last answer, for a client that asks again (a retry): (request path, status, headers, body).
        self.last: tuple[str, int, list[tuple[bytes, bytes]], bytes] | None = None
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()
        self.stored = False  # kept in the store for a fleet (gateway.queries.admission.shared), not only here

    @property
    def group(self) -> str:
        return self.submission.group

    @property
    def user(self) -> str | None:
        return self.submission.user

    @property
    def waited(self) -> float:
        """Seconds it waited in the gateway's queue, over every time it was there (a query sent
        again after a failover waits again only if no backend had room)."""
        current = time.monotonic() - self.queued_since if self.state == QUEUED else 0.0
        return self.queued_seconds + current

    def next_uri(self, base: str) -> str:
        # The phase the query is in, as Trino writes it: queued until its backend says executing.
        queued = self.state in (QUEUED, ADMITTED) or "/v1/statement/queued/" in (self.upstream_next or "")
        phase = "queued" if queued else "executing"
        return f"{base}/v1/statement/{phase}/{self.id}/{self.slug_for(self.token)}/{self.token}"

    def slug_for(self, token: int) -> str:
        """The slug of the URI of page ``token``, as Trino makes them: a keyed hash of the token with
        the query's secret. Whoever holds the secret (any node of a fleet, from the store) checks a
        poll without knowing which page was handed out last, and a client cannot skip ahead."""
        return hmac.new(self.slug.encode(), str(token).encode(), hashlib.sha256).hexdigest()[:32]

    def backends_for(self, room: list[Backend], routable: list[Backend]) -> list[Backend]:
        """Of the backends with ``room``, those it may go to: not one that failed it, unless every
        routable backend has."""
        if not self.excluded:
            return room
        fresh = [backend for backend in room if backend.name not in self.excluded]
        if fresh or any(backend.name not in self.excluded for backend in routable):
            return fresh
        return room


_sequence = itertools.count(1)
# Distinct per process: ids made by two workers (or nodes) in the same second never collide.
_SUFFIX = "gw" + secrets.token_hex(6)


_second: list[Any] = [0, ""]  # the last second an id was made in, and its formatted prefix


def waiting_query_id() -> str:
    """A query id in Trino's form, for a query before any backend gave it one (the date is formatted
    once a second: every read-only query gets such an id)."""
    now = int(time.time())
    if now != _second[0]:
        _second[0], _second[1] = now, f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y%m%d_%H%M%S}"
    return f"{_second[1]}_{next(_sequence) % 100000:05d}_{_SUFFIX}"


def holds_queries(workers: int) -> bool:
    """Whether a worker on a store no other process shares (SQLite, memory) may hold waiting queries:
    only when every request of the query reaches it, that is when it is the only worker. Its waiting
    queries live in its memory; a poll reaching another worker would not find them. (On PostgreSQL
    the queue is the store's, ``gateway.queries.admission.shared``; a query held for failover is not
    affected: its URIs are its backend's, found by any worker.)"""
    return workers == 1


class Admission:
    """One worker's running counts and waiting queries."""

    def __init__(
        self,
        settings: AdmissionConfig,
        groups: dict[str, GroupConfig],
        decider: RouteDecider,
        on_event: Callable[[str, str], None] = lambda group, outcome: None,
        on_wait: Callable[[str, float], None] = lambda group, seconds: None,
        enabled: bool = True,
    ) -> None:
        """``on_event(group, outcome)``: told each admission outcome (queued, admitted, queue_full,
        expired, canceled, abandoned); ``on_wait(group, seconds)``: how long each admitted query
        waited (the metrics', handed in so that this package imports no metrics). ``enabled``: False
        where this worker cannot hold waiting queries (see ``holds_queries``): every query is sent
        at once, as without admission control (a query that fails over goes to the next backend at
        once, never to a queue); slots are still counted."""
        self.settings = settings
        self.groups = groups
        self.decider = decider
        self.on_event = on_event
        self.enabled = enabled
        self.on_wait = on_wait
        self.running: dict[str, int] = {}
        self.user_running: dict[str, int] = {}
        self.queues: dict[str, FairQueue[WaitingQuery]] = {}
        self.queries: dict[str, WaitingQuery] = {}  # waiting, admitted, and lately started or ended ones
        self.backends: list[Backend] = []
        self.by_name: dict[str, Backend] = {}

    @property
    def requeues(self) -> bool:
        """Whether a query whose backend failed (or refused it) waits again in its group's queue; else
        it goes to the next untried backend at once."""
        return self.enabled

    # -- what the proxy awaits: this worker's decisions need no store (gateway.queries.admission.shared's do)
    async def admit(
        self, ranked: list[Backend], submission: Submission, user_limit: int | None, rule_weight: float | None
    ) -> tuple[list[Backend], Slot | None, WaitingQuery | None]:
        """A new query of ``ranked``'s group: the backends it may start on now, best first, with a
        slot on the first if one is taken already; or, when it must wait, it waits (QueueFull when
        its group's queue is full)."""
        room = self.with_room(ranked, submission.group, submission.user, user_limit)
        if room:
            return room, None, None
        return [], None, self.enqueue(submission, user_limit, rule_weight)

    async def claim_slot(self, backend: Backend, user: str | None) -> Slot:
        return self.take(backend, user)

    async def find(self, query_id: str) -> WaitingQuery | None:
        """A waiting query this worker does not know (one kept in a fleet's store)."""
        return None

    async def reread(self, waiting: WaitingQuery) -> None:
        """``waiting`` as it stands now (another node may have moved it on)."""

    async def wait_turn(self, waiting: WaitingQuery, timeout: float) -> None:
        """Until ``waiting`` leaves the queue or ``timeout`` passes; then its time limit is checked."""
        waiting.changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await waiting.changed.wait()
        if waiting.state == QUEUED:
            self.expire_one(waiting)

    async def claim(self, waiting: WaitingQuery) -> bool:
        """Whether this worker sends the admitted ``waiting`` (in a fleet, one node does)."""
        return True

    async def persist(self, waiting: WaitingQuery) -> None:
        """``waiting``'s token and state, for the other nodes of a fleet."""

    def changed_elsewhere(self) -> None:
        """Another node freed a slot or admitted a query (the store's notification)."""

    async def run_forever(self, backends: Callable[[], Awaitable[list[Backend]]]) -> None:
        """Waiting queries meet backends that came back or got room, and their time limits."""
        while True:
            await asyncio.sleep(ADMISSION_TICK_SECONDS)
            try:
                self.refresh(await backends())
                self.expire()
                self.dispatch_all()
            except Exception:
                log.exception("admission housekeeping failed")

    # -- capacity ----------------------------------------------------------------------------
    def take(self, backend: Backend, user: str | None) -> Slot:
        slot = Slot(self, backend.name, user or NO_USER)
        self.running[slot.backend] = self.running.get(slot.backend, 0) + 1
        self.user_running[slot.user] = self.user_running.get(slot.user, 0) + 1
        return slot

    def released(self, slot: Slot) -> None:
        self.running[slot.backend] -= 1
        self.user_running[slot.user] -= 1
        if not self.user_running[slot.user]:
            del self.user_running[slot.user]
        # The freed backend's group may start one; a user's freed turn may be in any group.
        self.dispatch_all()

    def has_room(self, backend: Backend) -> bool:
        limit = backend.max_running
        return limit is None or self.running.get(backend.name, 0) < limit

    def user_limit(self, rule_limit: int | None) -> int | None:
        """A rule's limit for the query's user, else admission.user_max_running."""
        return rule_limit if rule_limit is not None else self.settings.user_max_running

    def user_has_room(self, user: str | None, limit: int | None) -> bool:
        return limit is None or self.user_running.get(user or NO_USER, 0) < limit

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

    def with_room(self, ranked: list[Backend], group: str, user: str | None, user_limit: int | None) -> list[Backend]:
        """The backends of ``ranked`` a new query may start on now, best first; empty: it must wait
        (every backend is full, the user is at their limit, or others of the group wait already)."""
        if self.queues.get(group):
            # Queries that waited go first. Dispatch stops only when no backend has room (then none
            # has for this one either) or when every waiting user is at their limit (then this one
            # may start, if its user is not).
            self.dispatch(group)
        if not self.user_has_room(user, user_limit):
            return []
        return [backend for backend in ranked if self.has_room(backend)]

    def _may_start(self, waiting: WaitingQuery, room: list[Backend], routable: list[Backend]) -> bool:
        return self.user_has_room(waiting.user, waiting.user_limit) and bool(waiting.backends_for(room, routable))

    # -- waiting queries -----------------------------------------------------------------------
    def enqueue(self, submission: Submission, user_limit: int | None, rule_weight: float | None) -> WaitingQuery:
        """A new query that may not start now waits in its group's queue; QueueFull if the group's
        ``max_queued`` queries wait already."""
        group = submission.group
        settings = self.groups.get(group)
        queue = self._queue(group)
        limit = None if settings is None else settings.max_queued
        if limit is not None and len(queue) >= limit:
            self.on_event(group, "queue_full")
            raise QueueFull(f'Too many queued queries for "{group}"')
        waiting = WaitingQuery(
            submission,
            self.party_of(submission.user, submission.source),
            self.weight_of(submission.user, rule_weight),
            user_limit,
            None if settings is None else settings.max_queue_wait,
        )
        queue.push(waiting)
        self.queries[waiting.id] = waiting
        self.on_event(group, "queued")
        return waiting

    def get(self, query_id: str) -> WaitingQuery | None:
        return self.queries.get(query_id)

    def _queue(self, group: str) -> FairQueue[WaitingQuery]:
        queue = self.queues.get(group)
        if queue is None:
            settings = self.groups.get(group)
            queue = self.queues[group] = FairQueue(fifo=settings is not None and settings.queue_policy == "fifo")
        return queue

    def track(self, submission: Submission) -> WaitingQuery:
        """A query that started at once but may still move to another backend (failover): known by
        a gateway id from now on, as if it had waited."""
        waiting = WaitingQuery(
            submission,
            self.party_of(submission.user, submission.source),
            self.weight_of(submission.user, None),
            self.user_limit(None),
            None,
        )
        waiting.state = STARTED
        self.queries[waiting.id] = waiting
        return waiting

    def forget(self, waiting: WaitingQuery) -> None:
        """A query tracked for nothing (its backend gave it no id)."""
        self.queries.pop(waiting.id, None)

    def requeue(self, waiting: WaitingQuery) -> None:
        """An admitted query its backend would not take, or a query whose backend failed before it
        returned a row, goes back first in its group's line (and starts at once if a backend has room)."""
        slot, waiting.slot = waiting.slot, None
        waiting.state, waiting.backend, waiting.upstream_next = QUEUED, None, None
        waiting.deadline = None  # a query sent again is not failed for the time it already waited
        waiting.queued_since = time.monotonic()
        self._queue(waiting.group).push(waiting, front=True)
        self.on_event(waiting.group, "queued")
        if slot is not None:
            slot.release()
        self.dispatch(waiting.group)

    def started(self, waiting: WaitingQuery) -> None:
        """A backend took the admitted query: its slot now belongs to the book's query."""
        waiting.state = STARTED
        waiting.slot = None

    def fail(self, waiting: WaitingQuery, error_name: str, message: str) -> None:
        waiting.error = (error_name, message)
        self._end(waiting, FAILED, "expired" if error_name == "EXCEEDED_TIME_LIMIT" else "failed")

    def cancel(self, waiting: WaitingQuery, outcome: str = "canceled") -> None:
        self._end(waiting, CANCELED, outcome)

    def _end(self, waiting: WaitingQuery, state: str, outcome: str) -> None:
        if waiting.state in (QUEUED, ADMITTED):
            self.on_event(waiting.group, outcome)
        queue = self.queues.get(waiting.group)
        if queue is not None:
            queue.remove(waiting)
        waiting.state = state
        waiting.changed.set()
        if waiting.slot is not None:
            slot, waiting.slot = waiting.slot, None
            slot.release()

    # -- dispatch: waiting queries onto free slots ----------------------------------------------
    def refresh(self, backends: list[Backend]) -> None:
        """The registry's current backends (re-read by the tick and by every submission)."""
        if backends is not self.backends:
            self.backends = backends
            self.by_name = {backend.name: backend for backend in backends}

    def dispatch_all(self) -> None:
        for group, queue in list(self.queues.items()):
            if queue:
                self.dispatch(group)

    def dispatch(self, group: str) -> None:
        """Admit waiting queries of ``group`` while one of its backends has room."""
        queue = self.queues.get(group)
        if not queue:
            return
        while queue:
            try:
                ranked = self.decider.decide(self.backends, group).ranked
            except NoBackendAvailable as error:
                # New queries wait (until their max_queue_wait) for a backend to come back; one
                # sent again after its backend failed had already found one, and it fails now with
                # the group's error, as it would have without failover.
                self._fail_sent_before(queue, str(error))
                break
            room = [backend for backend in ranked if self.has_room(backend)]
            if not room:
                break
            waiting = queue.pick(partial(self._may_start, room=room, routable=ranked))
            if waiting is None:
                break
            backend = waiting.backends_for(room, ranked)[0]
            waiting.slot = self.take(backend, waiting.user)
            waiting.backend = backend
            waiting.state = ADMITTED
            this_wait = time.monotonic() - waiting.queued_since
            waiting.queued_seconds += this_wait
            waiting.changed.set()
            self.on_event(group, "admitted")
            self.on_wait(group, this_wait)

    def _fail_sent_before(self, queue: FairQueue[WaitingQuery], why: str) -> None:
        for waiting in [waiting for waiting in queue if waiting.attempts]:
            self.fail(waiting, "NO_NODES_AVAILABLE", f"{why} (after failing on {'; '.join(waiting.attempts)})")

    def expire(self, now: float | None = None) -> list[WaitingQuery]:
        """Waiting queries past their ``max_queue_wait`` fail; those whose client stopped polling
        leave; ended ones are forgotten once no late poll can need their last answer. Returns the
        expired ones."""
        now = time.monotonic() if now is None else now
        expired: list[WaitingQuery] = []
        forget_before = now - self.settings.abandon_after
        let_go_before = now - min(self.settings.abandon_after, HANDED_OVER_KEPT_SECONDS)
        for waiting in list(self.queries.values()):
            if waiting.stored:
                continue  # a fleet's: its store decides (gateway.queries.admission.shared)
            if waiting.state == QUEUED:
                if waiting.deadline is not None and now >= waiting.deadline:
                    self._exceeded(waiting)
                    expired.append(waiting)
                elif waiting.last_seen < forget_before:
                    log.info("query %s left the queue: its client stopped polling", waiting.id)
                    self.cancel(waiting, "abandoned")
            elif waiting.state == ADMITTED and waiting.last_seen < forget_before:
                self.cancel(waiting, "abandoned")  # admitted, but nobody came to send it
            elif waiting.state == STARTED and waiting.upstream_next is None and waiting.last_seen < let_go_before:
                # It runs on its backend's own URIs: only a repeat of its last page could still come.
                self._let_go(waiting)
            elif waiting.state != ADMITTED and waiting.last_seen < forget_before:
                self._let_go(waiting)
        return expired

    def _let_go(self, waiting: WaitingQuery) -> None:
        del self.queries[waiting.id]
        if waiting.query is not None and waiting.query.holder is waiting:
            # The book keeps ended queries a while (late infoUri requests): not their submission
            # and last page too.
            waiting.query.holder = None

    def expire_one(self, waiting: WaitingQuery) -> None:
        """``waiting`` fails if its ``max_queue_wait`` has passed (its own poll checks; the tick checks all)."""
        if waiting.state == QUEUED and waiting.deadline is not None and time.monotonic() >= waiting.deadline:
            self._exceeded(waiting)

    def _exceeded(self, waiting: WaitingQuery) -> None:
        limit = _duration(waiting.max_queue_wait or 0)
        self.fail(waiting, "EXCEEDED_TIME_LIMIT", f"Query exceeded maximum queued time limit of {limit}")

    # -- views ---------------------------------------------------------------------------------
    def queued_by_group_and_user(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for group, queue in self.queues.items():
            for waiting in queue:
                key = (group, waiting.user or NO_USER)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def queued(self, group: str) -> int:
        queue = self.queues.get(group)
        return 0 if queue is None else len(queue)


def _duration(seconds: float) -> str:
    # Trino's Duration.toString: the largest unit with a value of at least 1, two decimals.
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:.2f}{unit}"
    return f"{seconds * 1000:.2f}ms"
