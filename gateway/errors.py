"""Errors the gateway itself answers, in shapes Trino clients understand."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Response

_sequence = itertools.count(1)
_suffix = "gw" + secrets.token_hex(2)[:3]


def gateway_query_id() -> str:
    """A query id in Trino's form for answers that no backend produced."""
    now = dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d_%H%M%S}_{next(_sequence) % 100000:05d}_{_suffix}"


def query_stats(state: str, queued: bool = False, waited_ms: int = 0) -> dict[str, Any]:
    """A query's ``stats`` for a page no backend wrote (``waited_ms``: its time queued so far)."""
    return {
        "state": state,
        "queued": queued,
        "scheduled": False,
        "nodes": 0,
        "totalSplits": 0,
        "queuedSplits": 0,
        "runningSplits": 0,
        "completedSplits": 0,
        "cpuTimeMillis": 0,
        "wallTimeMillis": 0,
        "queuedTimeMillis": waited_ms,
        "elapsedTimeMillis": waited_ms,
        "processedRows": 0,
        "processedBytes": 0,
        "physicalInputBytes": 0,
        "peakMemoryBytes": 0,
        "spilledBytes": 0,
    }


def failed_query(
    base: str,
    message: str,
    error_name: str = "GENERIC_INTERNAL_ERROR",
    error_code: int = 65536,
    error_type: str = "INTERNAL_ERROR",
    query_id: str | None = None,
) -> dict[str, Any]:
    query_id = query_id or gateway_query_id()
    error = {
        "message": message,
        "errorCode": error_code,
        "errorName": error_name,
        "errorType": error_type,
        "failureInfo": {"type": "io.trino.gateway.GatewayException", "message": message, "suppressed": [], "stack": []},
    }
    return {
        "id": query_id,
        "infoUri": f"{base}/ui/query.html?{query_id}",
        "stats": query_stats("FAILED"),
        "error": error,
        "warnings": [],
    }


def no_backend_document(base: str, message: str, query_id: str | None = None) -> dict[str, Any]:
    """A submission no cluster can take: a FAILED query at once, so clients do not retry in vain."""
    return failed_query(base, message, "NO_NODES_AVAILABLE", 65541, "INTERNAL_ERROR", query_id)


class Error(BaseModel):
    """What went wrong, in a sentence: every error the admin API answers in JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str


def api_error(status: int, message: str) -> Response:
    return Response(Error(error=message).model_dump_json(), status=status, content_type="application/json")
