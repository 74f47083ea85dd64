"""Reading what a backend answered, and where a request points, without parsing more than a page's
first bytes where that is enough (every poll of every query passes here)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway.dataplane.exchange import Scope
from gateway.dataplane.rewrite import BACKEND_PARAM
from gateway.queries.book import FAILED, outcome_of_page

# Trino errors that are the cluster's fault, not the query's: a read-only query that has returned no
# row may run on another cluster instead.
CLUSTER_FAULTS = frozenset(
    {"SERVER_SHUTTING_DOWN", "SERVER_STARTING_UP", "NO_NODES_AVAILABLE", "REMOTE_HOST_GONE", "TOO_MANY_REQUESTS_FAILED"}
)
NOT_A_DOCUMENT = "answered something that is not a Trino query result"
# A page's nextUri, the first occurrence (in pages without rows, the protocol's own).
_NEXT_URI = re.compile(rb'"nextUri"\s*:\s*"([^"]*)"')


def is_document(content: bytes) -> bool:
    """A statement answer is one JSON object. Two byte comparisons on the hot path catch the cut-off
    and non-JSON answers a broken backend (or something in front of it) sends."""
    return content[:1] == b"{" and content.endswith((b"}", b"}\n", b"}\r\n"))


def no_rows_yet(content: bytes) -> bool:
    """A page that continues (``nextUri``) and has handed out no rows (no ``data``, inline or spooled)."""
    return b'"nextUri"' in content and b'"data"' not in content


def next_uri_of(content: bytes) -> str | None:
    """The path and query string of the nextUri of a page without rows (``no_rows_yet``): what the
    gateway asks the page's backend for next."""
    found = _NEXT_URI.search(content)
    return None if found is None else target_of(found.group(1).decode())


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


def target_of(url: str) -> str:
    """The path and query string of a backend's URL (``scheme://host[:port]/path?query``)."""
    slash = url.find("/", url.find("//") + 2)
    return url[slash:] if slash != -1 else "/"


def path_of(target: str) -> str:
    """The path of a request target, without its query string."""
    question = target.find("?")
    return target if question == -1 else target[:question]


def query_string(scope: Scope) -> str:
    """The request's query string for a backend (without the gateway's own marker)."""
    raw = scope["query_string"]
    if not raw:
        return ""
    if BACKEND_PARAM.encode() not in raw:
        return "?" + raw.decode("latin-1")
    params = [(k, v) for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if k != BACKEND_PARAM]
    return f"?{urlencode(params)}" if params else ""


def upstream_target(scope: Scope, upstream_next: str) -> str:
    """What to ask a held query's backend for: the client's own request when it asks for the page
    the gateway polls (its query string kept, as for any query), else that page."""
    if scope["path"] == path_of(upstream_next):
        return scope["path"] + query_string(scope)
    return upstream_next


def too_long(length: int | None, maximum: int) -> str:
    # Trino's words (DispatchManager), so that clients and people recognise the error.
    shown = "more than " + str(maximum) if length is None else str(length)
    return f"Query text length ({shown}) exceeds the maximum length ({maximum})"
