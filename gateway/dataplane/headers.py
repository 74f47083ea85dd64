"""Headers between client and backend: what the backend gets, and what the client gets back.

Names are lower case (as ASGI servers give them) and kept as bytes all the way through; every line
is kept as it came (repeated ``X-Trino-Set-Session`` lines must stay separate lines).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RawHeaders = list[tuple[bytes, bytes]]

# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP stacks set themselves.
NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_FORWARDED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-for"})
_VIA = (b"via", b"1.1 trino-gateway")
_IDENTITY = (b"accept-encoding", b"identity")


def to_backend(scope: dict[str, Any], base: str, statement: bool, forwarded: bool) -> RawHeaders:
    """The client's headers as the backend gets them: hop-by-hop ones dropped, forwarding added."""
    client, added = to_backend_parts(scope, base, statement, forwarded)
    client.extend(added)
    return client


def to_backend_parts(
    scope: dict[str, Any], base: str, statement: bool, forwarded: bool
) -> tuple[RawHeaders, RawHeaders]:
    """``to_backend`` in two parts: the client's own headers that go on, and those the gateway adds
    (forwarding, ``Via``), which are the same for every request of one client through one listener."""
    headers = []
    client_forwarded_for = None
    for key, value in scope["headers"]:
        if key in NOT_FORWARDED or (statement and key == b"accept-encoding"):
            continue
        if forwarded and key in _FORWARDED:
            if key == b"x-forwarded-for":
                client_forwarded_for = value
            continue
        headers.append((key, value))
    added: RawHeaders = []
    if forwarded:
        client = scope.get("client")
        remote = client[0].encode() if client else b"unknown"
        added.append((b"x-forwarded-for", client_forwarded_for + b", " + remote if client_forwarded_for else remote))
        scheme, authority = base.split("://", 1)
        added.append((b"x-forwarded-proto", scheme.encode("latin-1")))
        added.append((b"x-forwarded-host", authority.encode("latin-1")))
        if ":" in authority.rsplit("]", 1)[-1]:
            added.append((b"x-forwarded-port", authority.rsplit(":", 1)[1].encode("latin-1")))
    added.append(_VIA)
    if statement:
        # Statement answers are rewritten, so they must arrive uncompressed.
        added.append(_IDENTITY)
    return headers, added


def to_client(raw: Iterable[tuple[bytes, bytes]], keep_length: bool = False) -> RawHeaders:
    """The backend's headers as the client gets them (``keep_length``: the body passes unchanged)."""
    return [
        (k, v) for k, v in raw if k.lower() not in NOT_FORWARDED or (keep_length and k.lower() == b"content-length")
    ]


def with_extra(headers: RawHeaders, extra: Iterable[tuple[str, str]]) -> RawHeaders:
    """``headers`` with ``extra`` (from the routing service) replacing lines of the same name."""
    added = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra]
    names = {name for name, _ in added}
    return [(k, v) for k, v in headers if k not in names] + added
