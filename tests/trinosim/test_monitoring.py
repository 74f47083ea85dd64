"""Health and stats endpoints in the shapes gateways' monitors read."""

from __future__ import annotations

import requests

from tests.conftest import run_query
from tests.trinosim.helpers import follow, submit, ui_stats

MONITOR = {"X-Trino-User": "monitor"}


def test_info_reports_version_environment_and_not_starting(sim):
    info = requests.get(f"{sim.url}/v1/info", timeout=10).json()
    assert info["nodeVersion"] == {"version": "446"}
    assert info["environment"] == "trinosim" and info["coordinator"] is True and info["starting"] is False
    assert info["uptime"].endswith(("ms", "s", "m", "h", "d"))
    assert requests.get(f"{sim.url}/v1/info/state", timeout=10).json() == "ACTIVE"
    assert requests.get(f"{sim.url}/v1/info/coordinator", timeout=10).status_code == 200


def test_status_and_node(sim):
    status = requests.get(f"{sim.url}/v1/status", timeout=10).json()
    assert status["coordinator"] is True and status["nodeVersion"]["version"] == "446" and status["nodeId"]
    assert requests.head(f"{sim.url}/v1/status", timeout=10).status_code == 200
    nodes = requests.get(f"{sim.url}/v1/node", headers=MONITOR, timeout=10).json()
    assert len(nodes) == 1 and nodes[0]["recentFailureRatio"] == 0.0


def test_ui_stats_need_the_login_cookie(sim):
    assert requests.get(f"{sim.url}/ui/api/stats", timeout=10).status_code == 401
    stats = ui_stats(sim.url)
    assert set(stats) >= {
        "runningQueries",
        "queuedQueries",
        "blockedQueries",
        "activeWorkers",
        "activeCoordinators",
        "runningDrivers",
        "totalAvailableProcessors",
        "reservedMemory",
    }
    assert stats["activeWorkers"] >= 1
    assert all(isinstance(stats[k], int) for k in ("runningQueries", "queuedQueries", "activeWorkers"))


def test_ui_login_checks_configured_credentials(sim_factory):
    server = sim_factory(name="locked", ui_user="admin", ui_password="secret")
    with requests.Session() as session:
        wrong = session.post(
            f"{server.url}/ui/login", data={"username": "admin", "password": "nope"}, allow_redirects=False, timeout=10
        )
        assert wrong.status_code == 303 and "error" in wrong.headers["Location"]
        assert session.get(f"{server.url}/ui/api/stats", timeout=10).status_code == 401
        right = session.post(
            f"{server.url}/ui/login",
            data={"username": "admin", "password": "secret"},
            allow_redirects=False,
            timeout=10,
        )
        assert right.status_code == 303
        assert session.get(f"{server.url}/ui/api/stats", timeout=10).status_code == 200


def test_jmx_beans_have_a_value_on_every_attribute(sim):
    manager = requests.get(
        f"{sim.url}/v1/jmx/mbean/trino.execution:name=QueryManager", headers=MONITOR, timeout=10
    ).json()
    assert manager["objectName"] == "trino.execution:name=QueryManager"
    names = {a["name"] for a in manager["attributes"]}
    assert {"RunningQueries", "QueuedQueries"} <= names
    assert all("value" in a for a in manager["attributes"])
    nodes = requests.get(
        f"{sim.url}/v1/jmx/mbean/trino.metadata:name=DiscoveryNodeManager", headers=MONITOR, timeout=10
    ).json()
    assert {a["name"]: a["value"] for a in nodes["attributes"]}["ActiveNodeCount"] == 2
    assert requests.get(f"{sim.url}/v1/jmx/mbean/no.such:name=Bean", timeout=10).status_code == 404


def test_metrics_are_openmetrics_with_trino_names_and_filterable(sim):
    response = requests.get(f"{sim.url}/metrics", headers=MONITOR, timeout=10)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    text = response.text
    assert text.rstrip().endswith("# EOF")
    samples = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert "trino_execution_name_QueryManager_RunningQueries" in samples
    assert float(samples["trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount"]) == 2.0
    filtered = requests.get(
        f"{sim.url}/metrics?name[]=trino_execution_name_QueryManager_QueuedQueries", headers=MONITOR, timeout=10
    ).text
    lines = [line for line in filtered.splitlines() if line and not line.startswith("#")]
    assert [line.split(" ")[0] for line in lines] == ["trino_execution_name_QueryManager_QueuedQueries"]


def test_query_list_and_query_info(sim):
    first = submit(sim.url, "SELECT 'listed'", user="lister", **{"X-Trino-Source": "monitor-test"})
    follow(first)
    listed = requests.get(f"{sim.url}/v1/query", headers=MONITOR, timeout=10).json()
    mine = [q for q in listed if q["queryId"] == first["id"]]
    assert mine and mine[0]["state"] == "FINISHED" and mine[0]["session"]["user"] == "lister"
    assert mine[0]["session"]["source"] == "monitor-test" and mine[0]["query"] == "SELECT 'listed'"
    info = requests.get(f"{sim.url}/v1/query/{first['id']}", headers=MONITOR, timeout=10).json()
    assert info["queryId"] == first["id"]
    assert requests.get(f"{sim.url}/v1/query/20200101_000000_00000_zzzzz", timeout=10).status_code == 410
    assert requests.get(f"{sim.url}/ui/api/query/{first['id']}", timeout=10).status_code == 200
    page = requests.get(f"{sim.url}/ui/query.html?{first['id']}", timeout=10)
    assert page.status_code == 200 and first["id"] in page.text


def test_queued_filter_and_kill(sim_factory):
    server = sim_factory(name="killer", max_running=1)
    running = submit(server.url, "SELECT 1", **{"X-Trino-Session": "sim_run_time=60s"})
    requests.get(running["nextUri"], timeout=10)
    waiting = submit(server.url, "SELECT 2")
    requests.get(waiting["nextUri"], timeout=10)
    queued = requests.get(f"{server.url}/v1/query?state=QUEUED", headers=MONITOR, timeout=10).json()
    assert [q["queryId"] for q in queued] == [waiting["id"]]
    assert requests.put(f"{server.url}/v1/query/{running['id']}/killed", timeout=10).status_code == 202
    assert requests.put(f"{server.url}/v1/query/{running['id']}/killed", timeout=10).status_code == 409
    assert server.query(running["id"])["state"] == "FAILED"


def test_kill_query_procedure_cancels_another_query(sim_factory):
    server = sim_factory(name="procedure")
    victim = submit(server.url, "SELECT 1", **{"X-Trino-Session": "sim_run_time=60s"})
    requests.get(victim["nextUri"], timeout=10)
    run_query(server.url, f"CALL system.runtime.kill_query(query_id => '{victim['id']}', message => 'too slow')")
    record = server.query(victim["id"])
    assert record["state"] == "FAILED" and "too slow" in record["error"]["message"]
