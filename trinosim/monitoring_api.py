"""Health and statistics endpoints, in the shapes Trino serves and gateways' monitors read."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from trinosim.durations import format_duration
from trinosim.queries import Query
from trinosim.state import STATE, SimState

UI_COOKIE = "Trino-UI-Token"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


async def info(request: web.Request) -> web.Response:
    state = _state(request)
    state.info_requests += 1
    return _json(
        {
            "nodeVersion": {"version": state.config.version},
            "environment": state.config.environment,
            "coordinator": True,
            "starting": state.manager.starting,
            "uptime": format_duration(state.uptime),
        }
    )


async def info_state(request: web.Request) -> web.Response:
    return _json("ACTIVE")


async def info_coordinator(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def status(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(
        {
            "nodeId": state.node_id,
            "nodeVersion": {"version": state.config.version},
            "environment": state.config.environment,
            "coordinator": True,
            "uptime": format_duration(state.uptime),
            "externalAddress": state.config.host,
            "internalAddress": state.config.host,
            "memoryInfo": {"availableProcessors": 2, "pool": {"maxBytes": 1 << 30, "reservedBytes": 0}},
            "processors": 2,
            "processCpuLoad": 0.0,
            "systemCpuLoad": 0.0,
            "heapUsed": 1 << 26,
            "heapAvailable": 1 << 30,
            "nonHeapUsed": 1 << 24,
        }
    )


async def node(request: web.Request) -> web.Response:
    state = _state(request)
    nodes = [
        {
            "uri": f"http://{state.config.host}:{state.config.port}/worker-{i}",
            "recentRequests": 0.0,
            "recentFailures": 0.0,
            "recentSuccesses": 0.0,
            "lastRequestTime": dt.datetime.now(dt.UTC).isoformat(),
            "lastResponseTime": dt.datetime.now(dt.UTC).isoformat(),
            "recentFailureRatio": 0.0,
            "age": "0.00s",
        }
        for i in range(state.workers)
    ]
    return _json(nodes)


def cluster_stats(state: SimState) -> dict[str, Any]:
    return {
        "runningQueries": len(state.manager.running_queries()),
        "blockedQueries": 0,
        "queuedQueries": len(state.manager.queued()),
        "activeCoordinators": 1,
        "activeWorkers": state.workers,
        "runningDrivers": 0,
        "totalAvailableProcessors": 2 * max(1, state.workers),
        "reservedMemory": 0.0,
        "totalInputRows": sum(q.rows_delivered for q in state.manager.queries.values()),
        "totalInputBytes": sum(q.bytes_delivered for q in state.manager.queries.values()),
        "totalCpuTimeSecs": int(sum(q.cpu_seconds for q in state.manager.queries.values())),
    }


async def ui_login(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    user, password = str(form.get("username", "")), str(form.get("password", ""))
    wanted_user, wanted_password = state.config.ui_user, state.config.ui_password
    if not user or (wanted_user is not None and (user != wanted_user or password != (wanted_password or ""))):
        raise web.HTTPSeeOther("/ui/login.html?error=1")
    response = web.HTTPSeeOther("/ui/")
    response.set_cookie(UI_COOKIE, state.new_ui_token(), path="/ui", httponly=True)
    raise response


def _ui_authorised(request: web.Request) -> bool:
    return request.cookies.get(UI_COOKIE) in _state(request).ui_tokens


async def ui_stats(request: web.Request) -> web.Response:
    if not _ui_authorised(request):
        return web.Response(status=401, text="Unauthorized", content_type="text/plain")
    return _json(cluster_stats(_state(request)))


def basic_query_info(query: Query, base: str) -> dict[str, Any]:
    error = query.error.to_json() if query.error else None
    return {
        "queryId": query.id,
        "session": {"queryId": query.id, **query.session.to_json()},
        "sessionUser": query.session.user,
        "sessionSource": query.session.source,
        "resourceGroupId": ["global"],
        "state": query.state,
        "memoryPool": "general",
        "scheduled": query.state == "RUNNING",
        "self": f"{base}/v1/query/{query.id}",
        "query": query.sql,
        "queryStats": {
            "createTime": query.created_wall.isoformat(),
            "elapsedTime": format_duration((query.ended or _now()) - query.created),
            "queuedTime": format_duration((query.started or query.ended or _now()) - query.created),
            "processedRows": query.rows_delivered,
        },
        "errorType": error["errorType"] if error else None,
        # Trino's ErrorCode as QueryInfo writes it.
        "errorCode": (
            {"code": error["errorCode"], "name": error["errorName"], "type": error["errorType"], "retriable": False}
            if error
            else None
        ),
        "queryType": "SELECT" if query.outcome is None or query.outcome.update_type is None else "DATA_DEFINITION",
    }


def _now() -> float:
    import time

    return time.monotonic()


def _listed(request: web.Request) -> list[dict[str, Any]]:
    state = _state(request)
    wanted = request.query.get("state", "").upper()
    base = f"{request.scheme}://{request.host}"
    return [basic_query_info(q, base) for q in state.manager.queries.values() if not wanted or q.state == wanted]


async def query_list(request: web.Request) -> web.Response:
    return _json(_listed(request))


async def ui_query_list(request: web.Request) -> web.Response:
    if not _ui_authorised(request):
        return web.Response(status=401, text="Unauthorized", content_type="text/plain")
    return _json(_listed(request))


async def query_info(request: web.Request) -> web.Response:
    state = _state(request)
    query = state.manager.get(request.match_info["query_id"])
    if query is None:
        return web.Response(status=410, text="Query not found", content_type="text/plain")
    info = basic_query_info(query, f"{request.scheme}://{request.host}")
    if query.error is not None:
        info["failureInfo"] = query.error.to_json()["failureInfo"]
    return _json(info)


async def query_delete(request: web.Request) -> web.Response:
    state = _state(request)
    query = state.manager.get(request.match_info["query_id"])
    if query is not None:
        state.manager.cancel(query)
    return web.Response(status=204)


async def query_kill(request: web.Request) -> web.Response:
    state = _state(request)
    query = state.manager.get(request.match_info["query_id"])
    if query is None:
        return web.Response(status=410)
    if query.done:
        return web.Response(status=409)
    state.manager.cancel(query)
    return web.Response(status=202)


async def ui_query_page(request: web.Request) -> web.Response:
    query_id = request.query_string
    query = _state(request).manager.get(query_id)
    title = f"Query {query_id}" if query else "Query not found"
    detail = f"<p>State: {query.state}</p><pre>{query.sql}</pre>" if query else ""
    return web.Response(
        text=f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{detail}</body></html>",
        content_type="text/html",
    )


def _mbeans(state: SimState) -> dict[str, dict[str, Any]]:
    counters = state.manager.counters
    return {
        "trino.execution:name=QueryManager": {
            "className": "io.trino.execution.SqlQueryManager",
            "attributes": {
                "RunningQueries": ("long", len(state.manager.running_queries())),
                "QueuedQueries": ("long", len(state.manager.queued())),
                "SubmittedQueries.TotalCount": ("long", counters["submitted"]),
                "StartedQueries.TotalCount": ("long", counters["started"]),
                "CompletedQueries.TotalCount": ("long", counters["completed"]),
                "FailedQueries.TotalCount": ("long", counters["failed"]),
                "CanceledQueries.TotalCount": ("long", counters["canceled"]),
                "AbandonedQueries.TotalCount": ("long", counters["abandoned"]),
            },
        },
        "trino.metadata:name=DiscoveryNodeManager": {
            "className": "io.trino.metadata.DiscoveryNodeManager",
            "attributes": {
                # The coordinator is a node too.
                "ActiveNodeCount": ("int", state.workers + 1),
                "InactiveNodeCount": ("int", 0),
                "ShuttingDownNodeCount": ("int", 0),
            },
        },
        "trino.memory:name=ClusterMemoryManager": {
            "className": "io.trino.memory.ClusterMemoryManager",
            "attributes": {
                "ClusterMemoryBytes": ("long", (state.workers + 1) << 30),
                "QueriesKilledDueToOutOfMemory": ("long", 0),
            },
        },
        # trinosim's own (no Trino MBean): how often it was asked GET /v1/info, e.g. by health checks.
        "trinosim:name=Requests": {
            "className": "trinosim.Requests",
            "attributes": {"InfoRequests": ("long", state.info_requests)},
        },
    }


def _mbean_json(name: str, bean: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectName": name,
        "className": bean["className"],
        "description": "",
        "attributes": [
            {"name": attr, "type": kind, "readable": True, "writable": False, "value": value}
            for attr, (kind, value) in bean["attributes"].items()
        ],
        "operations": [],
    }


async def jmx_list(request: web.Request) -> web.Response:
    beans = _mbeans(_state(request))
    return _json([_mbean_json(name, bean) for name, bean in beans.items()])


async def jmx_bean(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    bean = _mbeans(_state(request)).get(name)
    if bean is None:
        return web.Response(status=404, text=f"MBean {name} not found", content_type="text/plain")
    return _json(_mbean_json(name, bean))


class _JmxCollector:
    """Exports the MBeans as Trino's ``/metrics`` does: ``trino_<domain>_name_<Name>_<Attribute>``."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def collect(self) -> list[GaugeMetricFamily]:
        families = []
        for object_name, bean in _mbeans(self.state).items():
            domain, _, key = object_name.partition(":")
            prefix = f"{domain.replace('.', '_')}_{key.replace('=', '_')}"
            for attr, (_, value) in bean["attributes"].items():
                metric = f"{prefix}_{attr.replace('.', '_')}"
                families.append(GaugeMetricFamily(metric, f"{object_name} {attr}", value=float(value)))
        return families


