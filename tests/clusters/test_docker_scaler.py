"""The docker scaler against the real Docker engine: a trinosim container (the chaos suite's
`ContainerCluster`) stopped and started again by its name, a container that does not exist, and an
engine that does not answer."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chaos import containers
from chaos.containers import ContainerCluster
from gateway.clusters.docker import DockerScaler
from gateway.clusters.scaler import ScalerError, scaler_for
from gateway.store.backend import BackendScaler

reason = containers.unavailable_reasons().get("container")
# As the chaos suite decides for its container clusters: skipped, with the reason, when no engine answers.
needs_engine = pytest.mark.skipif(reason is not None, reason=f"container clusters: {reason}")


def docker_scaler(container: str, timeout: float = 60) -> DockerScaler:
    scaler = scaler_for(BackendScaler(kind="docker", container=container, timeout=timeout), "trino-etl")
    assert isinstance(scaler, DockerScaler)
    return scaler


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/info", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def cluster() -> Iterator[ContainerCluster]:
    """A running trinosim container; removed (by id) after the test, whatever state it is left in."""
    started = ContainerCluster(f"scaler-{uuid.uuid4().hex[:6]}").start()
    try:
        yield started
    finally:
        started.stop(timeout=1)
        assert containers.containers(cluster=started.name) == [], "container left behind"


@pytest.mark.slow
@needs_engine
def test_a_container_stopped_and_started_again_by_its_name(cluster):
    assert cluster.container is not None
    name = cluster.container.get_wrapped_container().name
    scaler = docker_scaler(name)

    async def step(*calls: Callable[[], Any]) -> list[Any]:
        return [await call() for call in calls]

    assert asyncio.run(scaler.started()) is True
    # Stopped twice: the second is the engine's 304, which is no failure.
    assert asyncio.run(step(scaler.stop, scaler.stop, scaler.started)) == [None, None, False]
    assert not answers(cluster.url)

    assert asyncio.run(step(scaler.start, scaler.start, scaler.started)) == [None, None, True]
    wait_for(f"trinosim answering again at {cluster.url}", lambda: answers(cluster.url), 60)


@pytest.mark.slow
@needs_engine
@pytest.mark.parametrize("action", ["start", "stop", "started"])
def test_a_container_that_does_not_exist_is_a_clear_error(action):
    name = f"scaler-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ScalerError, match=rf"of trino-etl \(container {name}\): no container named '{name}'"):
        asyncio.run(getattr(docker_scaler(name), action)())


@pytest.mark.parametrize("action", ["start", "stop", "started"])
def test_an_engine_that_does_not_answer_is_a_clear_error_naming_its_socket(tmp_path, monkeypatch, action):
    socket = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    scaler = docker_scaler("trino-etl", timeout=5)
    with pytest.raises(ScalerError, match=rf"no Docker engine answers at unix://{socket}"):
        asyncio.run(getattr(scaler, action)())


def test_a_docker_host_that_is_no_unix_socket_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    with pytest.raises(ScalerError, match=r"DOCKER_HOST=tcp://127.0.0.1:2375 is no unix:// socket"):
        asyncio.run(docker_scaler("trino-etl").start())


def test_a_name_no_container_can_have_is_refused_before_any_call():
    with pytest.raises(ValueError, match=r"no Docker container can be named '\.\.'"):
        docker_scaler("..")
