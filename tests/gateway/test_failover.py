"""Transparent failover: a read-only query whose cluster fails before any row reached the client is
sent to another cluster of its group, and the client, polling the gateway's own URIs, reads the
result as if nothing happened. After the first rows, or for a statement that changes something, a
failure fails the query as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.queries.read_only import is_read_only
from gateway.routing.rules.query_properties import analyse
from tests.conftest import connect
from tests.gateway.test_admission import follow, submit
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import InProcessSim, LoopThread


@pytest.fixture
def pair(loop_thread: LoopThread, make_sim) -> Iterator[Callable[..., tuple[InProcessGateway, list[InProcessSim]]]]:
    started: list[InProcessGateway] = []

    def start(
        count: int = 2, max_running: int | None = None, **config: Any
    ) -> tuple[InProcessGateway, list[InProcessSim]]:
        sims = [make_sim(name=f"c{n}", **config.pop("sim", {})) for n in range(count)]
        backends = [{"name": sim.name, "proxy_to": sim.url, "max_running": max_running} for sim in sims]
        gateway = InProcessGateway(loop_thread, {"backends": backends, **config}).start()
        started.append(gateway)
        return gateway, sims

    yield start
    for gateway in started:
        gateway.stop()


def held(gateway: InProcessGateway, page: dict[str, Any]):
    """The book's record of a query the gateway holds until its first rows (its submission kept, so
    that it may still move), or None."""
    query = gateway.services.book.get(page["id"])
    return query if query is not None and query.submission is not None else None


def running_on(gateway: InProcessGateway, page: dict[str, Any], sims: list[InProcessSim]) -> InProcessSim:
    query = held(gateway, page)
    assert query is not None
    return next(sim for sim in sims if sim.name == query.backend.name)


def moved(gateway: InProcessGateway, page: dict[str, Any]):
    """The gateway's record of a query that moved from the attempt whose first page is ``page``."""
    query = gateway.services.book.get(page["id"])
    assert query is not None and query.holder is not None, "it did not move"
    return query.holder


def test_a_query_whose_cluster_dies_before_any_row_runs_on_the_other_one(pair):
    gateway, sims = pair()
    first = submit(gateway, "SELECT 7, 'seven'", session="sim_run_time=1s")
    assert held(gateway, first) is not None
    # The client polls the backend's URIs on the gateway, as for any query.
    assert first["nextUri"].startswith(f"{gateway.url}/v1/statement/") and first["id"] in first["nextUri"]
    doomed = running_on(gateway, first, sims)
    doomed.stop()
    last, rows, _ = follow(first)
    assert rows == [[7, "seven"]] and last["stats"]["state"] == "FINISHED"
    survivor = next(sim for sim in sims if sim is not doomed)
    assert [q["query"] for q in survivor.queries()] == ["SELECT 7, 'seven'"]
    holder = moved(gateway, first)
    assert holder.attempts and holder.attempts[0].startswith(f"{doomed.name}: ")
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'trino_gateway_failovers_total{{backend="{doomed.name}",routing_group="adhoc"}} 1.0' in metrics
    # Both attempts are in the history under the gateway's id: the first FAILED_OVER, the last with
    # the attempts before it; neither waited for room.
    wait_until(lambda: len(gateway.queries(id=holder.id)["queries"]) == 2, what="both attempts in the history")
    records = {r["backend"]: r for r in gateway.queries(id=holder.id)["queries"]}
    assert records[doomed.name]["errorName"] == "FAILED_OVER" and records[doomed.name]["attempts"] is None
    assert records[survivor.name]["attempts"] == holder.attempts[0]
    assert {r["gatewayQueryId"] for r in records.values()} == {holder.id}
    assert {r["queuedMs"] for r in records.values()} == {None}


