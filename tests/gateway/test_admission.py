"""Admission control through real clients: queries wait in the gateway while their group's backends
are full, start when room appears, can be cancelled while they wait, and fail with Trino's errors
when the queue is full or they waited too long. The clusters count what they ran at once.

Every case runs on each store the queue can live in: a worker's memory, SQLite and PostgreSQL (one
algorithm over either state, ``gateway.queries.admission``). Several workers on SQLite, the default
deployment, share the queue as a fleet on PostgreSQL does (the last tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino

from gateway.queries.states import ADMITTED, QUEUED
from tests.conftest import connect
from tests.inprocess import InProcessGateway
from tests.postgres import PostgresServer
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import InProcessSim, LoopThread

SLOW = "sim_run_time=1.5s"


@pytest.fixture(scope="module")
def queue_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def admission_gateway(
    request: pytest.FixtureRequest, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[Callable[..., InProcessGateway]]:
    """Gateways whose queue is their worker's memory (the in-memory store), or the store's (SQLite,
    PostgreSQL)."""
    started: list[InProcessGateway] = []
    store = "memory://"
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path / 'gateway.db'}"
    elif request.param == "postgres":
        postgres = request.getfixturevalue("queue_postgres")
        postgres.reset()
        store = postgres.url()

    def start(config: dict[str, Any]) -> InProcessGateway:
        gateway = InProcessGateway(loop_thread, config, store).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def backends(*sims: InProcessSim, max_running: int | None = 1) -> list[dict[str, Any]]:
    return [{"name": sim.name, "proxy_to": sim.url, "max_running": max_running} for sim in sims]


def submit(gateway: InProcessGateway, sql: str, user: str = "alice", session: str | None = SLOW) -> dict[str, Any]:
    headers = {"X-Trino-User": user}
    if session:
        headers["X-Trino-Session"] = session
    answer = httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def follow(page: dict[str, Any], user: str = "alice") -> tuple[dict[str, Any], list[Any], list[str]]:
    """Poll a query to its end: its last page, its rows, and the states seen."""
    rows: list[Any] = []
    states = [page["stats"]["state"]]
    deadline = time.monotonic() + 60
    while "nextUri" in page:
        assert time.monotonic() < deadline, f"query {page['id']} did not end: {states[-5:]}"
        answer = httpx.get(page["nextUri"], headers={"X-Trino-User": user}, timeout=30)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        rows.extend(page.get("data") or [])
        states.append(page["stats"]["state"])
    return page, rows, states


def follow_in_background(page: dict[str, Any], user: str = "alice") -> Callable[[], list[Any]]:
    """A client polling ``page``'s query (a slot is released when its client reads the last page);
    returns a function that waits for its rows."""
    rows: list[Any] = []
    thread = threading.Thread(target=lambda: rows.extend(follow(page, user)[1]))
    thread.start()

    def result() -> list[Any]:
        thread.join(60)
        assert not thread.is_alive()
        return rows

    return result


def release_when_one_waits(gateway: InProcessGateway, blocker: dict[str, Any]) -> Callable[[], list[Any]]:
    """The blocker's client reads it to its end (freeing its slot) only once a query waits in the
    gateway: whatever a client takes to start (a JVM), its query finds the cluster full. The count is
    the store's as it stands: the queue's last tick (up to a second old on a shared store) may still
    count a query cancelled while it waited, and the blocker would go before the next one came."""
    rows: list[Any] = []

    def waiting() -> int:
        return gateway.loop.run(gateway.services.admission.queued_by_group_now()).get("adhoc", 0)

    def run() -> None:
        wait_until(lambda: waiting() >= 1, what="a query to wait", timeout=60)
        rows.extend(follow(blocker)[1])

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> list[Any]:
        thread.join(90)
        assert not thread.is_alive()
        return rows

    return result


def waiting_here(gateway: InProcessGateway) -> int:
    """How many queries wait in the gateway that this worker took (its own copies, as they stand)."""
    return sum(1 for held in gateway.services.admission.waiting if held.state == QUEUED)


def is_waiting_in_gateway(gateway: InProcessGateway, page: dict[str, Any]) -> bool:
    return page["stats"]["state"] == "QUEUED" and gateway.services.admission.waiting.get(page["id"]) is not None


def test_a_query_waits_in_the_gateway_while_its_cluster_is_full_and_then_runs_there(admission_gateway, make_sim):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    first = submit(gateway, "SELECT 1")
    assert not is_waiting_in_gateway(gateway, first)  # room: sent at once, as without admission
    first_rows = follow_in_background(first)

    second = submit(gateway, "SELECT 2")
    assert is_waiting_in_gateway(gateway, second)
    assert second["nextUri"].startswith(f"{gateway.url}/v1/statement/queued/{second['id']}/")
    assert sim.load()["submitted"] == 1  # the cluster has not seen the waiting query

    last, rows, states = follow(second)
    assert rows == [[2]] and last["stats"]["state"] == "FINISHED"
    assert states.count("QUEUED") >= 2  # polled in the gateway's queue, then the cluster's pages
    assert last["id"] != second["id"]  # the cluster's own id once it runs there
    assert first_rows() == [[1]]
    load = sim.load()
    assert load["peak_running"] == 1 and load["submitted"] == 2


def test_the_python_client_reads_queued_queries_on_two_full_clusters(admission_gateway, make_sim):
    sims = [make_sim(name="a"), make_sim(name="b")]
    gateway = admission_gateway({"backends": backends(*sims)})
    results: dict[int, Any] = {}

    def run(n: int) -> None:
        with connect(gateway.url, session_properties={"sim_run_time": "0.3s"}) as conn:
            cursor = conn.cursor()
            cursor.execute(f"SELECT {n}, 'x{n}'")
            results[n] = cursor.fetchall()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {n: [[n, f"x{n}"]] for n in range(6)}
    assert [sim.load()["peak_running"] for sim in sims] == [1, 1]
    assert sum(sim.load()["submitted"] for sim in sims) == 6


def test_a_query_cancelled_while_it_waits_never_reaches_a_cluster(admission_gateway, make_sim):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    # Its client reads it only after the cancels: the cluster stays full until then, however long
    # the Python client takes to start.
    blocker = submit(gateway, "SELECT 1")

    # Raw protocol: DELETE on the waiting query's nextUri.
    waiting = submit(gateway, "SELECT 2")
    assert httpx.delete(waiting["nextUri"], headers={"X-Trino-User": "alice"}).status_code == 204

    # The Python client's cancel, from another thread while execute() polls the gateway's queue.
    conn = connect(gateway.url, session_properties={"sim_run_time": "1.5s"})
    cursor = conn.cursor()
    outcome: list[Any] = []

    def execute() -> None:
        try:
            cursor.execute("SELECT 3")
            outcome.append(cursor.fetchall())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=execute)
    thread.start()
    wait_until(lambda: waiting_here(gateway) == 1, what="the client's query to wait")

    # A cancel before the client has read the query's first answer (its nextUri) does nothing, by the
    # client's own rule; the gateway counts the query as waiting before it sends that answer.
    wait_until(lambda: cursor.query_id, what="the client to read its waiting query's first answer")
    cursor.cancel()
    thread.join(30)
    assert not thread.is_alive()
    # (On SQLite and PostgreSQL the count is the store's, read each second.)
    wait_until(lambda: gateway.services.admission.queued("adhoc") == 0, what="the queue to be empty", timeout=10)

    assert follow(blocker)[1] == [[1]]
    # The freed slot would have gone to a waiting query at once (dispatch runs on release), were one left.
    assert [w.state for w in gateway.services.admission.waiting if w.state in (QUEUED, ADMITTED)] == []
    assert sim.load()["submitted"] == 1
    assert [q["query"] for q in sim.queries()] == ["SELECT 1"]


def test_the_queue_cluster_management_reads_is_counted_as_it_stands(admission_gateway, make_sim):
    # Cluster management weighs the queue against the store's fresh count of running queries: a count
    # from the last tick (up to a second old on SQLite and PostgreSQL) would still hold a query the
    # queue has just sent, counted once more as running, and start a cluster for nothing.
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    admission = gateway.services.admission
    blocker = submit(gateway, "SELECT 1")
    waiting = submit(gateway, "SELECT 2")
    assert gateway.loop.run(admission.queued_by_group_now()) == {"adhoc": 1}
    assert httpx.delete(waiting["nextUri"], headers={"X-Trino-User": "alice"}).status_code == 204
    assert gateway.loop.run(admission.queued_by_group_now()) == {}
    assert follow(blocker)[1] == [[1]]


def test_a_full_queue_fails_the_query_at_once_with_query_queue_full(admission_gateway, make_sim):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim), "routing": {"groups": {"adhoc": {"max_queued": 1}}}})
    submit(gateway, "SELECT 1")
    assert is_waiting_in_gateway(gateway, submit(gateway, "SELECT 2"))
    refused = submit(gateway, "SELECT 3")
    assert refused["stats"]["state"] == "FAILED" and "nextUri" not in refused
    assert refused["error"]["errorName"] == "QUERY_QUEUE_FULL"
    assert refused["error"]["errorType"] == "INSUFFICIENT_RESOURCES"
    assert refused["error"]["message"] == 'Too many queued queries for "adhoc"'

    with pytest.raises(trino.exceptions.TrinoQueryError) as raised, connect(gateway.url) as conn:
        conn.cursor().execute("SELECT 4")
    assert raised.value.error_name == "QUERY_QUEUE_FULL"


def test_a_query_that_waits_too_long_fails_with_exceeded_time_limit(admission_gateway, make_sim):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim), "routing": {"groups": {"adhoc": {"max_queue_wait": 0.3}}}})
    submit(gateway, "SELECT 1", session="sim_run_time=5s")
    with pytest.raises(trino.exceptions.TrinoQueryError) as raised, connect(gateway.url) as conn:
        conn.cursor().execute("SELECT 2")
    assert raised.value.error_name == "EXCEEDED_TIME_LIMIT"
    assert raised.value.message == "Query exceeded maximum queued time limit of 300.00ms"
    assert sim.load()["submitted"] == 1


def test_a_rule_limits_a_user_who_waits_while_others_start_at_once(admission_gateway, make_sim, tmp_path):
    sim = make_sim(name="roomy")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        '---\nname: dashboards\npriority: 1\ncondition: \'request.getHeader("X-Trino-User") == "dash"\'\n'
        "actions:\n  - 'result.put(\"maxRunning\", 1)'\n"
    )
    gateway = admission_gateway(
        {
            "backends": backends(sim, max_running=None),
            "routing_rules": {"enabled": True, "type": "FILE", "rules_file": str(rules)},
        }
    )
    first = submit(gateway, "SELECT 1", user="dash")
    second = submit(gateway, "SELECT 2", user="dash")
    other = submit(gateway, "SELECT 3", user="bob")
    assert not is_waiting_in_gateway(gateway, first)
    assert is_waiting_in_gateway(gateway, second)
    assert not is_waiting_in_gateway(gateway, other)
    first_rows = follow_in_background(first, "dash")
    assert follow(second, "dash")[1] == [[2]]
    assert follow(other, "bob")[1] == [[3]] and first_rows() == [[1]]


def test_a_waiting_query_answers_only_its_own_uris(admission_gateway, make_sim):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    blocker = follow_in_background(submit(gateway, "SELECT 1"))
    waiting = submit(gateway, "SELECT 2")
    next_uri = waiting["nextUri"]
    prefix, slug, token = next_uri.rsplit("/", 2)
    headers = {"X-Trino-User": "alice"}
    forged = f"{prefix}/{'0' * len(slug)}/{token}"
    assert httpx.get(forged, headers=headers).status_code == 404
    assert httpx.delete(forged, headers=headers).status_code == 404
    # A page's slug is made from its token (as Trino's): a client cannot skip ahead with the one it had.
    assert httpx.get(f"{prefix}/{slug}/{int(token) + 5}", headers=headers).status_code == 404
    # The same page asked twice (a client's retry) is answered the same, and the query goes on.
    again = httpx.get(next_uri, headers=headers, timeout=30).json()
    assert httpx.get(next_uri, headers=headers, timeout=30).json()["nextUri"] == again["nextUri"]
    assert follow(again)[1] == [[2]] and blocker() == [[1]]
    assert sim.load()["submitted"] == 2


@pytest.mark.slow
def test_the_trino_cli_runs_a_query_that_waited_in_the_gateway(admission_gateway, make_sim, trino_cli):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    blocker = release_when_one_waits(gateway, submit(gateway, "SELECT 1", session=None))
    result = trino_cli(gateway.url, "SELECT 42, 'waited'", "--output-format", "CSV")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '"42","waited"'
    assert blocker() == [[1]]  # it was released because the CLI's query waited
    assert sim.load()["peak_running"] == 1


@pytest.mark.slow
def test_the_javascript_client_reads_a_queued_query_and_cancels_one_while_it_waits(
    admission_gateway, make_sim, trino_js
):
    sim = make_sim(name="solo")
    gateway = admission_gateway({"backends": backends(sim)})
    blocker = submit(gateway, "SELECT 1", session=None)  # holds the slot until its client reads it

    cancelled = trino_js(gateway.url, "SELECT 'never'", "--cancel-at-once")
    assert cancelled["cancelled"] and cancelled["states"] == ["QUEUED", "FAILED"], cancelled
    assert cancelled["error"]["errorName"] == "USER_CANCELED"
    assert gateway.services.admission.waiting.get(cancelled["ids"][0]).state == "CANCELED"

    blocker = release_when_one_waits(gateway, blocker)
    seen = trino_js(gateway.url, "SELECT 42, 'waited'")
    assert seen["error"] is None and seen["rows"] == [[42, "waited"]]
    assert seen["ids"][0] != seen["ids"][-1]  # the gateway's id while it waited, then the cluster's
    assert blocker() == [[1]]
    assert [q["query"] for q in sim.queries()] == ["SELECT 1", "SELECT 42, 'waited'"]
    assert sim.load()["peak_running"] == 1


# -- several workers on SQLite ------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_on_sqlite_share_the_queue_and_never_overfill_a_cluster(sim_factory):
    """The default store with ``server.workers: 2``: both workers admit against the same slots, so 12
    queries of 1.5 s through two clusters of ``max_running: 2`` all succeed, and neither cluster ever
    runs more than 2 at once (counted by the clusters)."""
    from trinosim.gateway_process import GatewayProcess

    sims = [sim_factory(name="a"), sim_factory(name="b")]
    config = {"backends": backends(*sims, max_running=2), "server": {"workers": 2}}
    with GatewayProcess(config=config, workers=2) as gateway:
        results: dict[int, Any] = {}

        def run(n: int) -> None:
            try:
                with connect(gateway.url, session_properties={"sim_run_time": "1.5s"}) as conn:
                    cursor = conn.cursor()
                    cursor.execute(f"SELECT {n}")
                    results[n] = cursor.fetchall()
            except Exception as error:  # shown in the assertion below
                results[n] = error

        threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert results == {n: [[n]] for n in range(12)}
        assert [sim.load()["peak_running"] for sim in sims] == [2, 2]
        assert sum(sim.load()["submitted"] for sim in sims) == 12


@pytest.mark.slow
def test_two_workers_on_sqlite_fail_a_read_only_query_over_when_its_cluster_is_killed(sim_factory):
    """Failover with several workers on SQLite: a read-only query whose cluster is SIGKILLed before its
    first row returns its rows from the other cluster."""
    from trinosim.gateway_process import GatewayProcess

    sims = [sim_factory(name="a"), sim_factory(name="b")]
    config = {"backends": backends(*sims, max_running=2), "server": {"workers": 2}}
    with (
        GatewayProcess(config=config, workers=2) as gateway,
        connect(gateway.url, session_properties={"sim_run_time": "3s"}) as conn,
    ):
        cursor = conn.cursor()
        outcome: list[Any] = []

        def execute() -> None:
            try:
                cursor.execute("SELECT 7, 'seven'")
                outcome.append(cursor.fetchall())
            except Exception as error:
                outcome.append(error)

        thread = threading.Thread(target=execute)
        thread.start()
        wait_until(lambda: sum(sim.load()["submitted"] for sim in sims) == 1, what="the query to reach a cluster")
        victim = next(sim for sim in sims if sim.load()["submitted"] == 1)
        victim.kill()
        thread.join(60)
        assert outcome == [[[7, "seven"]]]
        survivor = next(sim for sim in sims if sim is not victim)
        assert [q["query"] for q in survivor.queries()] == ["SELECT 7, 'seven'"]
