"""``GET /metrics`` (Prometheus) and ``GET /v1/jmx/mbean[/{name}]`` (Trino's JMX REST shape): neither
path is one the proxy forwards to a backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response

from gateway.control.admission_status import jmx_attributes
from gateway.control.api.access import reader
from gateway.control.api.models import MBean, MBeanName, json_response
from gateway.control.api.openapi import Answer, answers, plain
from gateway.errors import api_error
from observability import jmx, metrics

if TYPE_CHECKING:
    from gateway.control.services import Services


def metrics_api(services: Services) -> Blueprint:
    api = Blueprint("metrics", __name__)

    async def fresh_beans() -> dict[str, dict[str, Any]]:
        await services.refresh_gauges()
        tracing = services.observer.tracing
        return jmx.mbeans(
            metrics.collect(),
            {
                "Enabled": tracing.enabled,
                "QueuedSpans": tracing.queued_spans(),
                "MaxQueueSize": tracing.max_queue_size(),
            },
            jmx_attributes(services.admission, await services.registry.all()),
        )

    @api.get("/metrics")
    @reader  # public by default: auth.public_paths lists /metrics
    @answers({200: plain("the Prometheus text exposition")})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics."""
        # This worker's gauges are brought up to date first; other workers' are at most a second old.
        await services.refresh_gauges()
        await services.publish_backend_work()
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/jmx/mbean")
    @reader
    @answers({200: Answer("every MBean", list[MBean])})
    async def jmx_list() -> Response:
        """The gateway's figures as MBeans (Trino's JMX REST shape)."""
        return json_response([MBean.of(name, bean) for name, bean in (await fresh_beans()).items()])

    @api.get("/v1/jmx/mbean/<path:name>")
    @reader
    @answers({200: Answer("the MBean", MBean), 404: "no MBean of this name"}, path=MBeanName)
    async def jmx_bean(name: str) -> Response:
        """One MBean."""
        name = unquote(name)
        bean = (await fresh_beans()).get(name)
        if bean is None:
            return api_error(404, f"MBean {name} not found; GET /v1/jmx/mbean lists them")
        return json_response(MBean.of(name, bean))

    return api
