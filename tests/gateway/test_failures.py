"""Backends failing under running queries, a gateway restart, several workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import connect, run_query
from tests.gateway.conftest import every_store, one_store_per_query_path
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess


def _submit(url: str, sql: str = "SELECT 1", **headers: str) -> dict:
    response = requests.post(
        f"{url}/v1/statement", data=sql.encode(), timeout=10, headers={"X-Trino-User": "u", **headers}
    )
    response.raise_for_status()
    return response.json()


@one_store_per_query_path
def test_backend_dying_mid_query_gives_a_trino_style_json_error(sim_factory, store_url):
    backend = sim_factory(name="doomed")
    with GatewayProcess(store=store_url, config={"backends": [{"name": "doomed", "proxy_to": backend.url}]}) as gw:
        first = _submit(gw.url, **{"X-Trino-Session": "sim_run_time=60s"})
        backend.kill()
        response = requests.get(first["nextUri"], timeout=30)
        # A FAILED query, not a 502: clients report its message instead of retrying in vain.
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["id"] == first["id"] and body["stats"]["state"] == "FAILED"
        assert "backend doomed running query" in body["error"]["message"]
        assert "unreachable" in body["error"]["message"]


@one_store_per_query_path
def test_a_client_whose_backend_died_reads_why(sim_factory, store_url):
    from trino.exceptions import TrinoQueryError

    backend = sim_factory(name="doomed")
    config = {"backends": [{"name": "doomed", "proxy_to": backend.url}]}
    with (
        GatewayProcess(store=store_url, config=config) as gw,
        connect(gw.url, session_properties={"sim_run_time": "60s"}) as conn,
    ):
        cursor = conn.cursor()
        worker = threading.Thread(target=lambda: wait_until(lambda: cursor.query_id, 20) and backend.kill())
        worker.start()
        with pytest.raises(TrinoQueryError) as error:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        worker.join(timeout=30)
    assert "backend doomed running query" in error.value.message and "unreachable" in error.value.message


@one_store_per_query_path
def test_hanging_backend_gives_a_gateway_timeout_not_a_hang(make_sim, make_gateway):
    backend = make_sim(name="stuck")
    config = {"proxy": {"read_timeout": 2}, "backends": [{"name": "stuck", "proxy_to": backend.url}]}
    with make_gateway(config) as gw:
        first = _submit(gw.url)
        backend.set_faults(hang_polls=True)
        response = requests.get(first["nextUri"], timeout=30)
        assert response.status_code == 200
        assert response.json()["stats"]["state"] == "FAILED"
        assert "backend stuck did not answer in time" in response.json()["error"]["message"]


@one_store_per_query_path
def test_garbage_from_a_backend_becomes_a_clear_failed_query_without_breaking_the_gateway(make_sim, make_gateway):
    backend = make_sim(name="junk")
    with make_gateway({"backends": [{"name": "junk", "proxy_to": backend.url}]}) as gw:
        backend.set_faults(garbage_rate=1.0)
        response = requests.post(f"{gw.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "u"}, timeout=10)
        assert response.status_code == 200 and response.json()["stats"]["state"] == "FAILED"
        assert "backend junk answered something that is not a Trino query result" in response.json()["error"]["message"]
        backend.set_faults(garbage_rate=0.0)
        assert requests.get(f"{gw.url}/gateway/readyz", timeout=10).status_code == 200
        with connect(gw.url) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 5")
            assert cursor.fetchall() == [[5]]


@every_store
def test_queries_survive_a_gateway_kill_and_restart(clusters, store_url):
    config = {"backends": [{"name": c.name, "proxy_to": c.url} for c in clusters[:2]]}
    gateway = GatewayProcess(store=store_url, config=config).start()
    try:
        firsts = [_submit(gateway.url, f"SELECT {i}", **{"X-Trino-Session": "sim_run_time=3s"}) for i in range(6)]
        # Poll each once, so the queries are dispatched and running.
        pages = [requests.get(f["nextUri"], timeout=10).json() for f in firsts]
        results: dict[int, object] = {}

        def python_client(i: int) -> None:
            with connect(gateway.url, max_attempts=12, session_properties={"sim_run_time": "4s"}) as conn:
                cursor = conn.cursor()
                cursor.execute(f"SELECT {100 + i}")
                results[i] = cursor.fetchall()

        # Daemons: should the test fail, clients still retrying a stopped gateway (12 attempts, backing
        # off) must not hold the session's exit for minutes.
        threads = [threading.Thread(target=python_client, args=(i,), daemon=True) for i in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(gateway.queries(state="RUNNING")["queries"]) >= 9, what="nine queries in flight")
        gateway.kill()
        gateway.start()
        for i, page in enumerate(pages):
            rows = list(page.get("data", []))
            while "nextUri" in page:
                page = requests.get(page["nextUri"], timeout=30).json()
                rows += page.get("data", [])
            assert page["stats"]["state"] == "FINISHED"
            assert rows == [[i]]
        for thread in threads:
            thread.join(60)
        assert results == {i: [[100 + i]] for i in range(3)}
    finally:
        gateway.stop()


@every_store
@pytest.mark.parametrize("engine", ["granian", "hypercorn"])
def test_two_workers_serve_polls_of_the_same_query_interchangeably(clusters, lasting_store_url, engine):
    config = {"backends": [{"name": c.name, "proxy_to": c.url} for c in clusters[:2]]}
    with GatewayProcess(store=lasting_store_url, config=config, workers=2, extra_args=["--engine", engine]) as gateway:

        def one(i: int) -> tuple[set[str], list]:
            # A new connection per request, so the kernel spreads them over both workers.
            workers = set()
            rows = []
            response = requests.post(
                f"{gateway.url}/v1/statement",
                data=f"SELECT {i}".encode(),
                timeout=10,
                headers={"X-Trino-User": "u", "Connection": "close", "X-Trino-Session": "sim_run_time=1s"},
            )
            page = response.json()
            workers.add(response.headers["X-Trino-Gateway-Worker"])
            while "nextUri" in page:
                response = requests.get(page["nextUri"], headers={"Connection": "close"}, timeout=10)
                assert response.status_code == 200, response.text
                workers.add(response.headers["X-Trino-Gateway-Worker"])
                page = response.json()
                rows += page.get("data", [])
            assert page["stats"]["state"] == "FINISHED"
            return workers, rows

        with ThreadPoolExecutor(max_workers=20) as pool:
            outcomes = list(pool.map(one, range(40)))
        assert [rows for _, rows in outcomes] == [[[i]] for i in range(40)]
        all_workers = set().union(*(workers for workers, _ in outcomes))
        assert len(all_workers) == 2
        # Some queries were served by both workers, poll by poll.
        assert any(len(workers) == 2 for workers, _ in outcomes)


@one_store_per_query_path
def test_polls_for_an_unknown_query_answer_not_found(gateway):
    response = requests.get(f"{gateway.url}/v1/statement/executing/20200101_000000_00001_abcde/yabc/1", timeout=30)
    assert response.status_code == 404


@one_store_per_query_path
def test_a_submission_whose_connection_drops_is_not_sent_again(make_sim, make_gateway):
    dropper = make_sim(name="dropper", drop_rate=1.0)
    with make_gateway({"backends": [{"name": "dropper", "proxy_to": dropper.url}]}) as gateway:
        response = requests.post(
            f"{gateway.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "u"}, timeout=30
        )
        # The request may have reached the backend, so it is not re-sent anywhere: a FAILED query.
        assert response.status_code == 200 and response.json()["stats"]["state"] == "FAILED"
        assert "dropper failed while taking the query" in response.json()["error"]["message"]


@one_store_per_query_path
def test_a_submission_answered_503_goes_to_the_next_backend(make_sim, make_gateway):
    busy = make_sim(name="busy")
    fine = make_sim(name="fine")
    config = {
        "health": {"interval": 60},  # only the answers to real submissions tell the gateway
        "routing": {"router": "round-robin"},
        "backends": [{"name": "busy", "proxy_to": busy.url}, {"name": "fine", "proxy_to": fine.url}],
    }
    with make_gateway(config) as gateway:
        busy.set_faults(error_rate=1.0, error_status=503)
        for _ in range(4):
            # One attempt only: the client never sees the 503, the gateway re-sent the submission.
            assert run_query(gateway.url, "SELECT 1", max_attempts=1) == [[1]]
        assert {q["backend"] for q in gateway.queries()["queries"]} == {"fine"}
        assert not any(q["queryId"] for q in busy.queries())
        # Every backend says 503: the client gets the 503 (and retries, as Trino clients do).
        fine.set_faults(error_rate=1.0, error_status=503)
        response = requests.post(
            f"{gateway.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "u"}, timeout=30
        )
        assert response.status_code == 503
