"""``python -m bench.admission``: what admission control and failover's held queries cost.

Two gateways in front of one trinosim, measured in one run: failover on (the default: a read-only
query is held until its first rows: the worker that sent it answers its polls, free to send it
elsewhere; the client sees the backend's URIs either way) and ``failover: {enabled:
false}`` (every poll follows the backend's own, rewritten, URIs: the pass-through of before). Both
1 worker on SQLite, no ``max_running``: no query waits, every query is "not queued".

1. Poll round trip: clients (1 and 32 at a time) run ``SELECT * FROM tpch.tiny.nation`` to its end
   over keep-alive connections, timing every request. trinosim answers the 1st poll at once (RUNNING,
   no rows) and the 2nd with the rows once the query ran; with failover on both are held (answered
   by the gateway's record of the query), the 3rd (the last page) is pass-through on both gateways. Rounds alternate the
   gateways (ABBA); the samples of all rounds are pooled. Also each gateway's CPU time per query
   (its processes' user + system time, from /proc), the figure least disturbed by a busy machine.
2. End to end: the same SELECT through the trino Python client, per query, one client and 8 clients
   at once, each alternating the two gateways query by query; medians, p99s and the ratio held /
   pass-through, against the requirement "queries that are not queued must not get slower than
   today by more than 5 %".
3. The admission decision, in process, over each state the one algorithm runs on (``memory``, and
   the SQL store on ``sqlite`` and on ``postgres``, a local PostgreSQL started for it): ``admit`` of a
   new query (with room it takes a slot; with every backend full it joins the queue), a freed slot's
   dispatch (one pick, under the group's lock) and the once-a-second dispatch that also ends overdue
   queries, with nothing waiting and with 10,000 waiting across 5 and 1,000 users (fair; fifo too in
   memory): per call, wall and CPU time, store round trips included.

Figures are printed and written to ``bench/results/admission-<time>.json``; never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import trino

from bench.__main__ import machine, save_report
from bench.scenarios import rss_bytes, with_children
from gateway.backends.health import HealthChecker
from gateway.config import AdmissionConfig, GroupConfig, HealthConfig, RoutingConfig
from gateway.queries.admission import Admission, Admitted, MemoryQueueState, QueueState, SqlQueueState
from gateway.queries.held import WaitingQueries
from gateway.queries.states import CANCELED
from gateway.queries.submission import Submission
from gateway.routing.decider import RouteDecider
from gateway.store import SqlStore, now_ms
from gateway.store.backend import Backend
from gateway.store.schema import admission_slots, fair_turns, waiting_queries
from gateway.upstream.pool import UpstreamPool
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess

SQL = "SELECT * FROM tpch.tiny.nation"
ROWS = 25
HELD, PASS_THROUGH = "failover on (held)", "failover off (pass-through)"
# Requests of a query by their place: the submission, the polls before the first rows (held with
# failover on), and the polls after them (the backend's own URIs on both gateways).
STEPS = ("submit", "poll 1", "poll 2", "poll 3+")


def percentiles(values: list[float]) -> dict[str, Any]:
    """Median and p99 of ``values`` (milliseconds or microseconds, as given)."""
    p99 = statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]
    return {"count": len(values), "median": round(statistics.median(values), 4), "p99": round(p99, 4)}


def _ratio(held: dict[str, Any], passed: dict[str, Any]) -> dict[str, float]:
    return {stat: round(held[stat] / passed[stat], 3) for stat in ("median", "p99")}


# -- 1. polls through the gateway, held and pass-through ----------------------------------------
async def _client(pool: UpstreamPool, url: str, stop_at: float, steps: dict[str, list[float]]) -> None:
    """Runs ``SQL`` to its end, again and again until ``stop_at``, timing each request (ms)."""
    headers = [(b"x-trino-user", b"bench")]
    body = SQL.encode()
    while time.perf_counter() < stop_at:
        began = time.perf_counter()
        answer = await pool.request(url, "POST", "/v1/statement", headers, body)
        steps["submit"].append((time.perf_counter() - began) * 1000)
        page = orjson.loads(answer.body)
        position = rows = 0
        while "nextUri" in page:
            position += 1
            uri = page["nextUri"]
            sent = time.perf_counter()
            answer = await pool.request(url, "GET", "/" + uri.split("/", 3)[3], headers)
            steps[STEPS[min(position, 3)]].append((time.perf_counter() - sent) * 1000)
            if answer.status != 200:
                raise RuntimeError(f"{url}: HTTP {answer.status} to a poll: {answer.body[:200]!r}")
            page = orjson.loads(answer.body)
            rows += len(page.get("data") or [])
        steps["query"].append((time.perf_counter() - began) * 1000)
        if page["stats"]["state"] != "FINISHED" or rows != ROWS:
            raise RuntimeError(f"{url}: query ended {page['stats']['state']} with {rows} rows: {page.get('error')}")


async def _load(url: str, clients: int, seconds: float, steps: dict[str, list[float]]) -> None:
    pool = UpstreamPool(connect_timeout=5.0, read_timeout=30.0)
    try:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_client(pool, url, stop_at, steps) for _ in range(clients)))
    finally:
        pool.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its children (the server's workers), from /proc."""
    total = 0
    for one in with_children(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def poll_round_trips(
    targets: dict[str, str], pids: dict[str, int], concurrency: list[int], seconds: float, rounds: int
) -> dict[str, Any]:
    """Per request of a query, its round trip through each gateway, ``concurrency`` clients at a time;
    and the CPU time each gateway's processes spent per query."""
    for url in targets.values():
        asyncio.run(_load(url, 4, 0.5, {step: [] for step in (*STEPS, "query")}))  # warm up
    out: dict[str, Any] = {}
    for clients in concurrency:
        samples = {name: {step: [] for step in (*STEPS, "query")} for name in targets}
        queries_per_round: dict[str, list[int]] = {name: [] for name in targets}
        cpu = dict.fromkeys(targets, 0.0)
        order = list(targets)
        for round_number in range(rounds):
            for name in order if round_number % 4 in (0, 3) else order[::-1]:
                before, cpu_before = len(samples[name]["query"]), cpu_seconds(pids[name])
                asyncio.run(_load(targets[name], clients, seconds, samples[name]))
                queries_per_round[name].append(len(samples[name]["query"]) - before)
                cpu[name] += cpu_seconds(pids[name]) - cpu_before
        cell: dict[str, Any] = {}
        for name in targets:
            by_step = samples[name]
            cell[name] = {
                "steps_ms": {step: percentiles(by_step[step]) for step in (*STEPS, "query")},
                # Polls 1 and 2, the ones the gateway answers for a held query.
                "before_rows_ms": percentiles(by_step["poll 1"] + by_step["poll 2"]),
                "queries_per_second": round(sum(queries_per_round[name]) / (seconds * rounds), 1),
                "gateway_cpu_ms_per_query": round(cpu[name] * 1000 / max(1, sum(queries_per_round[name])), 3),
                "queries_each_round": queries_per_round[name],
            }
        on, off = cell[HELD], cell[PASS_THROUGH]
        pairs = {"before_rows_ms": (on["before_rows_ms"], off["before_rows_ms"])}
        pairs |= {step: (on["steps_ms"][step], off["steps_ms"][step]) for step in (*STEPS, "query")}
        cell["ratio_held_pass_through"] = {key: _ratio(*pair) for key, pair in pairs.items()}
        out[str(clients)] = cell
    return out


# -- 2. end to end, with the trino Python client -------------------------------------------------
def _query(url: str) -> float:
    """One ``SQL`` with the trino client, to its last row: seconds."""
    host, port = url.removeprefix("http://").split(":")
    connection = trino.dbapi.connect(host=host, port=int(port), user="bench")
    began = time.perf_counter()
    cursor = connection.cursor()
    cursor.execute(SQL)
    rows = cursor.fetchall()
    elapsed = time.perf_counter() - began
    if len(rows) != ROWS:
        raise RuntimeError(f"{url} returned {len(rows)} rows, not {ROWS}")
    return elapsed


def end_to_end(targets: dict[str, str], sequential: int, concurrent: int, concurrency: int) -> dict[str, Any]:
    """Per-query wall time (ms) through each gateway, the gateways alternating query by query (ABBA,
    so that neither always runs right after the other): one client, ``sequential`` queries on each;
    then ``concurrency`` clients at once, each alternating, starting on different gateways (about half
    of them on each at any moment), ``concurrent`` queries on each. Alternating by query, not by
    round, puts both gateways under the same moment's load on a shared machine."""
    names = list(targets)
    for url in targets.values():
        for _ in range(10):
            _query(url)  # warm up

    def client(pairs: int, offset: int) -> list[tuple[str, float]]:
        times = []
        for i in range(pairs):
            for name in names if (i + offset) % 4 in (0, 3) else names[::-1]:
                times.append((name, _query(targets[name]) * 1000))
        return times

    samples = {"1": client(sequential, 0)}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pairs = max(1, concurrent // concurrency)
        parts = pool.map(lambda offset: client(pairs, offset), range(concurrency))
        samples[str(concurrency)] = [sample for part in parts for sample in part]
    out: dict[str, Any] = {}
    for clients, measured in samples.items():
        cell: dict[str, Any] = {name: percentiles([ms for n, ms in measured if n == name]) for name in names}
        cell["ratio_held_pass_through"] = _ratio(cell[HELD], cell[PASS_THROUGH])
        out[clients] = cell
    return out


# -- 3. and 4. the admission decision, in process -----------------------------------------------
BACKENDS, MAX_RUNNING, GROUP = 3, 4, "adhoc"


def _decider() -> tuple[list[Backend], list[Backend], RouteDecider]:
    """3 healthy backends of max_running 4, and the route decider over them."""
    backends = [
        Backend(name=f"b{i}", proxy_to=f"http://127.0.0.1:{9000 + i}", routing_group=GROUP, max_running=MAX_RUNNING)
        for i in range(BACKENDS)
    ]
    health = HealthChecker(None, None, HealthConfig(monitor="NOOP"))  # type: ignore[arg-type]
    for backend in backends:
        health.of(backend.name).succeeded(None)
    decider = RouteDecider(RoutingConfig(), health, lambda name: 0)
    return backends, decider.decide(backends, GROUP).ranked, decider


def _admission(state: QueueState, policy: str) -> Admission:
    """An Admission as gateway.node.services builds it, over ``state``."""
    backends, _, decider = _decider()
    settings = AdmissionConfig()
    groups = {GROUP: GroupConfig(queue_policy=policy)}
    admission = Admission(settings, groups, decider, state, WaitingQueries(settings.abandon_after), False)  # type: ignore[arg-type]
    admission.refresh(backends)
    return admission


def _submission(user: str) -> Submission:
    return Submission(SQL.encode(), user, "bench", None, None, GROUP, "default", None, b"", failover=True)


async def _timed(
    calls: int, before: Callable[[], Any], call: Callable[[Any], Any], after: Callable[[Any, Any], Any]
) -> dict:
    """Per-call microseconds of ``await call(before())``, with ``await after(prepared, result)`` outside
    the timing: wall time (``median``, ``p99``) and the thread's CPU time (``cpu_median``, ``cpu_p99``; on
    a busy machine a wall p99 is mostly the time another process had the core)."""
    wall: list[float] = []
    cpu: list[float] = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for n in range(calls + calls // 10):
        prepared = before()
        cpu_began = cpu_clock()
        began = clock()
        result = await call(prepared)
        elapsed = clock() - began
        cpu_elapsed = cpu_clock() - cpu_began
        await after(prepared, result)
        if n >= calls // 10:  # the first tenth warms up
            wall.append(elapsed / 1000)
            cpu.append(cpu_elapsed / 1000)
    on_cpu = percentiles(cpu)
    return {**percentiles(wall), "cpu_median": on_cpu["median"], "cpu_p99": on_cpu["p99"]}


async def _nothing(*_: Any) -> None:
    return None


def admission_decision(stores: list[str], waiting: int, users: list[int], calls: dict[str, int]) -> dict[str, Any]:
    """The one algorithm over each state (``memory``, ``sqlite``, ``postgres``): ``admit`` of a new
    query, a freed slot's dispatch (one pick) and the once-a-second dispatch with housekeeping, with
    nothing waiting and with ``waiting`` queries over each number of ``users`` (fair queue; fifo for the
    largest, in memory)."""
    out: dict[str, Any] = {}
    for store in stores:
        if store == "postgres":
            from tests.postgres import PostgresServer

            with PostgresServer() as postgres:
                out[store] = asyncio.run(_decisions(postgres.url(), waiting, users, calls[store]))
        elif store == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                out[store] = asyncio.run(_decisions(f"sqlite:///{directory}/bench.db", waiting, users, calls[store]))
        else:
            out[store] = asyncio.run(_decisions(None, waiting, users, calls[store]))
    return out


async def _decisions(url: str | None, waiting: int, users: list[int], calls: int) -> dict[str, Any]:
    cases: list[tuple[str, int, int, str]] = [("nothing waiting", 0, 1, "fair")]
    cases += [(f"{waiting:,} waiting, {count:,} users", waiting, count, "fair") for count in users]
    if url is None:
        cases.append((f"{waiting:,} waiting, {users[-1]:,} users, fifo", waiting, users[-1], "fifo"))
    store = None if url is None else await SqlStore.open(url)
    try:
        out = {}
        for label, queued, parties, policy in cases:
            if store is not None:
                async with store.engine.begin() as connection:
                    for table in (waiting_queries, admission_slots, fair_turns):
                        await connection.execute(sa.delete(table))
            state: QueueState = MemoryQueueState() if store is None else SqlQueueState(store.engine)
            gc.collect()
            out[label] = await _decision_case(_admission(state, policy), queued, parties, calls)
        return out
    finally:
        if store is not None:
            await store.close()


async def _decision_case(admission: Admission, queued: int, parties: int, calls: int) -> dict[str, Any]:
    backends, ranked, decider = _decider()
    full = queued > 0
    if full:
        # Queries wait only while every backend is full; with nothing waiting, backends have room.
        for backend in backends:
            for _ in range(MAX_RUNNING):
                await admission.claim_slot(backend, "runner")
        for n in range(queued):
            await admission.admit(ranked, _submission(f"user-{n % parties}"))
    row: dict[str, Any] = {"waiting": queued, "users": parties}

    async def decide(_: None) -> Any:
        return decider.decide(backends, GROUP)

    row["decide_us"] = await _timed(calls, lambda: None, decide, _nothing)
    newcomers = itertools.count()

    async def admit(submission: Submission) -> Any:
        return await admission.admit(ranked, submission)

    async def undo(_: Any, outcome: Any) -> None:
        # The new query leaves as it came (untimed), so that every call meets the same queue.
        if isinstance(outcome, Admitted):
            if full:
                raise RuntimeError(f"admit gave {len(outcome.backends)} backends with {queued} waiting")
            assert outcome.slot is not None
            await admission.state.release(slot_id=outcome.slot.slot_id)
        else:
            await admission.state.update(outcome.id, state=CANCELED)
            admission.waiting.forget(outcome)

    row["admit_us"] = await _timed(calls, lambda: _submission(f"user-{next(newcomers) % parties}"), admit, undo)
    if full:
        row["dispatch_us"] = await _dispatches(admission, parties, calls, housekeeping=False)
        row["dispatch_with_housekeeping_us"] = await _dispatches(admission, parties, max(10, calls // 10), True)
    queued_now, running = await admission.state.counts(now_ms())
    row["waiting_after"] = sum(queued_now.values())
    row["running_after"] = running
    return row


async def _dispatches(admission: Admission, parties: int, calls: int, housekeeping: bool) -> dict[str, Any]:
    """A running query ends: its slot is freed (untimed) and a dispatch starts one waiting query in its
    place; a new query joins (untimed) to keep the count."""
    _, ranked, _ = _decider()
    newcomers = itertools.count()

    async def free_one() -> int:
        counts = await admission.state.counts(now_ms())
        before = sum(counts[1].values())
        await _release_any(admission)
        return before

    async def dispatch(_: Any) -> None:
        await admission._dispatch_group(GROUP, now_ms(), housekeeping)

    async def refill(before: Any, _: Any) -> None:
        after = sum((await admission.state.counts(now_ms()))[1].values())
        if after != before:
            raise RuntimeError(f"a freed slot admitted {after - before + 1} queries")
        await admission.admit(ranked, _submission(f"user-{next(newcomers) % parties}"))

    wall: list[float] = []
    cpu: list[float] = []
    for n in range(calls + calls // 10):
        count_before = await free_one()
        cpu_began, began = time.thread_time_ns(), time.perf_counter_ns()
        await dispatch(None)
        elapsed, cpu_elapsed = time.perf_counter_ns() - began, time.thread_time_ns() - cpu_began
        await refill(count_before, None)
        if n >= calls // 10:
            wall.append(elapsed / 1000)
            cpu.append(cpu_elapsed / 1000)
    on_cpu = percentiles(cpu)
    return {**percentiles(wall), "cpu_median": on_cpu["median"], "cpu_p99": on_cpu["p99"]}


async def _release_any(admission: Admission) -> None:
    state = admission.state
    if isinstance(state, MemoryQueueState):
        await state.release(slot_id=next(iter(state.slots)))
        return
    assert isinstance(state, SqlQueueState)
    async with state.engine.begin() as connection:
        slot_id = await connection.scalar(sa.select(admission_slots.c.slot_id).limit(1))
    await state.release(slot_id=slot_id)


# -- the run -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one round of the poll measurement")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per gateway and concurrency (gateways alternate)")
    parser.add_argument("--queries", type=int, default=400, help="end to end: queries per gateway, one client")
    parser.add_argument(
        "--concurrent-queries", type=int, default=400, help="end to end: queries per gateway, 8 clients"
    )
    parser.add_argument("--waiting", type=int, default=10_000, help="queries waiting for the admission figures")
    parser.add_argument("--calls", type=int, default=5_000, help="timed calls per admission figure, in memory")
    parser.add_argument("--sql-calls", type=int, default=300, help="timed calls per admission figure, SQL stores")
    parser.add_argument("--stores", default="memory,sqlite,postgres", help="the states the decision is timed on")
    parser.add_argument("--only", default="poll,e2e,decision")
    args = parser.parse_args()
    only = set(args.only.split(","))
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sql": SQL,
        "gateway_workers": 1,
        "store": "sqlite",
        "load_average_before": os.getloadavg(),
    }
    if only & {"poll", "e2e"}:
        backend = TrinoSimProcess(name="bench-backend", max_running=100000).start()
        backends = [{"name": "b1", "proxy_to": backend.url}]
        gateways = {
            HELD: GatewayProcess(config={"backends": backends}, extra_args=["--log-level", "WARNING"]),
            PASS_THROUGH: GatewayProcess(
                config={"backends": backends, "failover": {"enabled": False}}, extra_args=["--log-level", "WARNING"]
            ),
        }
        try:
            for gateway in gateways.values():
                gateway.start()
            targets = {name: gateway.url for name, gateway in gateways.items()}
            if "poll" in only:
                pids = {name: gateway.process.pid for name, gateway in gateways.items()}  # type: ignore[union-attr]
                report["poll_round_trip"] = poll_round_trips(targets, pids, [1, 32], args.seconds, args.rounds)
            if "e2e" in only:
                report["end_to_end"] = end_to_end(targets, args.queries, args.concurrent_queries, 8)
            # A held query is remembered (its last page too) until admission.abandon_after after its
            # client's last poll; a pass-through one only in the query book.
            report["gateway_rss_mb_after"] = {
                name: round(rss_bytes(gateway.process.pid) / 2**20, 1)  # type: ignore[union-attr]
                for name, gateway in gateways.items()
            }
        finally:
            for gateway in gateways.values():
                gateway.stop()
            backend.stop()
    if "decision" in only:
        stores = args.stores.split(",")
        calls = {store: args.calls if store == "memory" else args.sql_calls for store in stores}
        report["admission_decision"] = admission_decision(stores, args.waiting, [5, 1000], calls)
    report["load_average_after"] = os.getloadavg()
    print_report(report)
    save_report("admission", report)


def _ms(cell: dict[str, Any]) -> str:
    return f"{cell['median']:>7.2f} {cell['p99']:>7.2f}"


def _us(cell: dict[str, Any]) -> str:
    return f"{cell['median']:.1f} / {cell['p99']:.1f} ({cell['cpu_p99']:.1f})"


def print_report(report: dict[str, Any]) -> None:
    load = ", ".join(f"{value:.1f}" for value in report["load_average_before"])
    print(f"\nmachine: {report['machine']}; load average before: {load}")
    print(f"gateways: 1 worker, SQLite, no max_running; {report['sql']}")
    polls = report.get("poll_round_trip")
    if polls:
        print("\n1. round trip of each request through the gateway, ms (median, p99; all rounds pooled)")
        print(
            f"{'clients':>7} {'request':<24} | {'held':>7} {'p99':>7} | {'pass':>7} {'p99':>7} | "
            f"{'ratio':>6} {'p99':>6}"
        )
        for clients, cell in polls.items():
            on, off, ratio = cell[HELD], cell[PASS_THROUGH], cell["ratio_held_pass_through"]
            rows = [("polls 1-2 (before rows)", "before_rows_ms", on["before_rows_ms"], off["before_rows_ms"])]
            rows += [(step, step, on["steps_ms"][step], off["steps_ms"][step]) for step in (*STEPS, "query")]
            for title, key, held, passed in rows:
                name = {"query": "whole query (raw HTTP)"}.get(title, title)
                print(
                    f"{clients:>7} {name:<24} | {_ms(held)} | {_ms(passed)} | "
                    f"{ratio[key]['median']:>6.3f} {ratio[key]['p99']:>6.3f}"
                )
            print(
                f"{'':>7} queries/s: held {on['queries_per_second']}, pass-through {off['queries_per_second']}; "
                f"gateway CPU per query: held {on['gateway_cpu_ms_per_query']:.2f} ms, pass-through "
                f"{off['gateway_cpu_ms_per_query']:.2f} ms"
            )
    e2e = report.get("end_to_end")
    if e2e:
        print(
            "\n2. end to end: one SELECT with the trino Python client, ms per query (median, p99); "
            "each client alternates the gateways query by query"
        )
        for clients, cell in e2e.items():
            on, off, ratio = cell[HELD], cell[PASS_THROUGH], cell["ratio_held_pass_through"]
            within = "within" if ratio["median"] <= 1.05 else "NOT within"
            print(
                f"  {clients} client(s): held {on['median']:.2f} (p99 {on['p99']:.2f}, {on['count']} queries), "
                f"pass-through {off['median']:.2f} (p99 {off['p99']:.2f}); ratio median {ratio['median']:.3f}, "
                f"p99 {ratio['p99']:.3f}: {within} 5 % at the median"
            )
    rss = report.get("gateway_rss_mb_after")
    if rss:
        print("  gateway RSS after the run: " + ", ".join(f"{name} {mb} MB" for name, mb in rss.items()))
    decisions = report.get("admission_decision")
    for store, decision in (decisions or {}).items():
        print(f"\n3. admission decision on {store}, µs per call: median / p99 (p99 of CPU time in brackets)")
        columns = {
            "admit_us": "admit",
            "dispatch_us": "dispatch (1 pick)",
            "dispatch_with_housekeeping_us": "dispatch + housekeeping",
            "decide_us": "decide (routing)",
        }
        print(f"{'':<34} " + " ".join(f"{title:>26}" for title in columns.values()))
        for label, row in decision.items():
            cells = [_us(row[key]) if key in row else "-" for key in columns]
            print(f"{label:<34} " + " ".join(f"{cell:>26}" for cell in cells))


if __name__ == "__main__":
    main()
