"""Resource-group capacity (``--max-running``) and cancellation."""

from __future__ import annotations

import threading

import requests

from tests.conftest import connect
from tests.trinosim.helpers import run_ignoring_cancel, ui_stats, wait_until


def _states(server) -> list[str]:
    return [q["state"] for q in server.queries()]


def test_cancel_mid_query_ends_it_as_cancelled_and_frees_its_slot(sim_factory):
    server = sim_factory(name="cancel", max_running=1)
    conn = connect(server.url, session_properties={"sim_run_time": "60s"})
    cursor = conn.cursor()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            cursor.execute("SELECT count(*) FROM tpch.tiny.nation")
            outcome["rows"] = cursor.fetchall()
        except Exception as error:  # what the client raises after a cancel is part of the check
            outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: _states(server) == ["RUNNING"], what="the slow query to run")
    cursor.cancel()
    worker.join(20)
    assert not worker.is_alive()
    assert "rows" not in outcome

    record = server.queries()[0]
    assert record["state"] == "FAILED"
    assert record["error"]["errorName"] == "USER_CANCELED"
    # The only slot is free again: the next query runs at once instead of queueing.
    with connect(server.url) as other:
        other_cursor = other.cursor()
        other_cursor.execute("SELECT 42")
        assert other_cursor.fetchall() == [[42]]
    assert ui_stats(server.url)["runningQueries"] == 0


def test_five_slow_queries_with_max_running_two_leave_three_queued(sim_factory):
    server = sim_factory(name="capacity", max_running=2)
    cursors = []
    threads = []
    for _ in range(5):
        cursor = connect(server.url, session_properties={"sim_run_time": "120s"}).cursor()
        cursors.append(cursor)
        thread = threading.Thread(target=run_ignoring_cancel, args=(cursor,))
        thread.start()
        threads.append(thread)
    try:
        wait_until(lambda: sorted(_states(server)) == ["QUEUED"] * 3 + ["RUNNING"] * 2, what="2 running, 3 queued")

        stats = ui_stats(server.url)
        assert (stats["runningQueries"], stats["queuedQueries"]) == (2, 3)

        jmx = requests.get(
            f"{server.url}/v1/jmx/mbean/trino.execution:name=QueryManager",
            headers={"X-Trino-User": "monitor"},
            timeout=10,
        ).json()
        attributes = {a["name"]: a["value"] for a in jmx["attributes"]}
        assert (attributes["RunningQueries"], attributes["QueuedQueries"]) == (2, 3)

        metrics = requests.get(f"{server.url}/metrics", headers={"X-Trino-User": "monitor"}, timeout=10).text
        samples = dict(line.split(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
        assert float(samples["trino_execution_name_QueryManager_RunningQueries"]) == 2
        assert float(samples["trino_execution_name_QueryManager_QueuedQueries"]) == 3
    finally:
        for cursor in cursors:
            cursor.cancel()
        for thread in threads:
            thread.join(20)
    assert all(state == "FAILED" for state in _states(server))


def test_a_queued_query_runs_when_a_slot_frees(sim_factory):
    server = sim_factory(name="handover", max_running=1)
    slow = connect(server.url, session_properties={"sim_run_time": "120s"}).cursor()
    blocker = threading.Thread(target=run_ignoring_cancel, args=(slow,))
    blocker.start()
    wait_until(lambda: _states(server) == ["RUNNING"], what="the blocking query")
    result: dict[str, object] = {}

    def quick() -> None:
        with connect(server.url) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 7")
            result["rows"] = cursor.fetchall()

    waiting = threading.Thread(target=quick)
    waiting.start()
    wait_until(lambda: "QUEUED" in _states(server), what="the second query to queue")
    assert "rows" not in result
    slow.cancel()
    waiting.join(20)
    blocker.join(20)
    assert result["rows"] == [[7]]
