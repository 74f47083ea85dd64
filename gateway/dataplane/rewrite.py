"""Keeping clients on the gateway: the URIs a backend puts in its answers are pointed back at us.

Only the values of the protocol's URI fields are touched, never result data: a field name in a
JSON *string value* has escaped quotes (``\\"nextUri\\"``), so the patterns cannot match inside one,
and a map in the rows with such a key is left alone (see ``rewrite_uris``).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import orjson

# The protocol URIs (nextUri, infoUri, partialCancelUri) precede "columns" and "data" in every
# QueryResults a Trino server writes, but other key orders are handled too (see rewrite_uris).
_PROTOCOL_URI = re.compile(rb'("(?:nextUri|infoUri|partialCancelUri)"\s*:\s*")https?://[^/"]+')
_SEGMENT_URI = re.compile(rb'("(?:uri|ackUri)"\s*:\s*")(https?://[^/"]+)(/v1/spooled/[^"?]*)"')
_URI_FIELDS = ("nextUri", "infoUri", "partialCancelUri")
BACKEND_PARAM = "trino_gateway_backend"
# Trino's OAuth2 challenge: WWW-Authenticate: Bearer x_redirect_server="...", x_token_server="..."
_CHALLENGE_URI = re.compile(rb'((?:x_redirect_server|x_token_server)=")(https?://[^/"]+)?(/[^"?]*)(\?[^"]*)?"')


def rewrite_uris(body: bytes, gateway_base: str, backend_base: str, backend_name: str) -> bytes:
    """``body`` with the protocol URIs on ``gateway_base`` (``scheme://host:port``)."""
    base = gateway_base.encode()

    def replacement(match: re.Match[bytes]) -> bytes:
        # A function, not a b"\\g<1>..." template: half the cost per match (on every poll).
        return match.group(1) + base

    data_at = body.find(b'"data"')
    if data_at == -1:
        return _PROTOCOL_URI.sub(replacement, body)
    head, rewritten_in_head = _PROTOCOL_URI.subn(replacement, body[:data_at])
    # The rows stay a view until the one copy into the answer: a page is up to megabytes.
    tail: bytes | memoryview = memoryview(body)[data_at:]
    if body[data_at + 6 : data_at + 16].lstrip(b" \t\r\n:")[:1] == b"{":
        # "data" is an object, not rows: the spooling protocol's segments.
        tail = _rewrite_segments(body[data_at:], gateway_base, backend_base, backend_name)
    # The rows may hold maps with the same keys as the protocol's URIs. A server that writes any
    # of the page's URIs before "data" writes them all there (Trino does): then the rows are not
    # even scanned. Otherwise (another key order) the page is parsed to see whether it has URI
    # fields at all, and what follows "data" is rewritten if so.
    if rewritten_in_head == 0 and body.find(b'Uri"', data_at) != -1 and _has_uri_fields(body):
        tail = _PROTOCOL_URI.sub(replacement, bytes(tail))
    return b"".join((head, tail))


def _has_uri_fields(body: bytes) -> bool:
    """Whether the page itself has protocol URI fields (parsed only on the rare pages that need it)."""
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True  # unreadable: rewrite wherever the pattern matches, as before
    return isinstance(page, dict) and any(isinstance(page.get(field), str) for field in _URI_FIELDS)


def _rewrite_segments(body: bytes, gateway_base: str, backend_base: str, backend_name: str) -> bytes:
    """Spooled segments served by the coordinator carry no query id, so the gateway marks which
    backend they belong to in the URI it hands out; storage URIs are left alone. A coordinator that
    honours X-Forwarded-* writes the gateway's own address: those are marked too (else any worker
    would have to guess the backend, trinodb/trino-gateway's #679)."""
    coordinator = (backend_base.encode(), gateway_base.encode())
    marker = f"?{BACKEND_PARAM}={quote(backend_name, safe='')}".encode()

    def replace(match: re.Match[bytes]) -> bytes:
        if match.group(2) not in coordinator:
            return match.group(0)
        return match.group(1) + gateway_base.encode() + match.group(3) + marker + b'"'

    return _SEGMENT_URI.sub(replace, body)


def rewrite_challenge(value: bytes, gateway_base: str, backend_name: str) -> bytes:
    """A backend's OAuth2 challenge (``WWW-Authenticate``) with its login and token URIs on the
    gateway, marked with the backend that issued it: the client polls for its token there, and the
    browser's login starts there (a login is known only to the cluster that began it)."""
    base = gateway_base.encode()
    marker = f"{BACKEND_PARAM}={quote(backend_name, safe='')}".encode()

    def replace(match: re.Match[bytes]) -> bytes:
        query = match.group(4) or b""
        query = query + b"&" + marker if query else b"?" + marker
        return match.group(1) + base + match.group(3) + query + b'"'

    return _CHALLENGE_URI.sub(replace, value)
