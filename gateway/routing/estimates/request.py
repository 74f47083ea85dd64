"""What an estimate is asked for: a new query's statement, its user, the headers that make the planner
see what the query would see, and the cache key that tells its estimate from others'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

# Headers of the query that the EXPLAIN carries: who asks (so that access control and the user's session
# apply) and the session the statement is planned in. Client tags and source are left out: the EXPLAIN
# is the gateway's, and must not wait in a resource group meant for the query itself.
PASSED_HEADERS = frozenset(
    {
        b"x-trino-user",
        b"authorization",
        b"x-trino-catalog",
        b"x-trino-schema",
        b"x-trino-path",
        b"x-trino-time-zone",
        b"x-trino-language",
        b"x-trino-session",
        b"x-trino-role",
        b"x-trino-extra-credential",
        b"x-trino-original-user",
        b"x-trino-original-roles",
    }
)
# Of those, what changes a plan (beside the session properties): the key's context.
_CONTEXT_HEADERS = (b"x-trino-catalog", b"x-trino-schema", b"x-trino-path")
_SEPARATOR = "\x1f"  # in no header value (RFC 9110 field values have no control characters)


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    sql: str
    user: str | None
    """Whose query it is (the rate limit's); the planner sees the query's own headers."""
    headers: tuple[tuple[str, str], ...]
    """The query's headers the EXPLAIN carries."""
    context: str
    """Catalog, schema, path and the session properties that count: what besides the text tells two
    statements' estimates apart."""

    @property
    def key(self) -> str:
        """The cache key of the statement as sent."""
        return self.context + _SEPARATOR + self.sql

    def normalised_key(self, normalised: str) -> str:
        # A different separator than ``key``'s: a text sent as it is normalised is kept once under each.
        return self.context + _SEPARATOR + _SEPARATOR + normalised

    @classmethod
    def of(
        cls, scope: dict[str, Any], sql: str, user: str | None, session_properties: frozenset[str] | None
    ) -> EstimateRequest:
        """The request of a new query's ASGI ``scope``; ``session_properties``: those that count in the key
        (None: all)."""
        headers = []
        context: dict[bytes, list[str]] = {}
        for name, value in scope["headers"]:
            name = name.lower()
            if name in PASSED_HEADERS:
                text = value.decode("latin-1")
                headers.append((name.decode("latin-1"), text))
                if name in _CONTEXT_HEADERS or name == b"x-trino-session":
                    context.setdefault(name, []).append(text)
        parts = [",".join(context.get(name, ())).strip() for name in _CONTEXT_HEADERS]
        parts.append(_session(context.get(b"x-trino-session", []), session_properties))
        return cls(sql, user, tuple(headers), _SEPARATOR.join(parts))


def _session(values: list[str], counted: frozenset[str] | None) -> str:
    """``X-Trino-Session: a=1, b=2`` (one or more headers) as the sorted properties that count."""
    if not values:
        return ""
    properties = []
    for value in values:
        for item in value.split(","):
            name, _, setting = item.strip().partition("=")
            name = name.strip()
            if name and (counted is None or name in counted):
                properties.append(f"{name}={unquote_plus(setting.strip())}")
    return ",".join(sorted(properties))
