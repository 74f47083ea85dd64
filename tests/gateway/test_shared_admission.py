"""Admission control shared by a fleet on PostgreSQL: every node admits against the same running
counts (checked at the cluster), a query waiting in the gateway is answered by whichever node its
client's poll reaches, its turn comes fairly whichever node took it, and the queue outlives the
restart of the node that held it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.test_admission import backends, follow, follow_in_background, submit
from tests.inprocess import InProcessGateway
from tests.observability.test_metrics import scrape, total
from tests.postgres import PostgresServer
from tests.trinosim.helpers import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def via(node: InProcessGateway | Any, page: dict[str, Any]) -> dict[str, Any]:
    """``page`` with its ``nextUri`` pointing at ``node``: the client's next poll reaches that node (as
    through a load balancer)."""
    base = page["nextUri"].split("/v1/", 1)[0]
    return {**page, "nextUri": page["nextUri"].replace(base, node.url, 1)}


def poll_once(page: dict[str, Any], user: str = "alice") -> dict[str, Any]:
    answer = httpx.get(page["nextUri"], headers={"X-Trino-User": user}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def waiting_rows(postgres: PostgresServer) -> dict[str, str]:
    """The queue's table: each waiting query's state."""
    out = postgres.sql("SELECT query_id || ' ' || state FROM gateway_waiting_query")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def test_two_nodes_count_the_same_slots_and_either_answers_a_waiting_querys_polls(loop_thread, make_sim, postgres):
    sim = make_sim(name="solo")
    config = {"backends": backends(sim, max_running=1)}
    with (
        InProcessGateway(loop_thread, config, postgres.url()) as a,
        InProcessGateway(loop_thread, config, postgres.url()) as b,
    ):
        blocker = submit(a, "SELECT 1", user="carol")
        # Node B has run nothing itself, yet solo is full: the count is the fleet's.
        waiting = submit(b, "SELECT 2", user="dave")
        assert waiting["stats"]["state"] == "QUEUED" and "/v1/statement/queued/" in waiting["nextUri"]
        assert sim.load()["submitted"] == 1
        # Its polls alternate between the nodes: each finds it (B took it, A never saw it before).
        page = poll_once(via(a, waiting), "dave")
        assert page["id"] == waiting["id"] and page["stats"]["state"] == "QUEUED"
        page = poll_once(via(b, page), "dave")
        assert page["id"] == waiting["id"] and sim.load()["submitted"] == 1

        blocker_rows = follow_in_background(via(b, blocker), "carol")  # it ends on B, not where it began
        last, rows, _ = follow(via(a, page), "dave")
        assert rows == [[2]] and last["stats"]["state"] == "FINISHED" and blocker_rows() == [[1]]
        assert sim.load()["peak_running"] == 1
        assert waiting_rows(postgres)[waiting["id"]] == "STARTED"


def test_a_burst_through_three_nodes_never_runs_more_than_max_running_and_takes_turns_by_user(
    loop_thread, make_sim, postgres
):
    sim = make_sim(name="solo")
    config = {"backends": backends(sim, max_running=2)}
    with (
        InProcessGateway(loop_thread, config, postgres.url()) as a,
        InProcessGateway(loop_thread, config, postgres.url()) as b,
        InProcessGateway(loop_thread, config, postgres.url()) as c,
    ):
        nodes = [a, b, c]
        sim.load(reset=True)
        # alice's burst of 9 comes first, then bob's 3, each spread over the nodes.
        pages = [(submit(nodes[i % 3], f"SELECT {i}", user="alice"), "alice") for i in range(9)]
        pages += [(submit(nodes[i % 3], f"SELECT {100 + i}", user="bob"), "bob") for i in range(3)]
        assert sum("_gw" in page["id"] for page, _ in pages) == 10  # the gateway's ids: they wait in it
        results = [follow_in_background(via(nodes[(i + 1) % 3], page), user) for i, (page, user) in enumerate(pages)]
        assert sorted(row[0][0] for row in (result() for result in results)) == [*range(9), *range(100, 103)]
        assert sim.load()["peak_running"] == 2
        order = [q["session"]["user"] for q in sim.queries()]  # in the order they came
        assert order[:2] == ["alice", "alice"]  # room for two: sent at once
        # Then turns: bob's three did not wait behind alice's burst but were among the next six the
        # fleet admitted. (The order of the decisions, as the queue's table has it: the cluster sees an
        # admitted query only once its client's next poll reaches a node, which on a loaded machine
        # can reorder queries admitted a second apart.)
        admitted = postgres.sql(
            "SELECT user_name FROM gateway_waiting_query ORDER BY enqueued_at + queued_ms, query_id"
        ).split()
        assert len(admitted) == 10 and admitted[:6].count("bob") == 3, admitted


def test_the_queue_survives_a_restart_of_the_node_that_held_it(make_sim, postgres):
    from trinosim.gateway_process import GatewayProcess

    sim = make_sim(name="solo")
    config = {"backends": backends(sim, max_running=1), "routing": {"groups": {"adhoc": {"max_queue_wait": 300}}}}
    with GatewayProcess(store=postgres.url(), config=config) as gateway:
        blocker = submit(gateway, "SELECT 1", user="carol")
        first = submit(gateway, "SELECT 2", user="dave")
        second = submit(gateway, "SELECT 3", user="erin")
        assert first["stats"]["state"] == second["stats"]["state"] == "QUEUED"
        first = poll_once(first, "dave")  # a poll answered before the restart: the next token
        assert first["stats"]["state"] == "QUEUED"

        gateway.kill()  # SIGKILL: nothing written on the way out
        gateway.restart()
        # The restarted node knows nothing in memory: every answer below comes from the store.
        with httpx.Client(timeout=30) as client:
            cancelled = client.delete(second["nextUri"], headers={"X-Trino-User": "erin"})
        assert cancelled.status_code == 204
        blocker_rows = follow_in_background(blocker, "carol")
        last, rows, states = follow(first, "dave")
        assert rows == [[2]] and last["stats"]["state"] == "FINISHED" and blocker_rows() == [[1]]
        assert "QUEUED" in states
        # The cancelled one never reached the cluster; the restarted node's history has the queued one.
        assert sorted(q["query"] for q in sim.queries()) == ["SELECT 1", "SELECT 2"]
        rows_now = waiting_rows(postgres)
        assert (rows_now[first["id"]], rows_now[second["id"]]) == ("STARTED", "CANCELED")
        wait_until(lambda: gateway.queries(id=first["id"])["queries"], timeout=15, what="its history row")
        record = gateway.queries(id=first["id"])["queries"][0]
        assert record["gatewayQueryId"] == first["id"] and record["queuedMs"] > 0


def test_a_query_whose_sending_node_stopped_is_sent_again_only_if_read_only(loop_thread, make_sim, postgres):
    """A node claims an admitted query (SENDING) to send it on its client's poll, and dies before it
    answers: the client's retry reaches another node. A read-only query is sent again (running it
    twice does no harm); any other may have run, and fails with a clear error."""
    sim = make_sim(name="solo")
    config = {"backends": backends(sim, max_running=1)}
    with (
        InProcessGateway(loop_thread, config, postgres.url()) as a,
        InProcessGateway(loop_thread, config, postgres.url()) as b,
    ):
        blocker = submit(a, "SELECT 1", user="carol")
        read_only = submit(a, "SELECT 2", user="dave")
        writing = submit(a, "CREATE TABLE memory.default.t AS SELECT 3 AS x", user="dave")
        follow(blocker, "carol")
        for page, outcome in ((read_only, "FINISHED"), (writing, "FAILED")):
            wait_until(lambda p=page: waiting_rows(postgres)[p["id"]] == "ADMITTED", timeout=15, what="its turn")
            # As if node A had claimed it and died before sending it on.
            postgres.sql(f"UPDATE gateway_waiting_query SET state = 'SENDING' WHERE query_id = '{page['id']}'")
            last, rows, _ = follow(via(b, page), "dave")
            assert last["stats"]["state"] == outcome, last
        assert rows == [] and "stopped before it answered" in last["error"]["message"]
        assert [q["query"] for q in sim.queries()] == ["SELECT 1", "SELECT 2"]


def watch(seconds: float) -> Iterator[None]:
    """Yields every 0.2 s for the given time (for readings that must hold, not just appear)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
        time.sleep(0.2)


