"""Scenario 14: a burst. Two clusters in routing group ``adhoc``, each with ``max_running: 4`` in the
gateway's config. One user sends 200 queries at once, then four others 25 each (their submissions
begin once the gateway has answered all 200, and take well under a second): 300 clients polling
their queries to the end, each query running 0.1-0.15 s (``sim_run_time``; 300 queries for 8 slots
keep the queue full whatever the run time, and a short one keeps the scenario short) and
answering ``SELECT n`` with ``n``. Run once with ``queue_policy: fair`` (the default) and once with
``fifo``, each through a gateway of its own in front of the same clusters.

What it proves: no cluster ran more than 4 queries at once (``peak_running`` of ``/_sim/load``, reset
before each run); no query was lost (all 300 FINISHED, each with its own row, each run once at a
cluster); with the fair queue, the users took turns while all of them had queries waiting: Jain's
index over the five users' shares of the queries started in that time is at least 0.9 (1: equal
shares; 0.2: one user got them all, which is what fifo gives, and is checked to be lower).

The clients speak the protocol over raw HTTP, one keep-alive connection each: the answer to each
submission is timed (it starts the window below), and 300 of them in one process stay light (one
httpx client shared by the threads cost this process most of a core and once failed a poll with
EBADF).

When a query started: when its cluster took it, i.e. the time trinosim recorded for its ``POST
/v1/statement`` (``/_sim/queries``, each query's first request). That is where the limit applies and
the peak is counted, it is to the microsecond, and it is on the same clock as the clients' (the
clusters run on this machine, in containers too). The gateway's query history
(``GET /gateway/queries``) has the same moment, but in milliseconds (dozens of starts a second tie)
and written to the store later, in batches; its metrics count starts but do not order them. A query
admitted by the gateway is sent to its cluster by its client's poll, which is held in the gateway
while the query waits: the cluster's time is the admission's plus a few milliseconds (two queries
admitted a moment apart may reach their clusters the other way round: fifo's index is at times 0.202,
a light user's first query a hair before the heavy user's last).

"While all users had queries waiting": from the moment the gateway had answered the first submission
of the last user to submit one, until the first user had no query left waiting (the start of that
user's last query).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chaos.clusters import Cluster
from chaos.conftest import ClusterFactory, GatewayFactory
from chaos.load_balancer import Haproxy
from chaos.report import SUMMARY, summarise
from chaos.workload import FAILED, LOST, SUCCEEDED, QueryOutcome
from trinosim.gateway_process import GatewayProcess

MAX_RUNNING = 4
HEAVY_USER, HEAVY_QUERIES = "burst-user", 200
LIGHT_USERS, LIGHT_QUERIES = ("light-1", "light-2", "light-3", "light-4"), 25
RUN_TIME = (0.1, 0.15)  # seconds, drawn per query
QUERY_BOUND = 120.0  # seconds a query may take to end, waiting included, before it counts as lost
FAIR_INDEX = 0.9


class Burst:
    """The 300 queries of one run through ``gateway``: each in its own thread, polled to its end with
    raw HTTP on a keep-alive connection of its own, as a Trino client does (the answer to the
    submission is timed, to the microsecond)."""

    def __init__(self, gateway: GatewayProcess | Haproxy, first: int, seed: int) -> None:
        self.address = urlsplit(gateway.url).netloc
        self.began = time.time()
        self.records: list[QueryOutcome] = []
        self.first_ids: dict[int, str] = {}  # the id of its first page: the gateway's while it waits
        self._random = random.Random(seed)
        self._next = first
        self._answered = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def run(self) -> list[QueryOutcome]:
        """The heavy user's 200 first; the light users' once each of those had its answer, one
        query of each user in turn."""
        self._submit([HEAVY_USER] * HEAVY_QUERIES)
        for _ in range(HEAVY_QUERIES):
            self._answered.acquire(timeout=QUERY_BOUND)
        self._submit([user for _ in range(LIGHT_QUERIES) for user in LIGHT_USERS])
        deadline = time.monotonic() + QUERY_BOUND
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for record in self.records:
            if record.outcome is None:
                record.outcome, record.error = LOST, f"no end within {QUERY_BOUND:g}s"
        return self.records

    def now(self) -> float:
        return time.time() - self.began

    def _submit(self, users: Iterable[str]) -> None:
        for user in users:
            record = QueryOutcome(self._next, user, "adhoc", "burst", f"SELECT {self._next}", self.now(), QUERY_BOUND)
            self._next += 1
            self.records.append(record)
            run_time = self._random.uniform(*RUN_TIME)
            thread = threading.Thread(target=self._execute, args=(record, run_time), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _execute(self, record: QueryOutcome, run_time: float) -> None:
        headers = {
            "X-Trino-User": record.user,
            "X-Trino-Source": "chaos-burst",
            "X-Trino-Session": f"sim_run_time={run_time:.3f}s",
        }
        rows: list[list[object]] = []
        connection = http.client.HTTPConnection(self.address, timeout=30)
        try:
            try:
                page = _page(connection, "POST", "/v1/statement", headers, record.sql.encode())
                record.submitted = self.now()
                self.first_ids[record.seq] = page["id"]
            finally:
                self._answered.release()
            while "nextUri" in page:
                uri = urlsplit(page["nextUri"])
                path = f"{uri.path}?{uri.query}" if uri.query else uri.path
                page = _page(connection, "GET", path, {"X-Trino-User": record.user})
                rows.extend(page.get("data") or [])
            record.query_id, state, error = page["id"], page["stats"]["state"], page.get("error")
            if error or state != "FINISHED":
                record.outcome, record.error = FAILED, f"{state}: {(error or {}).get('message')}"
                record.error_type = (error or {}).get("errorName")
            else:
                record.outcome, record.rows = SUCCEEDED, rows
        except Exception as error:
            record.outcome, record.error, record.error_type = FAILED, str(error), type(error).__name__
        finally:
            connection.close()
        record.ended = self.now()

    def cluster_starts(self, clusters: list[Cluster]) -> dict[int, list[float]]:
        """Query number -> when a cluster took it (seconds since the run began), one entry per time
        a cluster took it."""
        numbers = {record.sql: record.seq for record in self.records}
        starts: dict[int, list[float]] = {}
        for cluster in clusters:
            for query in cluster.queries():
                if query["query"] in numbers and query["requests"]:
                    taken = query["requests"][0]["time"] - self.began
                    starts.setdefault(numbers[query["query"]], []).append(taken)
        return starts


def _page(
    connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> dict[str, Any]:
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    content = answer.read()
    if answer.status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {answer.status}: {content[:200]!r}")
    return json.loads(content)


def jain(counts: Iterable[int]) -> float:
    """Jain's fairness index: 1 when every count is the same, 1/n when one of n has them all."""
    counts = list(counts)
    squares = sum(c * c for c in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else float("nan")


def backlogged_starts(records: list[QueryOutcome], started: dict[int, float]) -> dict[str, int]:
    """Each user's starts from the moment the last user's first query was in the gateway until the
    first user had no query left waiting."""
    users = sorted({record.user for record in records})
    mine = {user: [record for record in records if record.user == user] for user in users}
    window_start = max(min(r.submitted for r in mine[user]) for user in users)
    window_end = min(max(started[r.seq] for r in mine[user]) for user in users)
    return {user: sum(window_start <= started[r.seq] <= window_end for r in mine[user]) for user in users}


@dataclass
class Run:
    """One policy's burst, and what the clusters saw of it."""

    policy: str
    records: list[QueryOutcome]
    seconds: float  # from the first submission until every query had ended
    peaks: dict[str, int]  # cluster -> the most queries it ran at once
    starts: dict[int, list[float]]  # query number -> when a cluster took it, each time one did
    waited: int  # queries whose first page was the gateway's own (they waited in its queue)
    submitted_in: tuple[float, float]  # seconds the heavy user's submissions took; then the others'

    @property
    def shares(self) -> dict[str, int]:
        """Each user's starts while every user had queries waiting ({} if a query never started)."""
        if len(self.starts) != len(self.records):
            return {}
        return backlogged_starts(self.records, {n: min(times) for n, times in self.starts.items()})

    @property
    def jain(self) -> float:
        return jain(self.shares.values()) if self.shares else float("nan")

    def summary(self) -> str:
        heavy, light = self.submitted_in
        return (
            f"Jain's index {self.jain:.3f} over the starts while all 5 users waited {self.shares}; "
            f"peak running {self.peaks} (max_running {MAX_RUNNING}); {self.waited} waited in the gateway; "
            f"submissions answered in {heavy:.2f} s ({HEAVY_USER}), then {light:.2f} s (the others); "
            f"all ended in {self.seconds:.1f} s"
        )


def run_burst(
    policy: str,
    gateway: GatewayProcess | Haproxy,
    clusters: list[Cluster],
    first: int,
    during: Callable[[Burst], None] | None = None,
) -> Run:
    """``during(burst)``: a fault, run in a thread of its own while the burst runs."""
    for cluster in clusters:
        cluster.load(reset=True)
    burst = Burst(gateway, first=first, seed=first)
    fault = None if during is None else threading.Thread(target=during, args=(burst,), daemon=True)
    if fault is not None:
        fault.start()
    records = burst.run()
    if fault is not None:
        fault.join(QUERY_BOUND)
    heavy, light = records[:HEAVY_QUERIES], records[HEAVY_QUERIES:]
    return Run(
        policy,
        records,
        seconds=max(r.ended or 0.0 for r in records) - min(r.submitted for r in records),
        peaks={cluster.name: cluster.load()["peak_running"] for cluster in clusters},
        starts=burst.cluster_starts(clusters),
        waited=sum(burst.first_ids.get(r.seq) not in (None, r.query_id) for r in records),
        submitted_in=(
            max(r.submitted for r in heavy) - min(r.submitted for r in heavy),
            max(r.submitted for r in light) - max(r.submitted for r in heavy),
        ),
    )


def test_14_in_a_burst_every_user_takes_turns_and_no_cluster_runs_more_than_its_limit(
    kind: str, cluster_factory: ClusterFactory, gateway_factory: GatewayFactory
) -> None:
    with ThreadPoolExecutor(2) as pool:
        clusters = list(pool.map(lambda name: cluster_factory(kind, name), ["trino-1", "trino-2"]))
    backends = [(c.name, c.url, "adhoc", MAX_RUNNING) for c in clusters]
    # A gateway per policy, started together; the bursts run one after the other on the same clusters.
    policies = ("fair", "fifo")
    with ThreadPoolExecutor(2) as pool:
        gateways = list(
            pool.map(
                lambda policy: gateway_factory(backends, routing={"groups": {"adhoc": {"queue_policy": policy}}}),
                policies,
            )
        )
    runs: dict[str, Run] = {}
    for number, (policy, gateway) in enumerate(zip(policies, gateways, strict=True)):
        run = runs[policy] = run_burst(policy, gateway, clusters, first=1000 * number + 1)
        SUMMARY.add(summarise(f"14 burst, {policy} queue", kind, run.records, notes=run.summary()))
        print(f"scenario 14 ({kind}, {policy}): {run.summary()}")
    fair, fifo = runs["fair"], runs["fifo"]
    print(f"scenario 14 ({kind}): Jain's index fair {fair.jain:.3f}, fifo {fifo.jain:.3f}")

    for run in runs.values():
        records = run.records
        assert [r for r in records if r.outcome != SUCCEEDED] == [], run.policy
        assert [r for r in records if r.rows != [[r.seq]]] == [], run.policy
        # Each ran once, at one cluster, and no cluster ever ran more than its limit.
        assert {n: times for n, times in run.starts.items() if len(times) != 1} == {}, run.policy
        assert sorted(run.starts) == [r.seq for r in records], run.policy
        assert all(peak <= MAX_RUNNING for peak in run.peaks.values()), (run.policy, run.peaks)
        # The gateway did hold the burst back: most queries waited in its queue.
        assert run.waited > len(records) // 2, (run.policy, run.waited)
    # The fair share is measured over a real backlog (about 25 turns each), not a handful of starts.
    assert sum(fair.shares.values()) >= 50, fair.shares
    assert fair.jain >= FAIR_INDEX, fair.shares
    # First come, first served: the heavy user's 200 went before anyone else's.
    assert fifo.jain < fair.jain, (fifo.shares, fair.shares)
