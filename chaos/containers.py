"""Clusters in containers for the chaos suite: trinosim (`ContainerCluster`) and a real Trino
(`TrinoContainerCluster`), both started with testcontainers on the host's network.

Both follow the suite's ``Cluster`` protocol (``name``, ``url``, ``start``, ``stop``, ``kill``,
``pause``, ``resume``, ``set_faults``). A cluster keeps its name and port for life: ``start`` after
``stop`` or ``kill`` replaces the container with a new one at the same address. Ryuk (testcontainers'
reaper) is an image that cannot be pulled here, so it is off and this module removes its containers
itself, by id: ``stop`` removes the cluster's container, and at exit every container this process
started is removed (`remove_containers`); containers left by a process that died are removed the
next time a cluster starts (`remove_orphans`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import docker.errors

from chaos.images import LABEL, docker_client, docker_unavailable_reason, host_mounts, python_command, trinosim_image
from trinosim.gateway_process import free_port
from trinosim.harness import SimAdmin, option_flags

# Must be set before testcontainers reads its configuration, and set again in case it already has.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

testcontainers_config.ryuk_disabled = True

TRINO_IMAGE_ENV = "CHAOS_TRINO_IMAGE"
OWNER_LABEL = f"{LABEL}.owner"
OWNER_PID_LABEL = f"{LABEL}.owner-pid"
CLUSTER_LABEL = f"{LABEL}.cluster"
# Labels every container of this process carries: `remove_containers` finds them by it.
OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ContainerClusterError(RuntimeError):
    """A cluster's container did not start or answer; the message carries the end of its log."""


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class _DockerCluster:
    """What both kinds share: one container at a time per cluster, on a port fixed at creation."""

    kind = ""
    ready_timeout = 60.0

    def __init__(self, name: str, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.container: DockerContainer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def container_id(self) -> str | None:
        return self.container.get_container_id() if self.container is not None else None

    def _container(self) -> DockerContainer:
        raise NotImplementedError

    def _kwargs(self) -> dict[str, Any]:
        """docker-py ``containers.create`` arguments (testcontainers' ``with_kwargs`` replaces them all)."""
        return {
            "network_mode": "host",
            "labels": {
                LABEL: self.kind,
                OWNER_LABEL: OWNER,
                OWNER_PID_LABEL: str(os.getpid()),
                CLUSTER_LABEL: self.name,
            },
        }

    def start(self, timeout: float | None = None) -> _DockerCluster:
        """Start a new container for this cluster (removing the one before, stopped or killed) and
        wait until ``GET /v1/info`` answers with ``starting: false``."""
        self._remove()
        remove_orphans()
        container = self._container().with_name(f"chaos-{self.name}-{OWNER}").with_kwargs(**self._kwargs())
        self.container = container
        try:
            container.start()
        except BaseException:
            self._remove()
            raise
        self._wait_ready(timeout or self.ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.container is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if _get_json(f"{self.url}/v1/info", timeout=2).get("starting") is False:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                log = self.log()
                self._remove()
                raise ContainerClusterError(f"{self.kind} cluster {self.name} exited at start-up:\n{log}")
            time.sleep(0.1)
        log = self.log()
        self._remove()
        raise ContainerClusterError(
            f"{self.kind} cluster {self.name} not ready within {timeout}s at {self.url}:\n{log}"
        )

    def log(self) -> str:
        if self.container is None:
            return ""
        try:
            return self.container.get_wrapped_container().logs(tail=50).decode(errors="replace")
        except docker.errors.DockerException as error:
            return f"(no log: {error})"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``timeout``, then remove the container."""
        if self.container is None:
            return
        # Already gone or paused: removing it below ends it either way.
        with contextlib.suppress(docker.errors.DockerException):
            self.container.get_wrapped_container().stop(timeout=int(timeout))
        self._remove()

    def kill(self) -> None:
        """``docker kill``: SIGKILL, no goodbye to the clients. The container stays until the next
        ``start`` or ``stop`` so its log can be read."""
        if self.container is not None:
            self.container.get_wrapped_container().kill()

    def pause(self) -> None:
        """``docker pause``: every process of the container frozen; connections stay open, unanswered."""
        if self.container is not None:
            self.container.get_wrapped_container().pause()

    def resume(self) -> None:
        if self.container is not None:
            self.container.get_wrapped_container().unpause()

    def _remove(self) -> None:
        container, self.container = self.container, None
        if container is not None and container._container is not None:  # None: creating it failed
            _remove_by_id(container._container.id)

    def __enter__(self) -> _DockerCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ContainerCluster(SimAdmin, _DockerCluster):
    """trinosim in a container of the locally built image (`chaos.images`).

    ``ContainerCluster("trino-1", max_running=2)`` takes ``python -m trinosim`` options as keywords,
    as ``TrinoSimProcess`` does (``True`` for a flag).
    """

    kind = "container"
    ready_timeout = 60.0

    def __init__(self, name: str, port: int | None = None, **options: Any) -> None:
        super().__init__(name, port)
        self.options = options

    def command(self) -> list[str]:
        return [*python_command(), *option_flags(name=self.name, host="127.0.0.1", port=self.port, **self.options)]

    def _container(self) -> DockerContainer:
        container = DockerContainer(trinosim_image()).with_command(self.command())
        for host, inside in host_mounts().items():
            container.with_volume_mapping(host, inside, "ro")
        return container


_TRINO_CONFIG = """\
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port={port}
discovery.uri=http://127.0.0.1:{port}
"""


class TrinoContainerCluster(_DockerCluster):
    """A real Trino from the image named by ``CHAOS_TRINO_IMAGE`` (present locally: nothing can be
    pulled), through testcontainers' Trino module, listening on its own port of the host."""

    kind = "trino"
    ready_timeout = 180.0

    def __init__(self, name: str, port: int | None = None, image: str | None = None) -> None:
        super().__init__(name, port)
        self.image = image or os.environ.get(TRINO_IMAGE_ENV, "")
        self.config_dir: Path | None = None  # made when a container is, removed when the cluster stops

    def _container(self) -> DockerContainer:
        from testcontainers.community.trino import TrinoContainer

        if self.config_dir is None:
            self.config_dir = Path(tempfile.mkdtemp(prefix=f"chaos-trino-{self.name}-"))
        config = self.config_dir / "config.properties"
        config.write_text(_TRINO_CONFIG.format(port=self.port))
        container = TrinoContainer(self.image, port=self.port, container_start_timeout=int(self.ready_timeout))
        container.ports = {}  # host networking: nothing to publish
        return container.with_volume_mapping(str(config), "/etc/trino/config.properties", "ro")

    def _kwargs(self) -> dict[str, Any]:
        # The image's JVM takes 80% of the memory it sees: give it a bounded share of the machine.
        return {**super()._kwargs(), "mem_limit": "2g"}

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.config_dir is not None:
            shutil.rmtree(self.config_dir, ignore_errors=True)
            self.config_dir = None

    def set_faults(self, **faults: Any) -> None:
        raise NotImplementedError(
            f"cluster {self.name} is a real Trino: it has no fault knobs (trinosim's /_sim/faults); "
            "use kill, pause or a fault proxy in front of it"
        )


def _remove_by_id(container_id: str) -> None:
    client = docker_client()
    try:
        client.containers.get(container_id).remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def containers(owner: str | None = OWNER, cluster: str | None = None) -> list[str]:
    """Ids of the chaos suite's containers in any state: this process's (everyone's with ``owner=None``),
    of one cluster if ``cluster`` names it."""
    labels = [f"{OWNER_LABEL}={owner}" if owner else LABEL]
    if cluster:
        labels.append(f"{CLUSTER_LABEL}={cluster}")
    client = docker_client()
    try:
        return [c.id for c in client.containers.list(all=True, filters={"label": labels})]
    finally:
        client.close()


def remove_containers() -> None:
    """Remove every container this process started, by id."""
    if docker_unavailable_reason() is None:
        for container_id in containers():
            _remove_by_id(container_id)


def remove_orphans() -> None:
    """Remove containers left behind by chaos sessions whose process is gone (killed, crashed)."""
    client = docker_client()
    try:
        for container in client.containers.list(all=True, filters={"label": OWNER_PID_LABEL}):
            pid = int(container.labels.get(OWNER_PID_LABEL, "0"))
            if pid > 0 and not _alive(pid):
                container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass  # removed by someone else meanwhile
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


atexit.register(remove_containers)


def trino_image_unavailable_reason() -> str | None:
    image = os.environ.get(TRINO_IMAGE_ENV)
    if not image:
        return (
            f"no real Trino image: set {TRINO_IMAGE_ENV} to a trinodb/trino image present locally "
            f"(e.g. {TRINO_IMAGE_ENV}=trinodb/trino:476); none can be pulled here"
        )
    reason = docker_unavailable_reason()
    if reason:
        return reason
    client = docker_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"{TRINO_IMAGE_ENV}={image}, but no such image is present locally (nothing can be pulled here)"
    finally:
        client.close()
    return None


def unavailable_reasons() -> dict[str, str]:
    """Cluster kinds of this module that cannot run here, each with the reason."""
    reasons = {"container": docker_unavailable_reason(), "trino": trino_image_unavailable_reason()}
    return {kind: reason for kind, reason in reasons.items() if reason}


def available_kinds() -> dict[str, type]:
    """Cluster kinds of this module that can run here: ``{"container": ContainerCluster}`` when a
    Docker engine answers, and ``"trino"`` too when the real Trino image is present."""
    unavailable = unavailable_reasons()
    kinds: dict[str, type] = {"container": ContainerCluster, "trino": TrinoContainerCluster}
    return {kind: cls for kind, cls in kinds.items() if kind not in unavailable}
