"""The Trino client protocol's JSON documents and URIs, as a coordinator writes them."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from trinosim.queries import Query

QUEUED, EXECUTING = 0, 1


def slug(key: bytes, context: int, token: int) -> str:
    """Trino's slug: it makes each (phase, token) URI a capability that cannot be guessed."""
    message = context.to_bytes(4, "big") + token.to_bytes(8, "big", signed=True)
    return "y" + hmac.new(key, message, hashlib.sha1).hexdigest()


def base_uri(request: web.Request, honour_forwarded: bool) -> str:
    """``scheme://host[:port][prefix]`` the client used, the way Trino builds absolute URIs."""
    headers = request.headers
    scheme = request.scheme
    host = headers.get("Host") or f"{request.host}"
    prefix = ""
    if honour_forwarded:
        scheme = headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        forwarded_host = headers.get("X-Forwarded-Host")
        if forwarded_host:
            host = forwarded_host.split(",")[0].strip()
            port = headers.get("X-Forwarded-Port")
            if port and ":" not in host.rsplit("]", 1)[-1]:
                host = f"{host}:{port.split(',')[0].strip()}"
        prefix = headers.get("X-Forwarded-Prefix", "").rstrip("/")
    return f"{scheme}://{host}{prefix}"


def statement_uri(base: str, query: Query, context: int, token: int) -> str:
    phase = "queued" if context == QUEUED else "executing"
    return f"{base}/v1/statement/{phase}/{query.id}/{slug(query.slug_key, context, token)}/{token}"


def stats(query: Query, workers: int) -> dict[str, Any]:
    now = time.monotonic()
    state = query.reported_state
    running = state not in ("QUEUED",)
    finished = state in ("FINISHED", "FAILED")
    elapsed = (query.ended or now) - query.created
    queued_for = (query.started or query.ended or now) - query.created
    result: dict[str, Any] = {
        "state": state,
        "queued": state == "QUEUED",
        "scheduled": running and query.error is None,
        "nodes": workers if running and not finished else 0,
        "totalSplits": 0,
        "queuedSplits": 0,
        "runningSplits": 0,
        "completedSplits": 0,
        "cpuTimeMillis": int(query.cpu_seconds * 1000),
        "wallTimeMillis": int(max(0.0, elapsed - queued_for) * 1000),
        "queuedTimeMillis": int(queued_for * 1000),
        "elapsedTimeMillis": int(elapsed * 1000),
        "processedRows": query.rows_delivered,
        "processedBytes": query.bytes_delivered,
        "physicalInputBytes": 0,
        "physicalWrittenBytes": 0,
        "peakMemoryBytes": 0,
        "spilledBytes": 0,
    }
    if state == "FINISHED":
        result["progressPercentage"] = 100.0
    return result


def results(
    query: Query,
    base: str,
    workers: int,
    next_uri: str | None,
    columns: list[dict[str, Any]] | None = None,
    data: list[list[Any]] | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A QueryResults document; absent fields are left out, as airlift's mapper does. While the query
    runs (a page that continues, once it executes), ``partialCancelUri`` names its leaf stage, as
    Trino's does (``Query.findCancelableLeafStage``)."""
    body: dict[str, Any] = {"id": query.id, "infoUri": f"{base}/ui/query.html?{query.id}"}
    if next_uri is not None and "/v1/statement/executing/" in next_uri:
        token = int(next_uri.rsplit("/", 1)[1])
        body["partialCancelUri"] = (
            f"{base}/v1/statement/executing/partialCancel/{query.id}/0/{slug(query.slug_key, EXECUTING, token)}/{token}"
        )
    if next_uri is not None:
        body["nextUri"] = next_uri
    if columns is not None:
        body["columns"] = columns
    if data:
        body["data"] = data
    body["stats"] = stats(query, workers)
    if query.error is not None and next_uri is None:
        body["error"] = query.error.to_json()
    body["warnings"] = []
    outcome = query.outcome
    if outcome is not None and outcome.update_type is not None:
        body["updateType"] = outcome.update_type
        if outcome.update_count is not None:
            body["updateCount"] = outcome.update_count
    return body


def encode(document: dict[str, Any], key_order: str = "trino") -> bytes:
    """A statement page's bytes, its members in ``key_order``: ``trino`` as ``results`` builds them
    (URIs, columns, data, stats, ...), ``sorted`` by name at every level (as a proxy that decodes
    and re-encodes pages writes them), or ``next_last``: Trino's, with ``partialCancelUri`` and
    ``nextUri`` (the very last) after everything else. JSON gives the order no meaning; clients and the
    gateway must not depend on it."""
    if key_order == "sorted":
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    if key_order == "next_last":
        last = {key: document[key] for key in ("partialCancelUri", "nextUri") if key in document}
        document = {key: value for key, value in document.items() if key not in last} | last
    return orjson.dumps(document)
