"""Reading what a backend answered, and where a request points, without parsing more than a page's
first bytes where that is enough (every poll of every query passes here)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import orjson

from gateway.dataplane.exchange import Scope
from gateway.dataplane.rewrite import BACKEND_PARAM, data_value, next_uri_of
from gateway.queries.book import FAILED, outcome_of_page

# Trino errors that are the cluster's fault, not the query's: a read-only query that has returned no
# row may run on another cluster instead.
CLUSTER_FAULTS = frozenset(
    {"SERVER_SHUTTING_DOWN", "SERVER_STARTING_UP", "NO_NODES_AVAILABLE", "REMOTE_HOST_GONE", "TOO_MANY_REQUESTS_FAILED"}
)
NOT_A_DOCUMENT = "answered something that is not a Trino query result"


def is_document(content: bytes) -> bool:
    """A statement answer is one JSON object. Two byte comparisons on the hot path catch the cut-off
    and non-JSON answers a broken backend (or something in front of it) sends."""
    return content[:1] == b"{" and content.endswith((b"}", b"}\n", b"}\r\n"))


def continues(content: bytes) -> bool:
    """Whether a page has a nextUri of its own. The common page needs one look: its nextUri before
    its rows (Trino's order), or no rows; else the page is read around its rows (``rewrite``)."""
    at = content.find(b'"nextUri"')
    if at == -1:
        return False
    rows = data_value(content)
    return rows == -1 or at < rows or next_uri_of(content) is not None


def no_rows_yet(content: bytes) -> bool:
    """A page that continues and has handed out no rows (no ``data`` member, inline or spooled)."""
    return data_value(content) == -1 and b'"nextUri"' in content


def cluster_fault(content: bytes) -> str | None:
    """The error of a FAILED page when it is the cluster's fault, not the query's (another cluster
    would run it): its name, else None."""
    if b'"FAILED"' not in content:
        return None
    state, error_name = outcome_of_page(content)
    return error_name if state == FAILED and error_name in CLUSTER_FAULTS else None


def field(content: bytes, name: str) -> str | None:
    try:
        value = orjson.loads(content).get(name)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def query_string(scope: Scope) -> str:
    """The request's query string for a backend (without the gateway's own marker)."""
    raw = scope["query_string"]
    if not raw:
        return ""
    if BACKEND_PARAM.encode() not in raw:
        return "?" + raw.decode("latin-1")
    params = [(k, v) for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if k != BACKEND_PARAM]
    return f"?{urlencode(params)}" if params else ""


def too_long(length: int | None, maximum: int) -> str:
    # Trino's words (DispatchManager), so that clients and people recognise the error.
    shown = "more than " + str(maximum) if length is None else str(length)
    return f"Query text length ({shown}) exceeds the maximum length ({maximum})"