def test_after_the_first_rows_a_failure_fails_the_query_as_before(pair):
    gateway, sims = pair(sim={"page_rows": 1})
    first = submit(gateway, "SELECT * FROM (VALUES 1, 2, 3, 4) AS t(n)", session=None)
    page, headers = first, {"X-Trino-User": "alice"}
    while not page.get("data"):
        page = httpx.get(page["nextUri"], headers=headers, timeout=30).json()
    assert held(gateway, page) is None  # rows reached the client: it follows the cluster's own URIs now
    backend = next(s for s in sims if any(q["queryId"] == page["id"] for q in s.queries()))
    backend.stop()
    failed = httpx.get(page["nextUri"], headers=headers, timeout=30).json()
    assert failed["stats"]["state"] == "FAILED"
    assert f"backend {backend.name} running query {page['id']} is unreachable" in failed["error"]["message"]
    other = next(s for s in sims if s is not backend)
    assert other.queries() == []  # never sent again: rows would have been duplicated


@pytest.mark.parametrize(
    "sql",
    ["EXPLAIN ANALYZE SELECT 1", "CREATE TABLE t AS SELECT 1 AS n", "START TRANSACTION"],
)
def test_statements_that_change_something_are_never_held_for_failover(pair, sql):
    gateway, _ = pair()
    first = submit(gateway, sql, session=None)
    assert held(gateway, first) is None
    follow(first)


def test_a_rule_can_turn_failover_off(pair, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("---\nname: no-retry\ncondition: 'true'\nactions:\n  - 'result.put(\"failover\", false)'\n")
    gateway, _ = pair(routing_rules={"enabled": True, "type": "FILE", "rules_file": str(rules)})
    first = submit(gateway, "SELECT 1", session=None)
    assert held(gateway, first) is None
    assert follow(first)[1] == [[1]]


def test_a_cluster_that_stops_answering_polls_is_left_for_another(pair):
    gateway, sims = pair(proxy={"read_timeout": 1})
    first = submit(gateway, "SELECT 3", session="sim_run_time=0.5s")
    stuck = running_on(gateway, first, sims)
    stuck.set_faults(hang_polls=True)
    assert follow(first)[1] == [[3]]
    holder = moved(gateway, first)
    assert holder.attempts == [f"{stuck.name}: timed out"], holder.attempts


def test_a_cluster_that_fails_the_query_for_its_own_reasons_is_left_for_another(pair):
    gateway, sims = pair()
    first = submit(gateway, "SELECT 5", session="sim_run_time=0.5s")
    sick = running_on(gateway, first, sims)
    sick.set_faults(workers=0)  # NO_NODES_AVAILABLE: the cluster's fault, not the query's
    last, rows, _ = follow(first)
    assert rows == [[5]], last


def test_with_no_other_cluster_the_query_fails_with_the_clear_error_of_today(pair):
    gateway, sims = pair(count=1)
    first = submit(gateway, "SELECT 1", session="sim_run_time=1s")
    sims[0].stop()
    last, _, _ = follow(first)
    assert last["stats"]["state"] == "FAILED"
    assert f"backend {sims[0].name} running query" in last["error"]["message"]


def test_a_query_waiting_after_its_cluster_failed_fails_once_its_group_has_no_cluster(pair):
    """A read-only query whose cluster died waits in the gateway for room on the other, full one;
    when no cluster of its group is left, it fails at once with the group's error, as a new query
    does (chaos scenario 9), instead of waiting for a cluster to come back."""
    gateway, sims = pair(max_running=1)
    blocker = submit(gateway, "SELECT 2", session="sim_run_time=30s")
    moved = submit(gateway, "SELECT 1", session="sim_run_time=30s")
    doomed = running_on(gateway, moved, sims)
    full = next(sim for sim in sims if sim is not doomed)
    doomed.stop()
    headers = {"X-Trino-User": "alice"}
    page = httpx.get(moved["nextUri"], headers=headers, timeout=30).json()
    assert page["stats"]["state"] == "QUEUED" and "nextUri" in page, page  # waits for room on `full`
    for sim in sims:
        gateway.deactivate(sim.name)
    pages: list[dict[str, Any]] = []

    def ended() -> bool:
        pages.append(httpx.get(pages[-1]["nextUri"] if pages else page["nextUri"], headers=headers, timeout=30).json())
        return "nextUri" not in pages[-1]

    wait_until(ended, timeout=15, what="the waiting query's end")
    error = pages[-1]["error"]
    assert pages[-1]["stats"]["state"] == "FAILED" and error["errorName"] == "NO_NODES_AVAILABLE", pages[-1]
    assert "routing group 'adhoc'" in error["message"] and f"after failing on {doomed.name}: " in error["message"]
    assert [q["query"] for q in full.queries()] == ["SELECT 2"]  # never sent to the full one
    httpx.delete(blocker["nextUri"], headers=headers, timeout=30)


def test_a_query_failing_everywhere_stops_after_max_attempts_naming_each(pair):
    gateway, sims = pair(count=3, failover={"max_attempts": 2})
    for sim in sims:
        sim.set_faults(workers=0)
    last, _, _ = follow(submit(gateway, "SELECT 1", session=None))
    assert last["stats"]["state"] == "FAILED"
    message = last["error"]["message"]
    assert "NO_NODES_AVAILABLE" in message and "after failing on c" in message
    assert sum(len(sim.queries()) for sim in sims) == 2


def test_cancel_while_held_cancels_it_on_its_cluster(pair):
    gateway, sims = pair()
    first = submit(gateway, "SELECT 1", session="sim_run_time=30s")
    backend = running_on(gateway, first, sims)
    page = httpx.get(first["nextUri"], headers={"X-Trino-User": "alice"}, timeout=30).json()
    assert httpx.delete(page["nextUri"], headers={"X-Trino-User": "alice"}).status_code == 204
    wait_until(lambda: backend.queries()[0]["state"] in ("FAILED", "CANCELED"), what="the cluster to cancel it")
    assert backend.queries()[0]["error"]["errorName"] == "USER_CANCELED"


def test_the_python_client_reads_a_failed_over_query(pair):
    gateway, sims = pair()
    result: list[Any] = []

    def run() -> None:
        with connect(gateway.url, session_properties={"sim_run_time": "1.5s"}) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 11, 'eleven'")
            result.extend(cursor.fetchall())

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: any(sim.queries() for sim in sims), what="the query to reach a cluster")
    next(sim for sim in sims if sim.queries()).stop()
    thread.join(60)
    assert result == [[11, "eleven"]]


