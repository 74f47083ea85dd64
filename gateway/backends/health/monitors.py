"""Health checks against the endpoints Trino serves, one class per kind (trinodb/trino-gateway's set,
with QUERY in place of its JDBC check: a probe statement run through the client protocol).

Every check goes through the upstream facade's ``fetch`` (httpx, with the backend's TLS settings),
so a failed call is one of ``gateway.upstream``'s errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import orjson

from gateway.backends.health.state import ClusterStats
from gateway.store.backend import Backend
from gateway.upstream import Answer, Upstream, UpstreamError

if TYPE_CHECKING:
    from gateway.config import HealthConfig


class CheckFailed(Exception):
    """The cluster is not fit for queries; the message says why."""


class StillStarting(Exception):
    """The cluster answered, and says it is still starting."""


class Monitor(Protocol):
    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None: ...


def _json(answer: Answer, what: str) -> object:
    if answer.status != 200:
        raise CheckFailed(f"{what} answered HTTP {answer.status}")
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise CheckFailed(f"{what} did not answer JSON") from None


class NoopMonitor:
    """Always healthy: for clusters another system watches."""

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: object) -> float | None:
    """Seconds in an airlift Duration as Trino writes it (``2.37m``), or None."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    return float(match.group(1)) * _SECONDS[match.group(2)] if match else None


class InfoApiMonitor:
    """``GET /v1/info``: up, and not ``starting``; its uptime tells when the cluster restarted."""

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        info = _json(await upstream.fetch(f"{backend.proxy_to}/v1/info", backend=backend), "/v1/info")
        if not isinstance(info, dict):
            raise CheckFailed("/v1/info did not answer an object")
        if info.get("starting"):
            raise StillStarting()
        return ClusterStats(uptime=parse_duration(info.get("uptime")))


class UiApiMonitor:
    """``POST /ui/login`` then ``GET /ui/api/stats``: queued, running and active workers."""

    def __init__(self, settings: HealthConfig) -> None:
        self.settings = settings
        self._cookies: dict[str, str] = {}

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        stats = await self._stats(upstream, backend, login=backend.proxy_to not in self._cookies)
        try:
            workers = int(stats.get("activeWorkers", 0))
            running, queued = int(stats.get("runningQueries", 0)), int(stats.get("queuedQueries", 0))
        except (TypeError, ValueError):
            raise CheckFailed("/ui/api/stats has counts that are not numbers") from None
        if workers < 1:
            raise CheckFailed("no active workers")
        return ClusterStats(running=running, queued=queued, workers=workers)

    async def _stats(self, upstream: Upstream, backend: Backend, login: bool) -> dict:
        url = backend.proxy_to
        if login:
            form = {"username": self.settings.ui_user, "password": self.settings.ui_password}
            answer = await upstream.fetch(f"{url}/ui/login", "POST", backend=backend, data=form)
            if answer.status >= 400:
                raise CheckFailed(f"/ui/login answered HTTP {answer.status}")
            cookie = answer.header(b"set-cookie")
            if not cookie:
                raise CheckFailed("/ui/login refused the monitor's credentials")
            self._cookies[url] = cookie.split(";", 1)[0]
        answer = await upstream.fetch(f"{url}/ui/api/stats", backend=backend, headers={"Cookie": self._cookies[url]})
        if answer.status == 401 and not login:
            self._cookies.pop(url, None)
            return await self._stats(upstream, backend, login=True)
        stats = _json(answer, "/ui/api/stats")
        if not isinstance(stats, dict):
            raise CheckFailed("/ui/api/stats did not answer an object")
        return stats


class JmxMonitor:
    """``/v1/jmx/mbean/...``: QueryManager's running and queued queries, active node count."""

    def __init__(self, settings: HealthConfig) -> None:
        self.headers = {"X-Trino-User": settings.user}

    async def _bean(self, upstream: Upstream, backend: Backend, name: str) -> dict[str, float]:
        answer = await upstream.fetch(f"{backend.proxy_to}/v1/jmx/mbean/{name}", backend=backend, headers=self.headers)
        bean = _json(answer, name)
        try:
            return {a["name"]: a["value"] for a in bean["attributes"]}  # type: ignore[index]
        except (KeyError, TypeError):
            raise CheckFailed(f"{name} has an attribute without a value") from None

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        queries, nodes = await asyncio.gather(
            self._bean(upstream, backend, "trino.execution:name=QueryManager"),
            self._bean(upstream, backend, "trino.metadata:name=DiscoveryNodeManager"),
        )
        try:
            active = int(nodes.get("ActiveNodeCount", 0))
            running, queued = int(queries.get("RunningQueries", 0)), int(queries.get("QueuedQueries", 0))
        except (TypeError, ValueError):
            raise CheckFailed("the JMX beans have counts that are not numbers") from None
        if active < 1:
            raise CheckFailed("no active nodes")
        return ClusterStats(running=running, queued=queued, workers=active)


