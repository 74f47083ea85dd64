"""The container cluster kind: trinosim in containers behaves like a Trino cluster to the real
client and to the gateway, and kill, pause and restart do to it what they do to a real one."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trino

from chaos import containers
from chaos.containers import ContainerCluster, TrinoContainerCluster
from chaos.images import host_mounts, python_command, trinosim_image
from trinosim.gateway_process import GatewayProcess, running

reason = containers.unavailable_reasons().get("container")
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

HEALTH = {"interval": 0.3, "timeout": 1.0, "failure_threshold": 2, "success_threshold": 1}


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def run_query(port: int, sql: str, **session: str) -> list[list[Any]]:
    connection = trino.dbapi.connect(
        host="127.0.0.1", port=port, user="chaos", session_properties=session, request_timeout=10
    )
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        connection.close()


def states(gateway: GatewayProcess) -> dict[str, str]:
    return {b["name"]: b["state"] for b in gateway.call("GET", "/gateway/health")[1]}


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/info", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="module", autouse=True)
def no_container_left_behind() -> Iterator[None]:
    """Torn down last: by then every container this module started must be gone (``docker ps -a``)."""
    yield
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label={containers.OWNER_LABEL}={containers.OWNER}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert listed.stdout.split() == [], "containers left behind"


@pytest.fixture(scope="module")
def clusters() -> Iterator[list[ContainerCluster]]:
    started = [ContainerCluster("box-1"), ContainerCluster("box-2")]
    with running(started):
        yield started


@pytest.fixture
def live(clusters: list[ContainerCluster]) -> list[ContainerCluster]:
    """The module's clusters, each running: one a test before killed is started again."""
    for cluster in clusters:
        if not answers(cluster.url):
            cluster.start()
    return clusters


@pytest.fixture
def gateway(live: list[ContainerCluster]) -> Iterator[GatewayProcess]:
    clusters = live
    config = {
        "health": HEALTH,
        "backends": [{"name": c.name, "proxy_to": c.url, "routing_group": "adhoc"} for c in clusters],
    }
    with GatewayProcess(config=config) as process:
        wait_for("both backends HEALTHY", lambda: set(states(process).values()) == {"HEALTHY"})
        yield process


def test_real_client_queries_each_container_directly_and_through_the_gateway(clusters, gateway):
    for cluster in clusters:
        assert run_query(cluster.port, "SELECT count(*) FROM tpch.tiny.nation") == [[25]]
    routed = {tuple(run_query(gateway.port, f"SELECT {i}")[0]) for i in range(6)}
    assert routed == {(i,) for i in range(6)}
    served = {c.name for c in clusters if c.queries()}
    assert served == {"box-1", "box-2"}, "the gateway sent queries to both containers"


def test_killed_container_fails_its_running_query_and_the_gateway_marks_it_unhealthy(clusters, gateway):
    outcome: dict[str, Any] = {}

    def slow_query() -> None:
        try:
            # A statement that writes: never sent to another cluster (a read-only one that has
            # returned no row would move to the survivor: chaos scenario 1 with failover).
            outcome["rows"] = run_query(gateway.port, "CREATE TABLE t AS SELECT 42 AS n", sim_run_time="60")
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=slow_query, daemon=True)
    thread.start()
    victim = wait_for(
        "the slow query running on a container",
        lambda: next((c for c in clusters if any(q["state"] == "RUNNING" for q in c.queries())), None),
    )
    started = time.monotonic()
    victim.kill()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the client still waits on a killed cluster"
    print(f"client error {time.monotonic() - started:.2f}s after the kill: {outcome.get('error')!r}")
    assert "rows" not in outcome
    assert isinstance(outcome["error"], trino.exceptions.Error | trino.exceptions.HttpError)
    wait_for(f"{victim.name} UNHEALTHY", lambda: states(gateway)[victim.name] == "UNHEALTHY")
    print(f"gateway marked {victim.name} UNHEALTHY {time.monotonic() - started:.2f}s after the kill")
    survivor = next(c for c in clusters if c is not victim)
    assert states(gateway)[survivor.name] == "HEALTHY"
    assert run_query(gateway.port, "SELECT 7") == [[7]], "new queries go to the survivor"


def test_paused_container_answers_nothing_until_resumed(live):
    cluster = live[0]
    cluster.pause()
    try:
        assert not answers(cluster.url, timeout=1.0)
    finally:
        cluster.resume()
    assert answers(cluster.url, timeout=5.0)
    assert run_query(cluster.port, "SELECT 1") == [[1]]