@pytest.mark.slow
def test_the_trino_cli_reads_a_failed_over_query(pair, trino_cli):
    gateway, sims = pair()
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            trino_cli(gateway.url, "SELECT 12, 'twelve'", "--output-format", "CSV", "--session", "sim_run_time=3s")
        )
    )
    thread.start()
    wait_until(lambda: any(sim.queries() for sim in sims), what="the query to reach a cluster", timeout=60)
    time.sleep(0.3)
    next(sim for sim in sims if sim.queries()).stop()
    thread.join(120)
    assert outcome[0].returncode == 0, outcome[0].stderr
    assert outcome[0].stdout.strip() == '"12","twelve"'


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  -- a comment\n/* and another */ (SELECT 1) UNION ALL SELECT 2",
        "WITH t AS (SELECT 1) SELECT * FROM t",
        "VALUES 1",
        "TABLE tpch.tiny.nation",
        "DESC tpch.tiny.nation",
        "SHOW TABLES FROM tpch.tiny",
        "SHOW CATALOGS",
        "DESCRIBE tpch.tiny.nation",
        "EXPLAIN SELECT 1",
        "EXPLAIN ANALYZE SELECT 1",
        "INSERT INTO t VALUES 1",
        "CREATE TABLE t AS SELECT 1",
        "DELETE FROM t",
        "CALL system.runtime.kill_query('x')",
        "SET SESSION a = 1",
        "START TRANSACTION",
        "",
    ],
)
def test_read_only_means_the_rules_query_types_query_show_describe_and_explain(sql):
    query_type = analyse(sql).query_type
    by_rules = query_type in ("Query", "Explain") or query_type.startswith(("Show", "Describe"))
    assert is_read_only(sql) == by_rules, query_type


@pytest.mark.slow
def test_the_javascript_client_reads_a_failed_over_query(pair, trino_js):
    gateway, sims = pair()
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(trino_js(gateway.url, "SELECT 13, 'thirteen'", "--session", "sim_run_time=3s"))
    )
    thread.start()
    wait_until(lambda: any(sim.queries() for sim in sims), what="the query to reach a cluster", timeout=60)
    next(sim for sim in sims if sim.queries()).stop()
    thread.join(120)
    assert outcome[0]["error"] is None, outcome[0]
    assert outcome[0]["rows"] == [[13, "thirteen"]]
