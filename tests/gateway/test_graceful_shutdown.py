"""A gateway node's graceful shutdown, as ``trino-gateway serve`` runs it (two workers; granian, and
hypercorn under the gateway's own supervisor):
on SIGTERM readiness fails on every worker while the node still answers everything, new connections
included, for ``server.shutdown_grace``; then it answers the requests in flight, flushes the query
history and exits 0."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import requests

from gateway.store import QueryRecord, open_store
from tests.conftest import connect, run_query
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess

pytestmark = pytest.mark.slow

WORKER = "X-Trino-Gateway-Worker"
# Long enough for queries of RUN_TIME started just before the SIGTERM to end inside it, with room.
GRACE = 5.0
RUN_TIME = "2s"
DRAIN = 10.0
# Beyond grace and drain: the process's own exit.
MARGIN = 15.0


def _node(sim: Any, tmp_path: Any, grace: float, engine: str = "granian") -> GatewayProcess:
    config = {
        "server": {"shutdown_grace": grace, "shutdown_timeout": DRAIN, "engine": engine},
        "backends": [{"name": "trino-1", "proxy_to": sim.url}],
    }
    return GatewayProcess(store=f"sqlite:///{tmp_path / 'gateway.db'}", config=config, workers=2)


def _readyz(url: str) -> requests.Response:
    # A new connection each time, so that the kernel hands them to both workers in turn.
    return requests.get(f"{url}/gateway/readyz", headers={"Connection": "close"}, timeout=10)


def _every_worker_ready(url: str) -> set[str]:
    """Both workers have started (a signal a granian worker gets while it starts is lost)."""
    workers: set[str] = set()

    def both() -> bool:
        answer = _readyz(url)
        if answer.status_code == 200:
            workers.add(answer.headers[WORKER])
        return len(workers) == 2

    wait_until(both, timeout=30, what="both workers answering readyz")
    return workers


def _history(store_url: str, query_ids: list[str]) -> dict[str, QueryRecord | None]:
    async def read() -> dict[str, QueryRecord | None]:
        store = await open_store(store_url)
        try:
            return {query_id: await store.get_query(query_id) for query_id in query_ids}
        finally:
            await store.close()

    return asyncio.run(read())


class _Query(threading.Thread):
    """One query through the Python client, which does not retry: a refused or reset connection
    is an error here, not a second attempt."""

    def __init__(self, url: str, number: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.number = number
        self.query_id: str | None = None
        self.rows: list[list[object]] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(self.url, max_attempts=1, session_properties={"sim_run_time": RUN_TIME}) as conn:
                cursor = conn.cursor()
                cursor.execute(f"SELECT {self.number}")
                self.query_id = cursor.query_id
                self.rows = cursor.fetchall()
        except BaseException as error:
            self.error = error


@pytest.mark.parametrize("engine", ["granian", "hypercorn"])
def test_sigterm_fails_readiness_on_every_worker_and_serves_on_through_the_grace(sim, tmp_path, engine):
    node = _node(sim, tmp_path, GRACE, engine).start()
    try:
        workers = _every_worker_ready(node.url)
        queries = [_Query(node.url, n) for n in range(4)]
        for query in queries:
            query.start()
        wait_until(lambda: all(q.query_id or q.error for q in queries), timeout=30, what="queries running")
        assert not any(q.error for q in queries), [q.error for q in queries]

        node.terminate()
        # The signal is taken at once; from the first 503 on, every readiness answer is 503, from
        # every worker.
        wait_until(lambda: _readyz(node.url).status_code == 503, timeout=10, what="readyz failing")
        failing: set[str] = set()
        for _ in range(40):
            answer = _readyz(node.url)
            assert answer.status_code == 503, answer.text
            assert "shutting down" in answer.json()["error"]
            failing.add(answer.headers[WORKER])
            if failing == workers:
                break
        assert failing == workers

        # Everything else is still answered, a new query on a new connection included.
        assert requests.get(f"{node.url}/gateway/livez", timeout=10).status_code == 200
        assert requests.get(f"{node.url}/gateway/backend/all", timeout=10).status_code == 200
        late = _Query(node.url, 100)
        late.run()
        assert late.error is None and late.rows == [[100]]

        # The queries in flight at the SIGTERM end inside the grace: each poll was answered.
        for query in queries:
            query.join(GRACE + DRAIN)
        assert [(q.error, q.rows) for q in queries] == [(None, [[n]]) for n in range(4)]

        assert node.process is not None
        assert node.process.wait(GRACE + DRAIN + MARGIN) == 0
    finally:
        node.stop()
    with pytest.raises(requests.ConnectionError):
        _readyz(node.url)
    # Every query's outcome reached the store before the workers exited.
    history = _history(node.store, [q.query_id for q in [*queries, late] if q.query_id])
    assert len(history) == 5
    assert {query_id: record and record.state for query_id, record in history.items()} == dict.fromkeys(
        history, "FINISHED"
    )


def test_without_grace_a_poll_in_flight_gets_its_answer_and_the_node_exits(sim, tmp_path):
    node = _node(sim, tmp_path, 0).start()
    query_id = None
    try:
        _every_worker_ready(node.url)
        assert run_query(node.url, "SELECT 1") == [[1]]
        first = requests.post(
            f"{node.url}/v1/statement",
            data=b"SELECT 2",
            headers={"X-Trino-User": "u", "X-Trino-Session": "sim_run_time=60s"},
            timeout=10,
        ).json()
        page = first
        while page["stats"]["state"] != "RUNNING":
            page = requests.get(page["nextUri"], timeout=10).json()
        query_id = first["id"]

        # A poll the backend holds (maxWait: nothing changes in a running query for a second) is in
        # flight when the SIGTERM comes.
        seen = len(sim.query(query_id)["requests"])
        answer: dict[str, Any] = {}

        def poll() -> None:
            try:
                response = requests.get(page["nextUri"], timeout=30)
                answer.update(status=response.status_code, body=response.json())
            except BaseException as error:
                answer["error"] = error

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        wait_until(lambda: len(sim.query(query_id)["requests"]) > seen, timeout=10, what="the poll at the backend")
        node.terminate()
        poller.join(30)
        assert "error" not in answer, answer
        assert answer["status"] == 200 and answer["body"]["id"] == query_id
        assert answer["body"]["stats"]["state"] == "RUNNING"

        assert node.process is not None
        assert node.process.wait(DRAIN + MARGIN) == 0
    finally:
        node.stop()
        if query_id is not None:  # it would run on for a minute on the shared backend
            requests.put(f"{sim.url}/v1/query/{query_id}/killed", timeout=10)
    with pytest.raises(requests.ConnectionError):
        _readyz(node.url)
    # The query was routed and is still running on its backend: its row is in the store, no outcome.
    record = _history(node.store, [query_id])[query_id]
    assert record is not None and record.backend_name == "trino-1" and record.state is None