_RUNNING = "trino_execution_name_QueryManager_RunningQueries"
_QUEUED = "trino_execution_name_QueryManager_QueuedQueries"
_NODES = "trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount"


class MetricsMonitor:
    """``GET /metrics`` (OpenMetrics): thresholds on any metric mark the cluster unhealthy."""

    def __init__(self, settings: HealthConfig) -> None:
        self.minimums = tuple(settings.metric_minimums.items())
        self.maximums = tuple(settings.metric_maximums.items())
        self.headers = {"X-Trino-User": settings.user}
        names = {_RUNNING, _QUEUED, _NODES} | {n for n, _ in self.minimums + self.maximums}
        self.names = sorted(names)

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        params = [("name[]", name) for name in self.names]
        answer = await upstream.fetch(
            f"{backend.proxy_to}/metrics", backend=backend, params=params, headers=self.headers
        )
        if answer.status != 200:
            raise CheckFailed(f"/metrics answered HTTP {answer.status}")
        values: dict[str, float] = {}
        for line in answer.body.decode("utf-8", errors="replace").splitlines():
            if line and not line.startswith("#"):
                parts = line.split(" ")
                if len(parts) >= 2:
                    try:
                        values[parts[0]] = float(parts[1])
                    except ValueError:
                        continue
        for name, minimum in self.minimums:
            if name not in values:
                raise CheckFailed(f"metric {name} is missing")
            if values[name] < minimum:
                raise CheckFailed(f"metric {name} is {values[name]:g}, below {minimum:g}")
        for name, maximum in self.maximums:
            if name in values and values[name] > maximum:
                raise CheckFailed(f"metric {name} is {values[name]:g}, above {maximum:g}")
        nodes = values.get(_NODES)
        return ClusterStats(
            running=int(values.get(_RUNNING, 0)),
            queued=int(values.get(_QUEUED, 0)),
            workers=None if nodes is None else int(nodes),
        )


class QueryMonitor:
    """Runs a probe statement through the client protocol, as a client would."""

    def __init__(self, settings: HealthConfig) -> None:
        self.probe_sql = settings.probe_sql
        self.headers = {"X-Trino-User": settings.user, "X-Trino-Source": "trino-gateway-health"}

    async def check(self, upstream: Upstream, backend: Backend) -> ClusterStats | None:
        answer = await upstream.fetch(
            f"{backend.proxy_to}/v1/statement",
            "POST",
            backend=backend,
            content=self.probe_sql.encode(),
            headers=self.headers,
        )
        page = _json(answer, "POST /v1/statement")
        next_uri = None
        try:
            while isinstance(page, dict) and page.get("nextUri"):
                next_uri = _same_origin(backend, page["nextUri"])
                page = _json(
                    await upstream.fetch(next_uri, backend=backend, headers=self.headers), "the probe's nextUri"
                )
            next_uri = None
        finally:
            if next_uri is not None:  # stopped early (time-out): do not leave the probe running
                await _cancel(upstream, backend, next_uri, self.headers)
        if not isinstance(page, dict):
            raise CheckFailed("the probe statement got an answer that is not a query result")
        error = page.get("error")
        if error:
            name = error.get("errorName", "error") if isinstance(error, dict) else "error"
            if name == "SERVER_STARTING_UP":
                raise StillStarting()
            raise CheckFailed(f"the probe statement failed: {name}")
        return None


def _same_origin(backend: Backend, uri: object) -> str:
    """A nextUri the probe may follow: on the backend it asked (a cluster must not send the
    gateway's health checker, with its headers, somewhere else)."""
    if not isinstance(uri, str):
        raise CheckFailed("the probe's nextUri is not a string")
    asked, told = urlsplit(backend.proxy_to), urlsplit(uri)
    if (told.scheme, told.netloc) != (asked.scheme, asked.netloc):
        # Behind a proxy the cluster may name another address for itself: keep the path only.
        return f"{asked.scheme}://{asked.netloc}{told.path}" + (f"?{told.query}" if told.query else "")
    return uri


async def _cancel(upstream: Upstream, backend: Backend, uri: str, headers: dict[str, str]) -> None:
    with contextlib.suppress(UpstreamError):
        await upstream.fetch(uri, "DELETE", backend=backend, headers=headers, timeout=2)


def create_monitor(kind: str, settings: HealthConfig) -> Monitor:
    if kind == "NOOP":
        return NoopMonitor()
    if kind == "INFO_API":
        return InfoApiMonitor()
    if kind == "UI_API":
        return UiApiMonitor(settings)
    if kind == "JMX":
        return JmxMonitor(settings)
    if kind == "METRICS":
        return MetricsMonitor(settings)
    if kind == "QUERY":
        return QueryMonitor(settings)
    raise ValueError(f"unknown monitor {kind!r}")
