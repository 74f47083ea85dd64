"""Users running queries through the gateway with the real ``trino`` client, recorded query by query.

The seed's story: BI analysts run short interactive queries, data scientists a mix, data engineers
long ETL-style queries in their own routing group; every statement is a SELECT (read-only: the
gateway may fail it over). ``read_only_users`` adds exporters reading long results, in many pages
on a cluster started with a small ``page_rows``. Each user is a thread running one query after
another; each query runs in its own daemon thread so that one that never answers is recorded as
*lost* once its bound has passed, and the user goes on.

Every query ends in exactly one outcome: ``succeeded``, ``failed`` (with the client's error) or
``lost`` (no answer within its bound).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trino
import trino.constants
from trino.transaction import IsolationLevel

SUCCEEDED, FAILED, LOST = "succeeded", "failed", "lost"

# The client retries connection errors (and 502/503/504) with jittered exponential backoff
# (0.1 s * 2^attempt * random). Its default, 3 attempts, is what users get; a gateway restart of a
# few seconds needs more (scenario 7 uses RESTART_MAX_ATTEMPTS).
RESTART_MAX_ATTEMPTS = 12
CLIENT_REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class QueryKind:
    name: str
    sql: tuple[str, ...]
    run_time: tuple[float, float]  # trinosim's sim_run_time, seconds, drawn uniformly
    bound: float  # seconds after submission by which the query must have an answer
    # More than 0: a transaction of this many statements (drawn from ``sql``) and a COMMIT, recorded
    # as one outcome: it succeeds only if every statement and the COMMIT do.
    transaction_statements: int = 0


INTERACTIVE = QueryKind(
    "interactive",
    (
        "SELECT count(*) FROM tpch.tiny.nation",
        "SELECT name FROM tpch.tiny.region ORDER BY name",
        "SELECT n.name, count(*) FROM tpch.tiny.customer c JOIN tpch.tiny.nation n "
        "ON c.nationkey = n.nationkey GROUP BY n.name ORDER BY 2 DESC LIMIT 3",
    ),
    (0.05, 0.3),
    bound=30.0,
)
ETL = QueryKind(
    "etl",
    (
        "SELECT orderpriority, count(*) FROM tpch.tiny.orders GROUP BY orderpriority",
        "SELECT returnflag, sum(quantity) FROM tpch.tiny.lineitem GROUP BY returnflag",
    ),
    (2.0, 3.5),
    bound=45.0,
)


# 15,000 rows: many pages, read for a while after the first rows came.
EXPORT = QueryKind(
    "export",
    ("SELECT orderkey, custkey, orderstatus, totalprice FROM tpch.tiny.orders",),
    (0.2, 0.6),
    bound=45.0,
)


TRANSACTION = QueryKind(
    "transaction",
    ("SELECT count(*) FROM tpch.tiny.nation", "SELECT name FROM tpch.tiny.region ORDER BY name"),
    (0.05, 0.4),
    bound=45.0,
    transaction_statements=3,
)


@dataclass(frozen=True)
class User:
    name: str
    group: str | None  # X-Trino-Routing-Group; None: the gateway's default group
    kinds: tuple[QueryKind, ...]  # drawn at random for each query
    think_time: float = 0.05


def seed_users(adhoc: str = "adhoc", etl: str | None = "etl") -> list[User]:
    """Two BI analysts, a data scientist and (when ``etl`` is a group) a data engineer."""
    users = [
        User("bi-analyst-1", adhoc, (INTERACTIVE,)),
        User("bi-analyst-2", adhoc, (INTERACTIVE,)),
        User("data-scientist", adhoc, (INTERACTIVE, ETL)),
    ]
    if etl is not None:
        users.append(User("data-engineer", etl, (ETL,), think_time=0.2))
    return users


def read_only_users(group: str | None = "adhoc", heavy: int = 3) -> list[User]:
    """A BI analyst, ``heavy`` data scientists (their long queries keep a cluster busy for seconds
    before any row) and ``heavy`` exporters copying tables out (one long result after another)."""
    scientists = [User(f"data-scientist-{i + 1}", group, (INTERACTIVE, ETL)) for i in range(heavy)]
    exporters = [User(f"exporter-{i + 1}", group, (EXPORT,)) for i in range(heavy)]
    return [User("bi-analyst-1", group, (INTERACTIVE,)), *scientists, *exporters]


def transactional_users(count: int = 2, group: str | None = "adhoc") -> list[User]:
    """Users of a BI tool or dbt that wraps its statements in transactions."""
    return [User(f"transactional-{i + 1}", group, (TRANSACTION,), think_time=0.1) for i in range(count)]


@dataclass
class QueryOutcome:
    seq: int
    user: str
    group: str | None
    kind: str
    sql: str
    submitted: float  # seconds since the workload began
    bound: float
    ended: float | None = None
    outcome: str | None = None  # None while running
    error: str | None = None
    error_type: str | None = None
    query_id: str | None = None
    rows: list[Any] | None = None
    # When the first rows (or the whole result) reached the client; None: no row did before its end.
    rows_at: float | None = None
    transaction_statements: int = 0
    transaction_id: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None


@dataclass
class Workload:
    """``with Workload(url, seed_users()) as load: ...``: users run queries until the block ends;
    leaving it waits (each query at most its bound) until every query has an outcome."""

    gateway_url: str
    users: Iterable[User]
    max_attempts: int = trino.constants.DEFAULT_MAX_ATTEMPTS
    request_timeout: float = CLIENT_REQUEST_TIMEOUT
    seed: int = 7
    records: list[QueryOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.users = list(self.users)
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._random = random.Random(self.seed)
        self.marks: dict[str, float] = {}

    def now(self) -> float:
        return time.monotonic() - self._t0

    def mark(self, event: str) -> float:
        """Remember when something happened (a fault, a repair), on the workload's clock."""
        self.marks[event] = at = self.now()
        return at

    # -- running --------------------------------------------------------------------------------
    def start(self) -> Workload:
        self._t0 = time.monotonic()
        for user in self.users:
            thread = threading.Thread(target=self._user_loop, args=(user,), name=f"user {user.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[QueryOutcome]:
        """No new queries; wait for the running ones, each until its bound."""
        self._stop.set()
        longest = max((k.bound for u in self.users for k in u.kinds), default=0)
        for thread in self._threads:
            thread.join(longest + 10)
        return self.records

    def _user_loop(self, user: User) -> None:
        while not self._stop.is_set():
            with self._lock:
                kind = self._random.choice(user.kinds)
            self._run(user, kind)
            self._stop.wait(user.think_time)

    def _run(self, user: User, kind: QueryKind) -> QueryOutcome:
        with self._lock:
            sql = self._random.choice(kind.sql)
            run_time = self._random.uniform(*kind.run_time)
            record = QueryOutcome(next(self._seq), user.name, user.group, kind.name, sql, self.now(), kind.bound)
            record.transaction_statements = kind.transaction_statements
            self.records.append(record)
        runner = threading.Thread(
            target=self._execute, args=(record, user, run_time), name=f"query {record.seq}", daemon=True
        )
        runner.start()
        runner.join(kind.bound)
        with self._lock:
            if record.outcome is None:
                record.outcome, record.ended = LOST, self.now()
                record.error = f"no answer within {kind.bound:g}s"
        return record

    def _execute(self, record: QueryOutcome, user: User, run_time: float) -> None:
        if record.transaction_statements:
            self._execute_transaction(record, user, run_time)
            return
        host, port = self.gateway_url.removeprefix("http://").rsplit(":", 1)
        headers = {"X-Trino-Routing-Group": user.group} if user.group else None
        outcome: tuple[str, str | None, str | None, list[Any] | None]
        try:
            with trino.dbapi.connect(
                host=host,
                port=int(port),
                user=user.name,
                source="chaos-workload",
                http_headers=headers,
                session_properties={"sim_run_time": f"{run_time:.3f}s"},
                max_attempts=self.max_attempts,
                request_timeout=self.request_timeout,
            ) as connection:
                cursor = connection.cursor()
                try:
                    # The client's execute returns once the first rows (or the end) came.
                    cursor.execute(record.sql)
                    record.query_id, record.rows_at = cursor.query_id, self.now()
                    rows = cursor.fetchall()
                finally:
                    record.query_id = cursor.query_id
            outcome = (SUCCEEDED, None, None, rows)
        except Exception as error:
            record.query_id = record.query_id or getattr(error, "query_id", None)
            outcome = (FAILED, f"{error}", type(error).__name__, None)
        with self._lock:
            if record.outcome is None:  # not yet declared lost
                record.outcome, record.error, record.error_type, record.rows = outcome
                record.ended = self.now()

    def _execute_transaction(self, record: QueryOutcome, user: User, run_time: float) -> None:
        host, port = self.gateway_url.removeprefix("http://").rsplit(":", 1)
        headers = {"X-Trino-Routing-Group": user.group} if user.group else None
        outcome: tuple[str, str | None, str | None, list[Any] | None]
        try:
            connection = trino.dbapi.connect(
                host=host,
                port=int(port),
                user=user.name,
                source="chaos-workload",
                http_headers=headers,
                session_properties={"sim_run_time": f"{run_time:.3f}s"},
                max_attempts=self.max_attempts,
                request_timeout=self.request_timeout,
                isolation_level=IsolationLevel.READ_COMMITTED,
            )
            rows = []
            try:
                cursor = connection.cursor()
                for _ in range(record.transaction_statements):
                    cursor.execute(record.sql)
                    if record.rows_at is None:
                        record.rows_at = self.now()
                    rows.append(cursor.fetchall())
                    record.query_id = cursor.query_id
                record.transaction_id = connection.transaction.id if connection.transaction else None
                connection.commit()
            finally:
                connection.close()
            outcome = (SUCCEEDED, None, None, rows)
        except Exception as error:
            record.query_id = record.query_id or getattr(error, "query_id", None)
            outcome = (FAILED, f"{error}", type(error).__name__, None)
        with self._lock:
            if record.outcome is None:
                record.outcome, record.error, record.error_type, record.rows = outcome
                record.ended = self.now()

    # -- reading the records ----------------------------------------------------------------------
    def completed(self, where: Callable[[QueryOutcome], bool] = lambda r: True) -> list[QueryOutcome]:
        with self._lock:
            return [r for r in self.records if r.done and where(r)]

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g}s for {what}")
            time.sleep(0.05)

    def wait_completed(self, count: int, where: Callable[[QueryOutcome], bool] = lambda r: True, timeout=60.0) -> None:
        self.wait_for(f"{count} completed queries", lambda: len(self.completed(where)) >= count, timeout)

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
