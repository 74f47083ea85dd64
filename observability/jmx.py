"""The gateway's metrics as JMX-style MBeans (attributes by name, typed as Java would by ``java_type``),
which the admin API writes in the JSON shape of Trino's ``/v1/jmx/mbean``.

Every value is computed from the same samples ``/metrics`` serves (summed over workers the same
way), so tools that read Trino's JMX REST API read the gateway's numbers without a second source;
Tracing and Admission are the answering worker's own figures, as it hands them in.

    trino.gateway:name=ProxyHandler                  requests by kind and status class, errors by
                                                     cause, retries, in-flight queries
    trino.gateway:name=RoutingManager                routed queries, decisions by outcome, decision time
    trino.gateway:name=RoutingGroup,group=<group>    routed queries and decisions of one routing group
    trino.gateway:name=Backend,backend=<backend>     health, activity, score and cost, monitored counts,
                                                     routed and in-flight queries, upstream requests
    trino.gateway:name=Tracing                       this worker's span export queue
    trino.gateway:name=Admission                     this worker's admission control: queries waiting
                                                     in the gateway per routing group, slots in use
                                                     and max_running per backend
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

DOMAIN = "trino.gateway"
PROXY = f"{DOMAIN}:name=ProxyHandler"
ROUTING = f"{DOMAIN}:name=RoutingManager"
TRACING = f"{DOMAIN}:name=Tracing"
ADMISSION = f"{DOMAIN}:name=Admission"
CLASS_NAME = "io.trino.gateway.python"

_KIND_ATTRIBUTE = {
    "submit": "SubmitRequests",
    "poll": "PollRequests",
    "cancel": "CancelRequests",
    "other": "OtherRequests",
}
_CAUSE_ATTRIBUTE = {
    "connect": "ConnectErrors",
    "timeout": "TimeoutErrors",
    "upstream_5xx": "Upstream5xxErrors",
    "no_backend": "NoBackendErrors",
    "refused": "RefusedRequests",
    "internal": "InternalErrors",
}
_OUTCOME_ATTRIBUTE = {"routed": "RoutedDecisions", "fallback": "FallbackDecisions", "no_backend": "NoBackendDecisions"}
_BACKEND_GAUGES = {
    "trino_gateway_backend_up": "Up",
    "trino_gateway_backend_active": "Active",
    "trino_gateway_backend_score": "Score",
    "trino_gateway_backend_cost": "Cost",
    "trino_gateway_backend_running_queries": "RunningQueries",
    "trino_gateway_backend_queued_queries": "QueuedQueries",
    "trino_gateway_backend_workers": "Workers",
    "trino_gateway_in_flight_queries": "InFlightQueries",
}


def backend_name(backend: str) -> str:
    return f"{DOMAIN}:name=Backend,backend={backend}"


def group_name(group: str) -> str:
    return f"{DOMAIN}:name=RoutingGroup,group={group}"


def _new_proxy() -> dict[str, float]:
    attributes: dict[str, float] = {"Requests": 0}
    for name in (*_KIND_ATTRIBUTE.values(), "Responses2xx", "Responses3xx", "Responses4xx", "Responses5xx"):
        attributes[name] = 0
    for name in _CAUSE_ATTRIBUTE.values():
        attributes[name] = 0
    attributes["Retries"] = 0
    attributes["InFlightQueries"] = 0
    return attributes


def _new_routing() -> dict[str, float]:
    attributes: dict[str, float] = {"RoutedQueries": 0, "Decisions": 0}
    for name in _OUTCOME_ATTRIBUTE.values():
        attributes[name] = 0
    attributes.update({"DecisionTime.Count": 0, "DecisionTime.TotalSeconds": 0.0})
    return attributes


def mbeans(
    families: Iterable[Metric], tracing: dict[str, Any] | None = None, admission: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Object name -> {attribute: value}, from the Prometheus metric families (and this worker's
    ``tracing`` and ``admission`` figures, as they are given)."""
    proxy = _new_proxy()
    routing = _new_routing()
    groups: dict[str, dict[str, float]] = defaultdict(
        lambda: {"RoutedQueries": 0, "Decisions": 0, **dict.fromkeys(_OUTCOME_ATTRIBUTE.values(), 0)}
    )
    backends: dict[str, dict[str, Any]] = defaultdict(dict)
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "trino_gateway_requests_total":
                proxy["Requests"] += value
                proxy[_KIND_ATTRIBUTE.get(labels["kind"], "OtherRequests")] += value
                status_class = labels["status"][:1]
                if status_class in "2345" and status_class:
                    proxy[f"Responses{status_class}xx"] += value
            elif name == "trino_gateway_errors_total":
                attribute = _CAUSE_ATTRIBUTE.get(labels["cause"])
                if attribute is not None:
                    proxy[attribute] += value
            elif name == "trino_gateway_retries_total":
                proxy["Retries"] += value
                backend = backends[labels["backend"]]
                backend["Retries"] = backend.get("Retries", 0) + value
            elif name == "trino_gateway_queries_routed_total":
                routing["RoutedQueries"] += value
                groups[labels["routing_group"]]["RoutedQueries"] += value
                backend = backends[labels["backend"]]
                backend["RoutedQueries"] = backend.get("RoutedQueries", 0) + value
            elif name == "trino_gateway_routing_decisions_total":
                attribute = _OUTCOME_ATTRIBUTE[labels["outcome"]]
                routing["Decisions"] += value
                routing[attribute] += value
                group = groups[labels["routing_group"]]
                group["Decisions"] += value
                group[attribute] += value
            elif name == "trino_gateway_routing_decision_seconds_count":
                routing["DecisionTime.Count"] += value
            elif name == "trino_gateway_routing_decision_seconds_sum":
                routing["DecisionTime.TotalSeconds"] += value
            elif name == "trino_gateway_upstream_latency_seconds_count":
                backend = backends[labels["backend"]]
                backend["UpstreamRequests"] = backend.get("UpstreamRequests", 0) + value
            elif name == "trino_gateway_upstream_latency_seconds_sum":
                backend = backends[labels["backend"]]
                backend["UpstreamTime.TotalSeconds"] = backend.get("UpstreamTime.TotalSeconds", 0.0) + value
            elif name == "trino_gateway_backend_state":
                if value == 1:
                    backends[labels["backend"]]["State"] = labels["state"]
            elif name in _BACKEND_GAUGES:
                attribute = _BACKEND_GAUGES[name]
                backends[labels["backend"]][attribute] = value
                if attribute == "InFlightQueries":
                    proxy["InFlightQueries"] += value
    count = routing["DecisionTime.Count"]
    routing["DecisionTime.AverageSeconds"] = routing["DecisionTime.TotalSeconds"] / count if count else 0.0
    beans: dict[str, dict[str, Any]] = {PROXY: proxy, ROUTING: routing}
    for group, attributes in sorted(groups.items()):
        beans[group_name(group)] = attributes
    for backend, attributes in sorted(backends.items()):
        for attribute in ("RoutedQueries", "Retries", "UpstreamRequests", "InFlightQueries"):
            attributes.setdefault(attribute, 0)
        attributes.setdefault("UpstreamTime.TotalSeconds", 0.0)
        beans[backend_name(backend)] = attributes
    if tracing is not None:
        beans[TRACING] = tracing
    if admission is not None:
        beans[ADMISSION] = admission
    return beans


def java_type(value: Any, attribute: str) -> tuple[str, Any]:
    """An attribute's Java type as airlift's MBeanRepresentation names it, and its value as that type."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, str):
        return "java.lang.String", value
    if isinstance(value, float) and not (value.is_integer() and _integral(attribute)):
        return "double", value
    return "long", int(value)


def _integral(attribute: str) -> bool:
    # Counters and counts are whole numbers; seconds and scores are not, whatever their value.
    return not (attribute.endswith("Seconds") or attribute in ("Score", "Cost"))
