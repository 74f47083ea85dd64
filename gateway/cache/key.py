"""A cached result's key: everything that can change a query's answer, or whose answer it is.

    key = HMAC-SHA256(secret, normalised SQL, routing group, owner, the client's X-Trino-* headers)

- **Owner**: the user the gateway verified; else the ``X-Trino-User`` the client named, together with a
  digest of the credentials it sent (``Authorization``): a client that only names another user, without
  that user's password, never reads that user's results, which the cluster would have refused it. In
  a group configured as ``shared``, the owner is the group: its users see the same data.
- **Headers**: every ``X-Trino-*`` request header but those that cannot change an answer (below), with
  their values as sent. Catalog, schema, session properties (their order ignored), time zone,
  language, roles, path, extra credentials, prepared statements, client capabilities and the result
  encoding asked for (a spooling client and an inline one never share an entry) all count, as will
  any header a later Trino adds: an unknown header keeps two queries apart (fail-closed).
- **Secret**: the same on every node of a fleet. A key is part of a cached answer's page URIs, so
  knowing a query and its user is not enough to read its result: the key cannot be computed without
  the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

# Headers that describe the client or the request, never what the query returns.
_IGNORED = frozenset(
    {
        b"x-trino-user",  # the owner stands for it
        b"x-trino-source",
        b"x-trino-client-tags",
        b"x-trino-client-info",
        b"x-trino-trace-token",
        b"x-trino-routing-group",  # the group stands for it
    }
)
# Headers whose value is a comma-separated list whose order does not matter.
_UNORDERED = frozenset(
    {b"x-trino-session", b"x-trino-role", b"x-trino-extra-credential", b"x-trino-client-capabilities"}
)


def owner_of(verified_user: str | None, user: str | None, authorization: bytes | None, shared_group: str | None) -> str:
    """Whose entry a query reads and writes."""
    if shared_group is not None:
        return "group:" + shared_group
    if verified_user:  # ("": the gateway checked, and the request named nobody)
        return "verified:" + verified_user
    credentials = hashlib.sha256(authorization).hexdigest() if authorization else "-"
    return f"named:{user or ''}:{credentials}"


def cache_key(
    secret: bytes, normalised_sql: str, group: str, owner: str, headers: Iterable[tuple[bytes, bytes]]
) -> str:
    """The key of a query's entry (64 hex characters)."""
    values: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(b"x-trino-") and lower not in _IGNORED:
            values.setdefault(lower, []).append(value.strip())
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (normalised_sql.encode(), group.encode(), owner.encode()):
        _add(mac, part)
    for name in sorted(values):
        joined = b",".join(values[name])
        if name in _UNORDERED:
            joined = b",".join(sorted(item.strip() for item in joined.split(b",")))
        _add(mac, name)
        _add(mac, joined)
    return mac.hexdigest()


def _add(mac: hmac.HMAC, part: bytes) -> None:
    # Length-prefixed, so that no two different lists of parts make the same stream.
    mac.update(len(part).to_bytes(8, "big"))
    mac.update(part)


def is_key(text: str) -> bool:
    """Whether ``text`` has a key's form (from a URI a client sent)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