async def metrics(request: web.Request) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_JmxCollector(_state(request)))  # type: ignore[arg-type]
    body = generate_latest(registry)
    requested = request.query.getall("name[]", [])
    if requested:
        wanted = {name.encode() for name in requested}
        lines = body.splitlines(keepends=True)
        body = b"".join(
            line
            for line in lines
            if line.startswith(b"# EOF") or line.split(b" ", 3)[2 if line.startswith(b"#") else 0] in wanted
        )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/v1/info", info)
    router.add_get("/v1/info/state", info_state)
    router.add_get("/v1/info/coordinator", info_coordinator)
    router.add_get("/v1/status", status)
    router.add_get("/v1/node", node)
    router.add_get("/v1/query", query_list)
    router.add_get("/v1/query/{query_id}", query_info)
    router.add_delete("/v1/query/{query_id}", query_delete)
    router.add_put("/v1/query/{query_id}/killed", query_kill)
    router.add_get("/v1/jmx/mbean", jmx_list)
    router.add_get("/v1/jmx/mbean/{name}", jmx_bean)
    router.add_get("/metrics", metrics)
    router.add_post("/ui/login", ui_login)
    router.add_get("/ui/api/stats", ui_stats)
    router.add_get("/ui/api/query", ui_query_list)
    router.add_get("/ui/api/query/{query_id}", query_info)
    router.add_get("/ui/query.html", ui_query_page)
