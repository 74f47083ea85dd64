"""The pages a client reads about a query that waits in the gateway: Trino's own QUEUED page (a
client polls it as it polls a cluster's queue), and Trino's errors for a full queue and a wait too
long (the names and codes of Trino's resource groups: QUERY_QUEUE_FULL, EXCEEDED_TIME_LIMIT)."""

from __future__ import annotations

from typing import Any

from gateway import errors
from gateway.queries.admission.controller import WaitingQuery

# io.trino.spi.StandardErrorCode: INSUFFICIENT_RESOURCES is 0x0002_0000.
ERROR_CODES = {"QUERY_QUEUE_FULL": 0x0002_0002, "EXCEEDED_TIME_LIMIT": 0x0002_0003}


def queued_page(base: str, waiting: WaitingQuery) -> dict[str, Any]:
    return {
        "id": waiting.id,
        "infoUri": f"{base}/ui/query.html?{waiting.id}",
        "nextUri": waiting.next_uri(base),
        "stats": errors.query_stats("QUEUED", queued=True, waited_ms=int(waiting.waited * 1000)),
        "warnings": [],
    }


def refused_page(base: str, error_name: str, message: str, query_id: str | None = None) -> dict[str, Any]:
    """A FAILED query for a limit of the gateway's queue (``error_name`` one of ``ERROR_CODES``)."""
    return errors.failed_query(
        base, message, error_name, ERROR_CODES.get(error_name, 0x0002_0000), "INSUFFICIENT_RESOURCES", query_id
    )
