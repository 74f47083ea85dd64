"""What the gateway observes and where it routed: read through its admin API, as an operator would."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from trinosim.gateway_process import GatewayProcess


def backend_health(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    """``GET /gateway/health`` by backend name."""
    status, body = gateway.call("GET", "/gateway/health")
    if status != 200:
        raise RuntimeError(f"/gateway/health answered {status}: {body}")
    return {entry["name"]: entry for entry in body}


def wait_state(
    gateway: GatewayProcess, name: str, states: Iterable[str], timeout: float = 30.0, checked_after: float | None = None
) -> float:
    """Wait until ``name`` is in one of ``states`` (by a check made after ``checked_after``, epoch
    seconds, if given); the seconds it took."""
    wanted = set(states)
    began = time.monotonic()
    last: Any = None
    while time.monotonic() - began < timeout:
        last = backend_health(gateway).get(name)
        fresh = checked_after is None or (last is not None and (last["lastCheck"] or 0) > checked_after * 1000)
        if last is not None and last["state"] in wanted and fresh:
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError(f"backend {name} did not become {sorted(wanted)} within {timeout:g}s; last seen: {last}")


def wait_drained(gateway: GatewayProcess, name: str, timeout: float = 60.0) -> float:
    """Wait until the gateway has no query in flight on ``name``; the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if backend_health(gateway)[name]["inFlight"] == 0:
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError(f"backend {name} still had queries in flight after {timeout:g}s")


def query_history(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    """Query id -> the query's entry in the gateway's history (each attempt of a query that moved
    to another backend has its own: the earlier ones FAILED with ``FAILED_OVER``)."""
    history: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        status, body = gateway.call("GET", f"/gateway/queries?limit=1000&offset={offset}")
        if status != 200:
            raise RuntimeError(f"/gateway/queries answered {status}: {body}")
        history.update({q["queryId"]: q for q in body["queries"]})
        offset += len(body["queries"])
        if not body["queries"] or offset >= body["total"]:
            return history


def routed_backends(gateway: GatewayProcess) -> dict[str, str]:
    """Query id -> the backend the gateway routed it to, from its query history."""
    return {query_id: query["backend"] for query_id, query in query_history(gateway).items()}
