"""Drain status and the operator's command: when is it safe to stop a cluster?"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from trino.transaction import IsolationLevel

from gateway.control.backend_command import run as run_backend_command
from gateway.node.cli import build_parser
from tests.conftest import connect
from tests.gateway.conftest import every_store
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess


def _submit(url: str, sql: str = "SELECT 1", **headers: str) -> dict:
    return requests.post(
        f"{url}/v1/statement", data=sql, headers={"X-Trino-User": "drain", **headers}, timeout=10
    ).json()


def _drain(gateway, name: str) -> dict:
    status, body = gateway.call("GET", f"/gateway/backend/{name}/drain")
    assert status == 200, body
    return body


def _command(*argv: str, capsys) -> tuple[int, str, str]:
    code = run_backend_command(build_parser().parse_args(["backend", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_drained_only_once_inactive_with_no_query_and_no_transaction_left(make_sim, make_gateway):
    backend = make_sim(name="drains")
    gateway = make_gateway({"backends": [{"name": "drains", "proxy_to": backend.url}]})
    assert _drain(gateway, "drains")["drained"] is False  # active
    conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED)
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    cursor.fetchall()
    running = _submit(gateway.url, "SELECT 2", **{"X-Trino-Session": "sim_run_time=60s"})
    gateway.deactivate("drains")
    status = _drain(gateway, "drains")
    assert status["active"] is False and status["drained"] is False
    assert (status["unfinishedQueries"], status["openTransactions"]) == (1, 1)
    assert status["oldestQueryAgeSeconds"] >= 0 and status["oldestTransactionAgeSeconds"] >= 0
    # The same fields in /gateway/health.
    health = next(b for b in gateway.call("GET", "/gateway/health")[1] if b["name"] == "drains")
    assert (health["unfinishedQueries"], health["openTransactions"], health["drained"]) == (1, 1, False)
    conn.commit()
    assert _drain(gateway, "drains")["openTransactions"] == 0
    requests.delete(running["nextUri"], timeout=10)
    status = _drain(gateway, "drains")
    assert (status["unfinishedQueries"], status["openTransactions"], status["drained"]) == (0, 0, True)
    gateway.activate("drains")
    assert _drain(gateway, "drains")["drained"] is False
    assert gateway.call("GET", "/gateway/backend/nobody/drain")[0] == 404


def test_a_query_its_client_abandoned_stops_holding_the_drain_once_the_backend_says_it_ended(make_sim, make_gateway):
    # The backend abandons a query nobody polls for 2 s (Trino's query.client.timeout).
    backend = make_sim(name="abandons", client_timeout="2s")
    gateway = make_gateway({"backends": [{"name": "abandons", "proxy_to": backend.url}]})
    walked_away = _submit(gateway.url)  # never polled again
    gateway.deactivate("abandons")
    assert _drain(gateway, "abandons")["unfinishedQueries"] == 1
    wait_until(lambda: _drain(gateway, "abandons")["drained"], timeout=30, what="the abandoned query to be seen ended")
    record = next(q for q in gateway.queries()["queries"] if q["queryId"] == walked_away["id"])
    assert (record["state"], record["errorName"]) == ("FAILED", "ABANDONED_QUERY")


def test_the_drain_command_waits_until_the_backend_is_drained(make_sim, make_gateway, capsys):
    backend = make_sim(name="cli")
    gateway = make_gateway({"backends": [{"name": "cli", "proxy_to": backend.url}]})
    finished = threading.Event()

    def slow_query() -> None:
        with connect(gateway.url, session_properties={"sim_run_time": "2s"}) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finished.set()

    worker = threading.Thread(target=slow_query)
    worker.start()
    wait_until(lambda: backend.queries(), what="the query to reach the backend")
    code, out, err = _command(
        "drain", "cli", "--wait", "--timeout", "60", "--interval", "0.2", "--server", gateway.url, capsys=capsys
    )
    worker.join(30)
    assert code == 0, err
    assert finished.is_set()  # the command returned only after the query was done
    assert out.splitlines()[0] == "cli: deactivated: no new queries go there"
    assert "cli: draining: 1 query (oldest" in out
    assert out.splitlines()[-1] == "cli: drained: safe to stop"

    code, out, _ = _command("list", "--server", gateway.url, capsys=capsys)
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME",
        "GROUP",
        "ACTIVE",
        "STATE",
        "HEALTH",
        "STILL",
        "RUNNING",
        "DRAINED",
    ]
    assert out.splitlines()[1].split() == ["cli", "adhoc", "no", "DEACTIVATED", "HEALTHY", "nothing", "running", "yes"]
    assert _command("activate", "cli", "--server", gateway.url, capsys=capsys)[:2] == (0, "cli: active\n")


def test_the_drain_command_says_why_it_gave_up(make_sim, make_gateway, capsys):
    backend = make_sim(name="busy")
    gateway = make_gateway({"backends": [{"name": "busy", "proxy_to": backend.url}]})
    running = _submit(gateway.url, "SELECT 1", **{"X-Trino-Session": "sim_run_time=60s"})
    code, _, err = _command(
        "drain", "busy", "--wait", "--timeout", "0.5", "--interval", "0.1", "--server", gateway.url, capsys=capsys
    )
    assert code == 1
    assert "busy is not drained after 0.5 s: 1 query (oldest" in err
    requests.delete(running["nextUri"], timeout=10)
    code, _, err = _command("drain", "nobody", "--server", gateway.url, capsys=capsys)
    assert code == 2 and "no backend named 'nobody'" in err
    code, _, err = _command("list", "--server", "http://127.0.0.1:1", capsys=capsys)
    assert code == 2 and "cannot reach the gateway at http://127.0.0.1:1" in err


@every_store
def test_drain_status_counts_the_work_of_every_worker(clusters, lasting_store_url):
    config = {"backends": [{"name": "trino-1", "proxy_to": clusters[0].url}]}
    with GatewayProcess(store=lasting_store_url, config=config, workers=2) as gateway:
        pages = [_submit(gateway.url, f"SELECT {i}", **{"X-Trino-Session": "sim_run_time=60s"}) for i in range(6)]
        gateway.deactivate("trino-1")
        answers: dict[str, dict] = {}

        def ask(_: int) -> requests.Response:
            return requests.get(f"{gateway.url}/gateway/backend/trino-1/drain", timeout=10)

        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Many connections at once: the workers share the port and each takes some of them.
            while len(answers) < 2 and time.monotonic() < deadline:
                for answer in pool.map(ask, range(16)):
                    answers[answer.headers["x-trino-gateway-worker"]] = answer.json()
        assert len(answers) == 2, f"only {list(answers)} answered"
        counts = {worker: (a["unfinishedQueries"], a["drained"]) for worker, a in answers.items()}
        assert set(counts.values()) == {(6, False)}, counts
        for page in pages:
            requests.delete(page["nextUri"], timeout=10)
        assert wait_until(lambda: _drain(gateway, "trino-1")["drained"], timeout=30, what="drained")
