"""A cluster in a Docker container (a scaler of kind ``docker``): the container is started and
stopped, never created or removed, so it must exist (``docker create`` or ``docker run`` then
``docker stop``), with a restart policy of ``no`` or ``unless-stopped`` so that the engine leaves a
stopped one stopped.

The gateway talks to the Docker engine's HTTP API on its unix socket: ``DOCKER_HOST`` when it is a
``unix://`` address, else ``/var/run/docker.sock``. The gateway's user must be able to open it (root,
or the ``docker`` group: which is as good as root on that host, so give it to the gateway knowingly).
"""

from __future__ import annotations

import asyncio
import os
import re
from urllib.parse import quote

import httpx

from gateway.clusters.errors import ScalerError
from gateway.store.backend import BackendScaler

DEFAULT_SOCKET = "/var/run/docker.sock"
# Seconds the engine gives the container's processes between SIGTERM and SIGKILL on a stop (Docker's
# own default is 10; a Trino coordinator finishing its shutdown may need more).
STOP_GRACE_SECONDS = 30
# What Docker accepts as a container's name or id: a name such as ".." would make another API path.
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def docker_socket() -> str | None:
    """The engine's unix socket: from ``DOCKER_HOST`` (None when it names no unix socket) or the default."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if not host:
        return DEFAULT_SOCKET
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class DockerScaler:
    """Starts and stops one existing container through the Docker engine's API (module docstring)."""

    def __init__(self, spec: BackendScaler, name: str | None = None, socket: str | None = None) -> None:
        if spec.kind != "docker" or not spec.container:
            raise ValueError("a docker scaler needs a spec of kind docker with container")
        if not _CONTAINER.match(spec.container):
            raise ValueError(f"no Docker container can be named {spec.container!r}")
        self.spec = spec
        self.container: str = spec.container
        self.what = f"{name} (container {self.container})" if name else f"container {self.container}"
        self.socket = socket or docker_socket()

    async def start(self) -> None:
        """``POST /containers/{name}/start``: 204 started, 304 it already was."""
        await self._change("start", f"/containers/{quote(self.container, safe='')}/start")

    async def stop(self) -> None:
        """``POST /containers/{name}/stop``: 204 stopped, 304 it already was. The engine sends SIGTERM,
        then SIGKILL after its grace period, kept within the scaler's timeout."""
        grace = min(STOP_GRACE_SECONDS, int(self.spec.timeout * 3 / 4))
        await self._change("stop", f"/containers/{quote(self.container, safe='')}/stop", {"t": str(grace)})

    async def started(self) -> bool:
        """``GET /containers/{name}/json``: its ``State.Running`` (a paused container counts as running)."""
        response = await self._call("status", "GET", f"/containers/{quote(self.container, safe='')}/json")
        if response.status_code != 200:
            raise self._refused("status", response)
        try:
            return bool(response.json()["State"]["Running"])
        except (ValueError, KeyError, TypeError):
            raise ScalerError(f"status of {self.what}: the Docker engine's answer has no State.Running") from None

    async def _change(self, action: str, path: str, params: dict[str, str] | None = None) -> None:
        response = await self._call(action, "POST", path, params)
        if response.status_code not in (204, 304):
            raise self._refused(action, response)

    async def _call(self, action: str, method: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        if self.socket is None:
            raise ScalerError(
                f"{action} of {self.what}: DOCKER_HOST={os.environ.get('DOCKER_HOST')} is no unix:// socket, "
                "and the docker scaler talks to the engine on its unix socket only"
            )
        transport = httpx.AsyncHTTPTransport(uds=self.socket)
        # trust_env off: a proxy configured for the gateway's outbound HTTP is not the engine's.
        async with httpx.AsyncClient(
            transport=transport, base_url="http://docker", timeout=self.spec.timeout, trust_env=False
        ) as client:
            try:
                # httpx bounds each read and write; the whole call is bounded here.
                async with asyncio.timeout(self.spec.timeout):
                    return await client.request(method, path, params=params)
            except (TimeoutError, httpx.TimeoutException):
                raise ScalerError(f"{action} of {self.what} timed out after {self.spec.timeout:g} s") from None
            except httpx.TransportError as error:
                raise ScalerError(
                    f"{action} of {self.what}: no Docker engine answers at unix://{self.socket}: "
                    f"{error or type(error).__name__}"
                ) from None

    def _refused(self, action: str, response: httpx.Response) -> ScalerError:
        message = _engine_message(response)
        if response.status_code == 404:
            return ScalerError(f"{action} of {self.what}: no container named {self.container!r}", message)
        status = response.status_code
        return ScalerError(f"{action} of {self.what} failed: the Docker engine answered {status}", message)


def _engine_message(response: httpx.Response) -> str:
    """The engine's ``{"message": ...}``, or the body as it came."""
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return response.text
