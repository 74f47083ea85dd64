"""Concurrency, stickiness, cancel, drain: every request of a query reaches the cluster running it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from trino.exceptions import TrinoUserError

from tests.conftest import connect, run_query
from tests.gateway.conftest import one_store_per_query_path, owner
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess

# Every request of a query reaches its cluster: once where the queue is the worker's (memory), once where
# it is the store's (PostgreSQL; SQLite takes the same SQL path).
pytestmark = one_store_per_query_path


def _by_backend(gateway, query_ids: list[str]) -> dict[str, str]:
    records = gateway.queries(limit=1000)["queries"]
    return {r["queryId"]: r["backend"] for r in records if r["queryId"] in set(query_ids)}


def test_100_concurrent_queries_are_correct_spread_over_three_backends_and_sticky(clusters, store_url):
    # Child processes: the spread follows the backends' measured latency, which in-process servers
    # sharing one event loop with the gateway would distort.
    config = {"backends": [{"name": c.name, "proxy_to": c.url} for c in clusters]}
    with GatewayProcess(store=store_url, config=config) as gateway:
        _hundred_queries(gateway, clusters)


def _hundred_queries(gateway, sims) -> None:
    def one(i: int) -> tuple[str, list[list[object]]]:
        with connect(gateway.url, session_properties={"sim_run_time": "1s"}) as conn:
            cursor = conn.cursor()
            cursor.execute(f"SELECT count(*), {i} FROM tpch.tiny.nation WHERE regionkey = {i % 5}")
            return cursor.query_id, cursor.fetchall()

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, range(100)))
    assert [rows for _, rows in results] == [[[5, i]] for i in range(100)]

    query_ids = [query_id for query_id, _ in results]
    routed = _by_backend(gateway, query_ids)
    assert len(routed) == 100
    # 100 at once, least-loaded first: the three clusters share them evenly.
    counts = [list(routed.values()).count(c.name) for c in sims]
    assert all(20 <= count <= 47 for count in counts), counts
    for query_id in query_ids:
        # The cluster the gateway chose is the only one that ever saw the query, and it saw every poll.
        assert owner(sims, query_id) == [routed[query_id]]
        record = next(c for c in sims if c.name == routed[query_id]).query(query_id)
        assert record["state"] == "FINISHED"
        assert [r["phase"] for r in record["requests"]][:2] == ["submit", "queued"]


def test_all_three_clusters_serve_when_groups_are_used(gateway, sims):
    def one(i: int) -> str:
        group = "etl" if i % 3 == 0 else "adhoc"
        with connect(
            gateway.url, http_headers={"X-Trino-Routing-Group": group}, session_properties={"sim_run_time": "500ms"}
        ) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            return cursor.query_id

    with ThreadPoolExecutor(max_workers=30) as pool:
        query_ids = list(pool.map(one, range(30)))
    assert set(_by_backend(gateway, query_ids).values()) == {"trino-1", "trino-2", "trino-3"}


def test_cancel_through_the_gateway_cancels_on_the_right_backend(gateway, sims):
    conn = connect(gateway.url, session_properties={"sim_run_time": "60s"})
    cursor = conn.cursor()
    done = threading.Event()

    def run() -> None:
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        except TrinoUserError:
            pass
        done.set()

    threading.Thread(target=run, daemon=True).start()
    query_id = wait_until(lambda: cursor.query_id, what="the query to start")
    backend = wait_until(lambda: owner(sims, query_id), what="a cluster to have the query")[0]
    server = next(c for c in sims if c.name == backend)
    wait_until(lambda: server.query(query_id)["state"] == "RUNNING", what="the query to run")
    cursor.cancel()
    assert done.wait(20)
    record = server.query(query_id)
    assert record["state"] == "FAILED" and record["error"]["errorName"] == "USER_CANCELED"
    assert any(r["method"] == "DELETE" for r in record["requests"])
    history = wait_until(
        lambda: [q for q in gateway.queries()["queries"] if q["queryId"] == query_id and q["state"] != "RUNNING"],
        what="history",
    )
    assert history[0]["state"] == "FAILED" and history[0]["errorName"] == "USER_CANCELED"


def test_deactivate_drains_running_queries_and_activate_restores(gateway, sims):
    results: dict[int, object] = {}

    def slow(i: int) -> None:
        try:
            with connect(gateway.url, session_properties={"sim_run_time": "4s"}) as conn:
                cursor = conn.cursor()
                cursor.execute(f"SELECT {i}")
                results[i] = (cursor.query_id, cursor.fetchall())
        except Exception as error:  # every failure is reported by the assertion below
            results[i] = error

    # Only trino-1 is active, so the ten long queries all start there.
    gateway.deactivate("trino-2")
    threads = [threading.Thread(target=slow, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: sum(q["state"] == "RUNNING" for q in sims[0].queries()) >= 10, what="ten queries running on trino-1"
    )
    gateway.activate("trino-2")
    gateway.deactivate("trino-1")

    after = [run_query(gateway.url, "SELECT 'after'") for _ in range(5)]
    assert after == [[["after"]]] * 5
    recent = gateway.queries(limit=5)["queries"]
    assert {q["backend"] for q in recent} == {"trino-2"}

    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, tuple) for r in results.values()), results
    assert sorted(rows for _, rows in results.values()) == sorted([[i]] for i in range(10))
    assert all(owner(sims, query_id) == ["trino-1"] for query_id, _ in results.values())

    gateway.activate("trino-1")
    gateway.deactivate("trino-2")
    run_query(gateway.url, "SELECT 'back'")
    assert gateway.queries(limit=1)["queries"][0]["backend"] == "trino-1"