def queued_metric(gateway: Any, user: str) -> float:
    return total(scrape(gateway.url), "trino_gateway_queued_queries", user=user)


def test_the_workers_of_a_node_share_the_queue_and_report_it_once(make_sim, postgres):
    """Two workers of one node on PostgreSQL: each admits against the store's counts, and /metrics
    (one figure for the node, whichever worker answers the scrape) shows the queue once, not once per
    worker."""
    from trinosim.gateway_process import GatewayProcess

    sim = make_sim(name="solo")
    config = {"backends": backends(sim, max_running=1)}
    with GatewayProcess(store=postgres.url(), config=config, workers=2) as gateway:
        blocker = submit(gateway, "SELECT 1", user="carol")
        waiting = [submit(gateway, f"SELECT {n}", user="dave") for n in (2, 3)]
        assert all("_gw" in page["id"] for page in waiting), waiting
        wait_until(lambda: queued_metric(gateway, "dave") == 2, timeout=15, what="the queue in /metrics")
        # Each worker reads the store's counts and then sets its gauges once a second: two seconds on,
        # both show the two waiting, and a sum over workers would read 4.
        time.sleep(2.5)
        readings = [queued_metric(gateway, "dave") for _ in watch(seconds=3)]
        assert set(readings) == {2}, readings
        results = [follow_in_background(page, "dave") for page in waiting]
        assert follow(blocker, "carol")[1] == [[1]]
        assert sorted(result()[0][0] for result in results) == [2, 3]
        assert sim.load()["peak_running"] == 1
        wait_until(lambda: queued_metric(gateway, "dave") == 0, timeout=15, what="an empty queue")