def test_restarted_container_comes_back_under_its_name_and_port_and_the_gateway_uses_it(clusters, gateway):
    cluster = clusters[1]
    old_id, url = cluster.container_id, cluster.url
    cluster.kill()
    wait_for(f"{cluster.name} UNHEALTHY", lambda: states(gateway)[cluster.name] == "UNHEALTHY")
    cluster.start()
    assert (cluster.url, cluster.name) == (url, "box-2")
    assert cluster.container_id != old_id
    assert containers.containers(cluster=cluster.name) == [cluster.container_id], "the killed container is gone"
    wait_for(f"{cluster.name} HEALTHY again", lambda: states(gateway)[cluster.name] == "HEALTHY")
    before = len(cluster.queries())
    wait_for(
        "a query routed to the restarted cluster",
        lambda: run_query(gateway.port, "SELECT 1") and cluster.queries()[before:],
    )


def test_faults_reach_trinosim_in_the_container(live):
    cluster = live[0]
    try:
        assert cluster.set_faults(error_rate=1.0, error_status=503)["error_rate"] == 1.0
        with pytest.raises(trino.exceptions.HttpError):
            run_query(cluster.port, "SELECT 1")
    finally:
        cluster.set_faults(error_rate=0.0)
    assert run_query(cluster.port, "SELECT 1") == [[1]]


def test_stopped_clusters_leave_no_container_behind():
    cluster = ContainerCluster("box-short-lived")
    try:
        cluster.start()
        cluster.kill()
        cluster.start()
        cluster.pause()
    finally:
        cluster.stop()  # paused: stop must still end and remove it
    assert containers.containers(cluster=cluster.name) == []
    assert not answers(cluster.url)


@pytest.mark.skipif(
    "trino" in containers.unavailable_reasons(), reason=containers.unavailable_reasons().get("trino", "")
)
def test_real_trino_container_runs_a_query_and_restarts_on_its_port():
    cluster = TrinoContainerCluster("real-trino")
    try:
        cluster.start()
        assert run_query(cluster.port, "SELECT count(*) FROM tpch.tiny.nation") == [[25]]
        cluster.kill()
        cluster.start()
        assert run_query(cluster.port, "SELECT 1") == [[1]]
    finally:
        cluster.stop()
    assert containers.containers(cluster=cluster.name) == []


class StandInTrinoCluster(TrinoContainerCluster):
    """The trino kind's container (its Trino config file on its own port, host network, memory cap,
    testcontainers' Trino wait) around an image that acts out the real one's start-up: the real
    image cannot be had here, and without this the kind's wiring would never run."""

    def _container(self):
        container = super()._container()
        for host, inside in host_mounts().items():
            container.with_volume_mapping(host, inside, "ro")
        return container


@pytest.fixture(scope="module")
def stand_in_trino_image(tmp_path_factory) -> Iterator[str]:
    """trinosim listening where the Trino config file says, after Trino's start-up line."""
    from testcontainers.core.image import DockerImage

    directory = tmp_path_factory.mktemp("stand-in-trino")
    script = (
        "port=$(sed -n 's/^http-server.http.port=//p' /etc/trino/config.properties); "
        "echo '======== SERVER STARTED ========'; "
        f"exec {' '.join(python_command())} --host 127.0.0.1 --port $port --name stand-in"
    )
    (directory / "Dockerfile").write_text(f"FROM {trinosim_image()}\nCMD {json.dumps(['/bin/sh', '-c', script])}\n")
    image = DockerImage(path=directory, tag=f"trino-ha-gateway/stand-in-trino:{containers.OWNER}", pull=False)
    with image:
        yield str(image)


def test_trino_kind_starts_on_its_port_from_its_config_and_restarts_there(stand_in_trino_image):
    cluster = StandInTrinoCluster("stand-in-trino", image=stand_in_trino_image)
    try:
        cluster.start()
        config = cluster.container.get_wrapped_container().attrs["HostConfig"]
        assert (config["NetworkMode"], config["Memory"]) == ("host", 2 << 30)
        assert run_query(cluster.port, "SELECT 1") == [[1]]
        url = cluster.url
        cluster.kill()
        cluster.start()
        assert cluster.url == url
        assert run_query(cluster.port, "SELECT 2") == [[2]]
        with pytest.raises(NotImplementedError, match="no fault knobs"):
            cluster.set_faults(error_rate=1.0)
    finally:
        cluster.stop()
    assert containers.containers(cluster=cluster.name) == []
