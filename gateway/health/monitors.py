"""Health checks against the endpoints Trino serves, one class per kind (trinodb/trino-gateway's set,
with QUERY in place of its JDBC check: a probe statement run through the client protocol)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import orjson

from gateway.health.state import ClusterStats


class CheckFailed(Exception):
    """The cluster is not fit for queries; the message says why."""


class StillStarting(Exception):
    """The cluster answered, and says it is still starting."""


@dataclass(frozen=True)
class MonitorSettings:
    user: str = "trino-gateway"
    ui_user: str = "trino-gateway"
    ui_password: str = ""
    probe_sql: str = "SELECT 1"
    metric_minimums: tuple[tuple[str, float], ...] = (
        ("trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount", 1.0),
    )
    metric_maximums: tuple[tuple[str, float], ...] = ()


class Monitor(Protocol):
    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None: ...


async def _json(response: aiohttp.ClientResponse, what: str) -> object:
    if response.status != 200:
        raise CheckFailed(f"{what} answered HTTP {response.status}")
    try:
        return orjson.loads(await response.read())
    except orjson.JSONDecodeError:
        raise CheckFailed(f"{what} did not answer JSON") from None


class NoopMonitor:
    """Always healthy: for clusters another system watches."""

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        return None


class InfoApiMonitor:
    """``GET /v1/info``: up, and not ``starting``."""

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        async with session.get(f"{url}/v1/info") as response:
            info = await _json(response, "/v1/info")
        if not isinstance(info, dict):
            raise CheckFailed("/v1/info did not answer an object")
        if info.get("starting"):
            raise StillStarting()
        return None


class UiApiMonitor:
    """``POST /ui/login`` then ``GET /ui/api/stats``: queued, running and active workers."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._cookies: dict[str, str] = {}

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        stats = await self._stats(session, url, login=url not in self._cookies)
        workers = int(stats.get("activeWorkers", 0))
        if workers < 1:
            raise CheckFailed("no active workers")
        return ClusterStats(
            running=int(stats.get("runningQueries", 0)), queued=int(stats.get("queuedQueries", 0)), workers=workers
        )

    async def _stats(self, session: aiohttp.ClientSession, url: str, login: bool) -> dict:
        if login:
            form = {"username": self.settings.ui_user, "password": self.settings.ui_password}
            async with session.post(f"{url}/ui/login", data=form, allow_redirects=False) as response:
                if response.status >= 400:
                    raise CheckFailed(f"/ui/login answered HTTP {response.status}")
                cookie = response.headers.get("Set-Cookie")
                if not cookie:
                    raise CheckFailed("/ui/login refused the monitor's credentials")
                self._cookies[url] = cookie.split(";", 1)[0]
        async with session.get(f"{url}/ui/api/stats", headers={"Cookie": self._cookies[url]}) as response:
            if response.status == 401 and not login:
                self._cookies.pop(url, None)
                return await self._stats(session, url, login=True)
            stats = await _json(response, "/ui/api/stats")
        if not isinstance(stats, dict):
            raise CheckFailed("/ui/api/stats did not answer an object")
        return stats


class JmxMonitor:
    """``/v1/jmx/mbean/...``: QueryManager's running and queued queries, active node count."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.headers = {"X-Trino-User": settings.user}

    async def _bean(self, session: aiohttp.ClientSession, url: str, name: str) -> dict[str, float]:
        async with session.get(f"{url}/v1/jmx/mbean/{name}", headers=self.headers) as response:
            bean = await _json(response, name)
        try:
            return {a["name"]: a["value"] for a in bean["attributes"]}  # type: ignore[index]
        except (KeyError, TypeError):
            raise CheckFailed(f"{name} has an attribute without a value") from None

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        queries, nodes = await asyncio.gather(
            self._bean(session, url, "trino.execution:name=QueryManager"),
            self._bean(session, url, "trino.metadata:name=DiscoveryNodeManager"),
        )
        active = int(nodes.get("ActiveNodeCount", 0))
        if active < 1:
            raise CheckFailed("no active nodes")
        return ClusterStats(
            running=int(queries.get("RunningQueries", 0)), queued=int(queries.get("QueuedQueries", 0)), workers=active
        )


_RUNNING = "trino_execution_name_QueryManager_RunningQueries"
_QUEUED = "trino_execution_name_QueryManager_QueuedQueries"
_NODES = "trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount"


class MetricsMonitor:
    """``GET /metrics`` (OpenMetrics): thresholds on any metric mark the cluster unhealthy."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.headers = {"X-Trino-User": settings.user}
        names = {_RUNNING, _QUEUED, _NODES} | {n for n, _ in settings.metric_minimums + settings.metric_maximums}
        self.names = sorted(names)

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        params = [("name[]", name) for name in self.names]
        async with session.get(f"{url}/metrics", params=params, headers=self.headers) as response:
            if response.status != 200:
                raise CheckFailed(f"/metrics answered HTTP {response.status}")
            text = (await response.read()).decode("utf-8", errors="replace")
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                parts = line.split(" ")
                if len(parts) >= 2:
                    try:
                        values[parts[0]] = float(parts[1])
                    except ValueError:
                        continue
        for name, minimum in self.settings.metric_minimums:
            if name not in values:
                raise CheckFailed(f"metric {name} is missing")
            if values[name] < minimum:
                raise CheckFailed(f"metric {name} is {values[name]:g}, below {minimum:g}")
        for name, maximum in self.settings.metric_maximums:
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

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings

    async def check(self, session: aiohttp.ClientSession, url: str) -> ClusterStats | None:
        headers = {"X-Trino-User": self.settings.user, "X-Trino-Source": "trino-gateway-health"}
        async with session.post(
            f"{url}/v1/statement", data=self.settings.probe_sql.encode(), headers=headers
        ) as response:
            page = await _json(response, "POST /v1/statement")
        next_uri = None
        try:
            while isinstance(page, dict) and page.get("nextUri"):
                next_uri = page["nextUri"]
                async with session.get(next_uri, headers=headers) as response:
                    page = await _json(response, "the probe's nextUri")
            next_uri = None
        finally:
            if next_uri is not None:  # stopped early (time-out): do not leave the probe running
                await _cancel(session, next_uri, headers)
        if not isinstance(page, dict):
            raise CheckFailed("the probe statement got an answer that is not a query result")
        error = page.get("error")
        if error:
            name = error.get("errorName", "error") if isinstance(error, dict) else "error"
            if name == "SERVER_STARTING_UP":
                raise StillStarting()
            raise CheckFailed(f"the probe statement failed: {name}")
        return None


async def _cancel(session: aiohttp.ClientSession, uri: str, headers: dict[str, str]) -> None:
    try:
        async with session.delete(uri, headers=headers, timeout=aiohttp.ClientTimeout(total=2)):
            pass
    except (TimeoutError, aiohttp.ClientError):
        pass


def create_monitor(kind: str, settings: MonitorSettings) -> Monitor:
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
