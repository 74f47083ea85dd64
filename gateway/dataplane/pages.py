"""The pages the gateway writes itself for a query it holds: Trino's QUEUED page (a client polls it
as it polls a cluster's queue), and the end of a query that ended in the gateway: Trino's errors for
a full queue and a wait too long (the names and codes of Trino's resource groups), a cancel, a
failure. Every page is the JSON document a Trino coordinator would write."""

from __future__ import annotations

from typing import Any

import orjson

from gateway import errors
from gateway.queries.held import HeldQuery
from gateway.queries.states import CANCELED, EXCEEDED_TIME_LIMIT, FAILED, QUERY_QUEUE_FULL

JSON = [(b"content-type", b"application/json")]
# io.trino.spi.StandardErrorCode: INSUFFICIENT_RESOURCES is 0x0002_0000.
ERROR_CODES = {QUERY_QUEUE_FULL: 0x0002_0002, EXCEEDED_TIME_LIMIT: 0x0002_0003}


def queued_page(base: str, held: HeldQuery) -> dict[str, Any]:
    return {
        "id": held.id,
        "infoUri": f"{base}/ui/query.html?{held.id}",
        "nextUri": held.next_uri(base),
        "stats": errors.query_stats("QUEUED", queued=True, waited_ms=int(held.waited * 1000)),
        "warnings": [],
    }


def refused_page(base: str, error_name: str, message: str, query_id: str | None = None) -> dict[str, Any]:
    """A FAILED query for a limit of the gateway's queue (``error_name`` one of ``ERROR_CODES``)."""
    return errors.failed_query(
        base, message, error_name, ERROR_CODES.get(error_name, 0x0002_0000), "INSUFFICIENT_RESOURCES", query_id
    )


def held_page(base: str, held: HeldQuery, shown_id: str | None = None) -> bytes:
    """What a client reads next of ``held``: its end if it ended in the gateway, else the QUEUED page
    of its next token (``shown_id``: the id its client knows it by, if not the gateway's)."""
    query_id = shown_id or held.id
    if held.state == FAILED and held.error is not None:
        name, message = held.error
        if name in ERROR_CODES:
            document = refused_page(base, name, message, held.id)
        elif name == "NO_NODES_AVAILABLE":
            document = errors.no_backend_document(base, message, query_id)
        else:
            document = errors.failed_query(base, message, query_id=query_id)
    elif held.state == CANCELED:
        document = errors.failed_query(base, "Query was canceled", "USER_CANCELED", 1, "USER_ERROR", held.id)
    else:
        held.token += 1
        document = queued_page(base, held)
    return orjson.dumps(document)
