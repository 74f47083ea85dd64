"""Queries and the query manager: ids, the resource group that caps running queries, the
life of a query from QUEUED to FINISHED or FAILED, and the clean-up of forgotten ones."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import random
import secrets
import string
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import duckdb

from trinosim import engine
from trinosim.config import SimConfig
from trinosim.engine import Outcome
from trinosim.errors import TrinoError, canceled
from trinosim.session import Session
from trinosim.spooling import SegmentStore
from trinosim.statements import Planner, is_explain
from trinosim.transactions import TransactionManager

_RECORDED_HEADERS = (
    "traceparent",
    "tracestate",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "Via",
    "X-Trino-Routing-Group",
)
_MAX_REQUEST_RECORDS = 2000


@dataclass
class CachedResponse:
    token: int
    body: bytes
    headers: list[tuple[str, str]]


class Query:
    def __init__(self, query_id: str, sql: str, session: Session, headers: dict[str, str]) -> None:
        self.id = query_id
        self.sql = sql
        self.session = session
        self.slug_key = secrets.token_bytes(16)  # its URIs' slugs are keyed with it (protocol.slug)
        self.created = time.monotonic()
        self.created_wall = dt.datetime.now(dt.UTC)
        self.started: float | None = None
        self.ended: float | None = None
        self.last_access = self.created
        self.state = "QUEUED"  # QUEUED -> RUNNING -> FINISHED | FAILED
        self.dispatched = False
        self.in_transaction = False  # counted as a running statement of its transaction
        self.encoding: str | None = None  # the spooling protocol's encoding; None: rows inline as JSON
        self.error: TrinoError | None = None
        self.outcome: Outcome | None = None
        self.rows_delivered = 0
        self.bytes_delivered = 0
        self.cpu_seconds = 0.0
        self.queued_cache: CachedResponse | None = None
        self.executing_cache: CachedResponse | None = None
        self.task: asyncio.Task[None] | None = None
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.page_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        # What the query's requests carried, for tests of proxies and tracing.
        self.received_headers = headers
        self.requests: list[dict[str, Any]] = []

    # -- state -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state in ("FINISHED", "FAILED")

    @property
    def reported_state(self) -> str:
        return self.state

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    def record_request(self, method: str, phase: str, token: int | None, headers: dict[str, str]) -> None:
        self.last_access = time.monotonic()
        if len(self.requests) < _MAX_REQUEST_RECORDS:
            self.requests.append(
                {"method": method, "phase": phase, "token": token, "headers": headers, "time": time.time()}
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "queryId": self.id,
            "state": self.state,
            "query": self.sql,
            "session": self.session.to_json(),
            "error": self.error.to_json() if self.error else None,
            "receivedHeaders": self.received_headers,
            "requests": self.requests,
        }


def recorded_headers(headers: Any) -> dict[str, str]:
    recorded = {name: headers[name] for name in _RECORDED_HEADERS if name in headers}
    if "Authorization" in headers:
        # Credentials are never recorded, only a digest: enough to see they arrived unchanged.
        recorded["Authorization-SHA256"] = hashlib.sha256(headers["Authorization"].encode()).hexdigest()
    return recorded


class QueryManager:
    """Every query of one simulated cluster."""

    def __init__(self, db: duckdb.DuckDBPyConnection, config: SimConfig) -> None:
        self.db = db
        self.config = config
        self.queries: dict[str, Query] = {}
        self.running: set[str] = set()
        self.peak_running = 0  # the most queries that ran at once
        self.queue: deque[Query] = deque()
        self.started_at = time.monotonic()
        self.starting_until = self.started_at + config.faults.starting_seconds
        self._sequence = 0
        self._coordinator_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        self.counters = {"submitted": 0, "started": 0, "completed": 0, "failed": 0, "canceled": 0, "abandoned": 0}
        # EXPLAIN statements received (EXPLAIN ANALYZE not among them): what a planner in front is asked.
        self.counters["explained"] = 0
        self.transactions = TransactionManager(config.transaction_idle_timeout)
        self.segments = SegmentStore(config.spooling_ttl)

    @property
    def starting(self) -> bool:
        return time.monotonic() < self.starting_until

    def set_starting(self, seconds: float) -> None:
        self.starting_until = time.monotonic() + seconds

    # -- creation and lookup ----------------------------------------------------------------
    def new_id(self) -> str:
        now = dt.datetime.now(dt.UTC)
        self._sequence = (self._sequence + 1) % 100000
        return f"{now:%Y%m%d_%H%M%S}_{self._sequence:05d}_{self._coordinator_id}"

    def create(self, sql: str, session: Session, headers: dict[str, str]) -> Query:
        query = Query(self.new_id(), sql, session, headers)
        self.queries[query.id] = query
        self.counters["submitted"] += 1
        if is_explain(sql):
            self.counters["explained"] += 1
        return query

    def get(self, query_id: str) -> Query | None:
        return self.queries.get(query_id)

    def queued(self) -> list[Query]:
        return [q for q in self.queries.values() if q.state == "QUEUED"]

    def running_queries(self) -> list[Query]:
        return [q for q in self.queries.values() if q.state == "RUNNING"]

    # -- the resource group -----------------------------------------------------------------
    def dispatch(self, query: Query) -> None:
        """Admit ``query`` to the resource group (Trino does this on the first poll)."""
        if query.dispatched or query.done:
            return
        query.dispatched = True
        if self.starting:
            self._fail(query, TrinoError("SERVER_STARTING_UP", "Trino server is still initializing"))
        elif len(self.running) < self.config.max_running:
            self._start(query)
        elif len(self.queue) >= self.config.max_queued:
            self._fail(query, TrinoError("QUERY_QUEUE_FULL", 'Too many queued queries for "global"'))
        else:
            self.queue.append(query)

    def _start(self, query: Query) -> None:
        self._loop = asyncio.get_running_loop()
        self.running.add(query.id)
        self.peak_running = max(self.peak_running, len(self.running))
        self.counters["started"] += 1
        query.state = "RUNNING"
        query.started = time.monotonic()
        query.cursor = self.db.cursor()
        query.task = asyncio.get_running_loop().create_task(self._execute(query), name=f"query {query.id}")
        query.notify()

    def _release(self, query: Query) -> None:
        self._leave_transaction(query)
        self.running.discard(query.id)
        with contextlib.suppress(ValueError):
            self.queue.remove(query)
        cursor, query.cursor = query.cursor, None
        if cursor is not None:
            with contextlib.suppress(duckdb.Error):
                cursor.interrupt()
            # Close in a thread: a cursor busy in another thread must finish its call first.
            asyncio.get_running_loop().run_in_executor(None, _close_quietly, cursor)
        while self.queue and len(self.running) < self.config.max_running:
            self._start(self.queue.popleft())

    # -- execution --------------------------------------------------------------------------
    async def _execute(self, query: Query) -> None:
        try:
            if self.config.faults.workers == 0:
                raise TrinoError("NO_NODES_AVAILABLE", "No nodes available to run query")
            transaction_id = query.session.transaction_id
            if transaction_id:
                self.transactions.enter(transaction_id, query.id)
                query.in_transaction = True
            run_time = query.session.run_time or self.config.default_run_time
            if run_time:
                await asyncio.sleep(run_time)
            cursor = query.cursor
            assert cursor is not None
            began = time.process_time()
            outcome = await asyncio.to_thread(self._plan_and_run, query, cursor)
            query.cpu_seconds += time.process_time() - began
            if query.done:  # canceled while DuckDB was busy
                return
            query.outcome = outcome
            query.notify()
        except asyncio.CancelledError:
            raise
        except TrinoError as error:
            self._fail(query, error)
        except Exception as exc:  # a bug in trinosim must still reach the client as a Trino error
            self._fail(query, TrinoError("GENERIC_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))

    def _plan_and_run(self, query: Query, cursor: duckdb.DuckDBPyConnection) -> Outcome:
        plan = Planner(cursor, query.session, self.transactions, tasks=self.config.faults.workers).plan(query.sql)
        if plan.kill_query_id is not None:
            self._kill_from_sql(plan.kill_query_id, plan.kill_message)
        return engine.execute(plan, cursor, query.session)

    def _kill_from_sql(self, query_id: str, message: str | None) -> None:
        target = self.queries.get(query_id)
        if target is None:
            raise TrinoError("NOT_FOUND", f"Target query not found: {query_id}")
        error = TrinoError("USER_CANCELED", f"Query killed. Message: {message}" if message else "Query killed")
        # Called from the worker thread: hand the state change to the event loop.
        self._loop.call_soon_threadsafe(self._fail, target, error)

    async def next_rows(self, query: Query) -> list[list[Any]]:
        """The next page of rows; [] means the result is exhausted and the query FINISHED."""
        assert query.outcome is not None
        cursor = query.cursor
        if cursor is None:
            return []
        began = time.process_time()
        try:
            rows = await asyncio.to_thread(query.outcome.fetch, self.config.page_rows)
        except TrinoError as error:
            self._fail(query, error)
            return []
        query.cpu_seconds += time.process_time() - began
        if not rows and not query.done:
            self.finish(query)
        return rows

    def finish(self, query: Query) -> None:
        query.state = "FINISHED"
        query.ended = time.monotonic()
        self.counters["completed"] += 1
        self._release(query)
        query.notify()

    def _leave_transaction(self, query: Query) -> None:
        if query.in_transaction and query.session.transaction_id:
            query.in_transaction = False
            self.transactions.leave(query.session.transaction_id)

    def _fail(self, query: Query, error: TrinoError) -> None:
        if query.done:
            return
        query.error = error
        query.state = "FAILED"
        query.ended = time.monotonic()
        self.counters["canceled" if error.name == "USER_CANCELED" else "failed"] += 1
        if error.name == "ABANDONED_QUERY":
            self.counters["abandoned"] += 1
        if query.task is not None and query.task is not asyncio.current_task():
            query.task.cancel()
        self._release(query)
        query.notify()

    def cancel(self, query: Query) -> None:
        """Cancel ``query``; a no-op once it is done, as in Trino."""
        self._fail(query, canceled())

    # -- housekeeping -----------------------------------------------------------------------
    async def reap_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reap()

    def reap(self) -> None:
        self.transactions.expire()
        self.segments.expire()
        now = time.monotonic()
        for query in list(self.queries.values()):
            if not query.done and now - query.last_access > self.config.client_timeout:
                self._fail(
                    query,
                    TrinoError(
                        "ABANDONED_QUERY",
                        f"Query {query.id} was abandoned by the client, as it may have exited or stopped "
                        f"checking for query results. Query results have not been accessed since "
                        f"{self.config.client_timeout:.0f}s",
                    ),
                )
            elif query.done and query.ended is not None and now - query.ended > self.config.purge_after:
                del self.queries[query.id]

    def shutdown(self) -> None:
        for query in list(self.queries.values()):
            if not query.done:
                self._fail(query, TrinoError("GENERIC_INTERNAL_ERROR", "Server is shutting down"))


def _close_quietly(cursor: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        cursor.close()
