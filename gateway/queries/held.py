"""Queries the gateway holds: what it needs to answer a client itself, and to send the query (again).

A query is *held* while the gateway, not only a backend, decides what its client reads next:

    submitted ──no room──▶ WAITING in the gateway's queue (its own id and QUEUED pages)
        │                      │ admitted ──the client's next poll sends it──┐
        │                      ▼                                              ▼
        └─read-only, room──▶ RUNNING on a backend that has returned no row yet (it may still move to
                             another backend: failover) ──rows or the end──▶ handed over: the client
                             follows the backend's own URIs, as for any query, and nothing is held

Ten thousand queries running held cost what they keep, so a running one keeps no more than its
submission, on the query book's record (``Query.submission``): its client polls the backend's own
URIs, which the worker that sent it fetches for it (a retry of a page is answered by the backend, as
Trino answers a client's retry). A ``HeldQuery`` is made only for a query that waits in the gateway's
queue (known by its gateway id: ``WaitingQueries``, this worker's copies; the queue itself is admission
control's) or that must move to another backend; it hangs on the book's record (``Query.holder``)
while it has something to give its client again, and it has no lock or event until a request waits
on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.queries.slots import Slot
from gateway.queries.states import ADMITTED, CANCELED, FAILED, QUEUED, STARTED
from gateway.queries.submission import RawHeaders, Submission
from gateway.store.backend import Backend

# How long a waiting query that moved on to its backend's own URIs stays known by its gateway id.
HANDED_OVER_KEPT_SECONDS = 10.0


class RunningQuery(Protocol):
    """The query book's record of the query a backend runs (``gateway.queries.book.Query``), as far
    as a held query needs it."""

    id: str
    backend: Backend
    holder: HeldQuery | None


@dataclass(slots=True)
class Replay:
    """An answer the gateway gave that the backend could not give again: a page the gateway wrote, or a
    backend's first page answered to a poll of the gateway's (or an earlier backend's) URI."""

    path: str
    status: int
    headers: RawHeaders
    body: bytes


class HeldQuery:
    """One held query: its submission, where it runs or waits, and the gateway's part of its pages."""

    __slots__ = (
        "_id",
        "attempts",
        "backend",
        "changed",
        "deadline",
        "error",
        "last_seen",
        "lock",
        "query",
        "queued_seconds",
        "queued_since",
        "replay",
        "secret",
        "slot",
        "state",
        "submission",
        "token",
        "trace_parent",
    )

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.state = STARTED  # running on a backend (or about to be sent); QUEUED once it waits
        self.query: RunningQuery | None = None  # the book's query while a backend runs it
        self.attempts: list[str] | None = None  # earlier backends that failed it: "trino-1: connection refused"
        self.replay: Replay | None = None
        self.trace_parent: str | None = None
        self.lock: asyncio.Lock | None = None
        self.changed: asyncio.Event | None = None
        self._id: str | None = None
        # Once it waits in the gateway's queue (``wait``):
        self.secret: str | None = None  # its pages' slugs are made with it
        self.token = 0  # the token of the request the client is expected to send next (0: the submission)
        self.deadline: float | None = None  # monotonic
        self.queued_since = 0.0  # when it last joined the queue (monotonic)
        self.queued_seconds = 0.0  # time spent in the queue before its last admission
        self.last_seen = 0.0  # its client's last poll of a gateway page (monotonic)
        self.backend: Backend | None = None  # the backend admission chose
        self.slot: Slot | None = None  # its claim on that backend, until the backend takes it
        self.error: tuple[str, str] | None = None  # (Trino error name, message) once FAILED

    @property
    def id(self) -> str:
        """The id the gateway knows it by, whichever backend runs it: its client sees it while it waits
        in the gateway's queue, and the history ties its attempts together by it (made when first
        needed: most held queries never need one)."""
        if self._id is None:
            self._id = waiting_query_id()
        return self._id

    @property
    def named(self) -> bool:
        """Whether it has a gateway id already."""
        return self._id is not None

    @property
    def group(self) -> str:
        return self.submission.group

    @property
    def user(self) -> str | None:
        return self.submission.user

    @property
    def waits(self) -> bool:
        """Whether it waited, or waits, in the gateway's queue (its client has seen its gateway id)."""
        return self.secret is not None

    @property
    def excluded(self) -> frozenset[str]:
        """The backends that failed it: not tried again while others can be."""
        return frozenset(attempt.split(":", 1)[0] for attempt in self.attempts or ())

    @property
    def waited(self) -> float:
        """Seconds it waited in the gateway's queue, over every time it was there."""
        current = time.monotonic() - self.queued_since if self.state == QUEUED else 0.0
        return self.queued_seconds + current

    def wait(self, max_queue_wait: float | None) -> None:
        """It joins the gateway's queue: from now on its client polls the gateway's own pages."""
        if self.secret is None:
            self.secret = secrets.token_hex(16)
        now = time.monotonic()
        self.last_seen = now
        # Sent again after its backend failed, it is not failed for the time it already waited.
        self.deadline = None if max_queue_wait is None or self.attempts else now + max_queue_wait
        self.state, self.backend, self.query = QUEUED, None, None
        self.queued_since = now

    def admitted(self, backend: Backend, slot: Slot, queued_seconds: float | None = None) -> float:
        """Admission chose ``backend`` for it; how long this wait lasted."""
        this_wait = time.monotonic() - self.queued_since
        self.queued_seconds = queued_seconds if queued_seconds is not None else self.queued_seconds + this_wait
        self.state, self.backend, self.slot = ADMITTED, backend, slot
        return this_wait

    def failed_on(self, backend: str, why: str) -> None:
        self.attempts = [*(self.attempts or ()), f"{backend}: {why}"]

    def end(self, state: str, error: tuple[str, str] | None = None) -> None:
        """It ended while the gateway held it (FAILED or CANCELED); its slot, if it had one, is freed."""
        self.state, self.error = state, error
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()
        self.signal()

    @property
    def ended(self) -> bool:
        return self.state in (FAILED, CANCELED)

    # -- waiting for it, one request at a time ---------------------------------------------------
    def locked(self) -> asyncio.Lock:
        """Its lock, made when a request first needs it: requests of one query take turns."""
        if self.lock is None:
            self.lock = asyncio.Lock()
        return self.lock

    def signal(self) -> None:
        """Something happened to it: a request waiting for its turn looks again."""
        if self.changed is not None:
            self.changed.set()

    async def wait_for_change(self, timeout: float) -> None:
        if self.changed is None:
            self.changed = asyncio.Event()
        self.changed.clear()
        try:
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        except TimeoutError:
            pass

    # -- its pages ---------------------------------------------------------------------------------
    def next_uri(self, base: str) -> str:
        # The phase the query is in, as Trino writes it: queued while it waits.
        phase = "queued" if self.state in (QUEUED, ADMITTED) else "executing"
        return f"{base}/v1/statement/{phase}/{self.id}/{self.slug_for(self.token)}/{self.token}"

    def slug_for(self, token: int) -> str:
        """The slug of the URI of page ``token``, as Trino makes them: a keyed hash of the token with
        the query's secret. Whoever holds the secret (any node of a fleet, from the store) checks a
        poll without knowing which page was handed out last, and a client cannot skip ahead."""
        assert self.secret is not None
        return hmac.new(self.secret.encode(), str(token).encode(), hashlib.sha256).hexdigest()[:32]

    def token_of(self, path: str) -> int | None:
        """The token of a request for one of its pages: ``/v1/statement/{phase}/{id}/{slug}/{token}``;
        None if the slug is not the query's (an id alone, guessed or seen in a log, controls nothing)."""
        parts = path.split("/")
        if len(parts) != 7 or not parts[6].isdigit() or len(parts[6]) > 9 or self.secret is None:
            return None
        token = int(parts[6])
        return token if hmac.compare_digest(parts[5], self.slug_for(token)) else None


class WaitingQueries:
    """The queries waiting in the gateway that this worker knows, by gateway id: those its clients
    submitted or polled here. Admission control's queue is the truth (in memory or in the store); these
    are the copies this worker answers polls from, forgotten when no poll needs them any more."""

    def __init__(self, abandon_after: float) -> None:
        self.abandon_after = abandon_after
        self._by_id: dict[str, HeldQuery] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[HeldQuery]:
        return iter(list(self._by_id.values()))

    def get(self, query_id: str) -> HeldQuery | None:
        return self._by_id.get(query_id)

    def add(self, held: HeldQuery) -> None:
        self._by_id[held.id] = held

    def forget(self, held: HeldQuery) -> None:
        self._by_id.pop(held.id, None)

    def known(self, held: HeldQuery) -> HeldQuery:
        """``held``, or the copy of it this worker knows already (requests racing to find it)."""
        return self._by_id.setdefault(held.id, held)

    def forget_unneeded(self, now: float | None = None) -> list[HeldQuery]:
        """Copies no request can need any more: sent to a backend (its client follows the backend's
        URIs) and not asked about lately, or not asked about for ``abandon_after`` (the queue decides
        what happens to the query itself). Returns the forgotten ones."""
        now = time.monotonic() if now is None else now
        forget_before = now - self.abandon_after
        let_go_before = now - min(self.abandon_after, HANDED_OVER_KEPT_SECONDS)
        gone = [
            held
            for held in self._by_id.values()
            if held.last_seen < forget_before or (held.state == STARTED and held.last_seen < let_go_before)
        ]
        for held in gone:
            del self._by_id[held.id]
            if held.query is not None and held.query.holder is held:
                held.query.holder = None
        return gone


_sequence = itertools.count(1)
# Distinct per process: ids made by two workers (or nodes) in the same second never collide.
_SUFFIX = "gw" + secrets.token_hex(6)
# The mark of an id the gateway made (``waiting_query_id``): only such ids are looked up in the queue.
GATEWAY_ID_MARK = "_gw"
_second: list[Any] = [0, ""]  # the last second an id was made in, and its formatted prefix


def waiting_query_id(suffix: str = _SUFFIX) -> str:
    """A query id in Trino's form, for a query before any backend gave it one (the date is formatted
    once a second; ``suffix``: the coordinator id's place, unique to this process)."""
    now = int(time.time())
    if now != _second[0]:
        _second[0], _second[1] = now, f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y%m%d_%H%M%S}"
    return f"{_second[1]}_{next(_sequence) % 100000:05d}_{suffix}"
