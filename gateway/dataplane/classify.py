"""What a request is, decided once: the gateway's own (admin API, metrics) or proxied, and if
proxied, which kind and which query it belongs to. The ASGI entry, the proxy and the request
observer all read the one answer.
"""

from __future__ import annotations

from enum import Enum

from gateway.dataplane.query_ids import CACHED_MARK, STATEMENT_PREFIX, query_id_of

# Trino paths the proxy serves (trinodb/trino-gateway's list, plus /v1/status).
PROXIED_PREFIXES = ("/v1/statement", "/v1/query", "/v1/info", "/v1/node", "/v1/status", "/v1/spooled", "/ui", "/oauth2")
_PROXIED_EXACT = frozenset(PROXIED_PREFIXES)
_PROXIED_BELOW = tuple(prefix + "/" for prefix in PROXIED_PREFIXES)


class Route(Enum):
    ADMIN = "admin"
    """The gateway's own: admin API, health, metrics, JMX view."""
    SUBMIT = "submit"
    """POST /v1/statement: a new query."""
    NOT_ALLOWED = "not allowed"
    """/v1/statement with another method."""
    STATEMENT = "statement"
    """A request of a known query on the statement protocol (poll, cancel, partial cancel)."""
    NO_SUCH_QUERY = "no such query"
    """A statement-protocol path without a query id the gateway can read."""
    OF_QUERY = "of query"
    """Another request naming a query (/v1/query/{id}, /ui/api/query/{id}, /ui/query.html?{id})."""
    CACHED = "cached"
    """A request of a query the result cache answered (its pages, its cancel): no cluster knows it."""
    OTHER = "other"
    """Any other proxied path (/v1/info, UI assets, spooled segments)."""


class Classified:
    """One request's route, the ``kind`` label of its metrics (submit, poll, cancel, other) and query id."""

    __slots__ = ("kind", "query_id", "route")

    def __init__(self, route: Route, kind: str = "other", query_id: str | None = None) -> None:
        self.route = route
        self.kind = kind
        self.query_id = query_id


_ADMIN = Classified(Route.ADMIN)
_SUBMIT = Classified(Route.SUBMIT, "submit")
_NOT_ALLOWED = Classified(Route.NOT_ALLOWED)


def classify(method: str, path: str, query_string: bytes) -> Classified:
    if path.startswith(STATEMENT_PREFIX):
        query_id = query_id_of(path, "")
        kind = "poll" if method in ("GET", "HEAD") else "cancel" if method == "DELETE" else "other"
        if query_id is None:
            return Classified(Route.NO_SUCH_QUERY, kind)
        if CACHED_MARK in query_id:
            return Classified(Route.CACHED, kind, query_id)
        return Classified(Route.STATEMENT, kind, query_id)
    if path == "/v1/statement":
        return _SUBMIT if method == "POST" else _NOT_ALLOWED
    # The prefixes themselves and paths below them (``/ui`` and ``/ui/...``, not ``/uix``).
    if not (path.startswith(_PROXIED_BELOW) or path in _PROXIED_EXACT):
        return _ADMIN
    query_id = query_id_of(path, query_string.decode("latin-1") if query_string else "")
    if query_id is None:
        return Classified(Route.OTHER)
    kind = "cancel" if method == "DELETE" and path.startswith("/v1/query/") else "other"
    return Classified(Route.CACHED if CACHED_MARK in query_id else Route.OF_QUERY, kind, query_id)
