"""Every fault knob, shown by its effect on the real Python client."""

from __future__ import annotations

import time

import pytest
import requests
from trino.exceptions import Http503Error, TrinoConnectionError, TrinoQueryError

from tests.conftest import run_query
from tests.trinosim.helpers import ui_stats
from trinosim import TrinoSimProcess


@pytest.fixture(scope="module")
def faulty():
    with TrinoSimProcess(name="faulty") as server:
        yield server


@pytest.fixture
def sim_with_faults(faulty):
    faulty.clear_faults()
    yield faulty
    faulty.clear_faults()


def test_starting_state_at_start_up_fails_queries_until_it_ends(sim_factory):
    server = sim_factory(name="booting", starting="60s")
    assert requests.get(f"{server.url}/v1/info", timeout=10).json()["starting"] is True
    with pytest.raises(TrinoQueryError) as error:
        run_query(server.url, "SELECT 1")
    assert error.value.error_name == "SERVER_STARTING_UP"
    server.set_faults(starting_seconds=0)
    assert requests.get(f"{server.url}/v1/info", timeout=10).json()["starting"] is False
    assert run_query(server.url, "SELECT 1") == [[1]]


def test_starting_can_be_switched_on_at_run_time(sim_with_faults):
    sim_with_faults.set_faults(starting_seconds=30)
    assert requests.get(f"{sim_with_faults.url}/v1/info", timeout=10).json()["starting"] is True
    with pytest.raises(TrinoQueryError) as error:
        run_query(sim_with_faults.url, "SELECT 1")
    assert error.value.error_name == "SERVER_STARTING_UP"


def test_latency_delays_every_request(sim_with_faults):
    sim_with_faults.set_faults(latency_ms=1500)
    started = time.monotonic()
    requests.get(f"{sim_with_faults.url}/v1/statement/queued/x/y/1", timeout=10)
    assert time.monotonic() - started >= 1.5
    # A client that gives up sooner than the added latency cannot even submit.
    with pytest.raises(TrinoConnectionError):
        run_query(sim_with_faults.url, "SELECT 1", request_timeout=0.5, max_attempts=1)


def test_error_rate_answers_5xx_and_the_client_gives_up_after_its_retries(sim_with_faults):
    sim_with_faults.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(Http503Error):
        run_query(sim_with_faults.url, "SELECT 1", max_attempts=2)
    sim_with_faults.set_faults(error_rate=0.0)
    assert run_query(sim_with_faults.url, "SELECT 1") == [[1]]


def test_hang_polls_stops_answering_next_uri(sim_with_faults):
    sim_with_faults.set_faults(hang_polls=True)
    with pytest.raises(TrinoConnectionError, match=r"timed out"):
        run_query(sim_with_faults.url, "SELECT 1", request_timeout=1, max_attempts=1)
    # The POST itself was answered: the query exists, its polls are what hang.
    assert sim_with_faults.queries()[-1]["query"] == "SELECT 1"


def test_garbage_bodies_break_the_client(sim_with_faults):
    sim_with_faults.set_faults(garbage_rate=1.0)
    raw = requests.post(
        f"{sim_with_faults.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "a"}, timeout=10
    )
    assert raw.status_code == 200
    with pytest.raises(ValueError):
        raw.json()
    # The client cannot parse the answer (requests' JSONDecodeError is a ValueError).
    with pytest.raises(ValueError):
        run_query(sim_with_faults.url, "SELECT 1", max_attempts=1)


def test_dropped_connections_surface_as_connection_errors(sim_with_faults):
    sim_with_faults.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{sim_with_faults.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "a"}, timeout=10
        )
    with pytest.raises(TrinoConnectionError):
        run_query(sim_with_faults.url, "SELECT 1", max_attempts=2)


def test_worker_count_is_reported_and_zero_workers_fail_queries(sim_with_faults):
    sim_with_faults.set_faults(workers=3)
    assert ui_stats(sim_with_faults.url)["activeWorkers"] == 3
    assert len(requests.get(f"{sim_with_faults.url}/v1/node", timeout=10).json()) == 3
    sim_with_faults.set_faults(workers=0)
    assert ui_stats(sim_with_faults.url)["activeWorkers"] == 0
    with pytest.raises(TrinoQueryError) as error:
        run_query(sim_with_faults.url, "SELECT 1")
    assert error.value.error_name == "NO_NODES_AVAILABLE"


def test_fault_scope_all_reaches_health_endpoints_too(sim_with_faults):
    sim_with_faults.set_faults(error_rate=1.0)
    assert requests.get(f"{sim_with_faults.url}/v1/info", timeout=10).status_code == 200
    sim_with_faults.set_faults(scope="all")
    assert requests.get(f"{sim_with_faults.url}/v1/info", timeout=10).status_code == 503


def test_fault_admin_rejects_bad_values_naming_the_field(sim_with_faults):
    response = requests.put(f"{sim_with_faults.url}/_sim/faults", json={"error_rate": 2}, timeout=10)
    assert response.status_code == 400 and "error_rate" in response.json()["error"]
    response = requests.put(f"{sim_with_faults.url}/_sim/faults", json={"no_such_fault": 1}, timeout=10)
    assert response.status_code == 400 and "no_such_fault" in response.json()["error"]
    response = requests.put(f"{sim_with_faults.url}/_sim/faults", data=b"{not json", timeout=10)
    assert response.status_code == 400


def test_faults_can_be_set_at_start_up_from_the_command_line(sim_factory):
    server = sim_factory(name="slowstart", latency="200ms", workers=4, error_rate=0.25, hang_polls=True)
    faults = requests.get(f"{server.url}/_sim/faults", timeout=10).json()
    assert faults["latency_ms"] == 200 and faults["workers"] == 4
    assert faults["error_rate"] == 0.25 and faults["hang_polls"] is True


def test_cli_rejects_invalid_settings_with_a_clear_message(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "trinosim", "--error-rate", "3"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "error_rate" in result.stderr and "Traceback" not in result.stderr
