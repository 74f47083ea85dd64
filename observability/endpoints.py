"""``GET /metrics`` (Prometheus) and ``GET /v1/jmx/mbean[/{name}]`` (Trino's JMX REST shape), served by
the admin app: neither path is one the proxy forwards to a backend."""

from __future__ import annotations

from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response, current_app

from gateway.errors import api_error, json_response
from observability import jmx, metrics

endpoints = Blueprint("observability", __name__)


def _observer():
    return current_app.config["SERVICES"].services.observer


async def _fresh_beans() -> dict[str, dict]:
    observer = _observer()
    await observer.refresh_gauges()
    tracing = observer.tracing
    return jmx.mbeans(
        metrics.collect(),
        {
            "Enabled": tracing.enabled,
            "QueuedSpans": tracing.queued_spans(),
            "MaxQueueSize": tracing.max_queue_size(),
        },
    )


@endpoints.get("/metrics")
async def prometheus_metrics() -> Response:
    # This worker's gauges are brought up to date first; other workers' are at most a second old.
    await _observer().refresh_gauges()
    return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


@endpoints.get("/v1/jmx/mbean")
async def jmx_list() -> Response:
    return json_response([jmx.mbean_json(name, bean) for name, bean in (await _fresh_beans()).items()])


@endpoints.get("/v1/jmx/mbean/<path:name>")
async def jmx_bean(name: str) -> Response:
    name = unquote(name)
    bean = (await _fresh_beans()).get(name)
    if bean is None:
        return api_error(404, f"MBean {name} not found; GET /v1/jmx/mbean lists them")
    return json_response(jmx.mbean_json(name, bean))
