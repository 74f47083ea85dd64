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


def rewrite_uris(body: bytes, gateway_base: str, backend_base: str, backend_name: str) -> bytes:
    """``body`` with the protocol URIs on ``gateway_base`` (``scheme://host:port``)."""
    base = gateway_base.encode()

    def replacement(match: re.Match[bytes]) -> bytes:
        # A function, not a b"\\g<1>..." template: half the cost per match (on every poll).
        return match.group(1) + base

    data_at = body.find(b'"data"')
    if data_at == -1:
        body = _PROTOCOL_URI.sub(replacement, body)
    else:
        head, tail = body[:data_at], body[data_at:]
        original = body
        body, rewritten_in_head = _PROTOCOL_URI.subn(replacement, head)
        if tail[6:16].lstrip(b" \t\r\n:")[:1] == b"{":
            # "data" is an object, not rows: the spooling protocol's segments.
            tail = _rewrite_segments(tail, gateway_base, backend_base, backend_name)
        # The tail of a result page is megabytes of rows: one scan for what the three URI keys
        # (nextUri, infoUri, partialCancelUri) end with, not one per key. Rows may hold maps with
        # such keys, so the tail is rewritten only when the page's own URIs are not all before
        # "data" (never so from a Trino server, which writes them first).
        if b'Uri"' in tail and _uri_fields(original) > rewritten_in_head:
            tail = _PROTOCOL_URI.sub(replacement, tail)
        body += tail
    return body


def _uri_fields(body: bytes) -> int:
    """How many protocol URI fields the page itself has (parsed only on the rare pages that need it)."""
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        return len(_URI_FIELDS)  # unreadable: rewrite wherever the pattern matches, as before
    if not isinstance(page, dict):
        return 0
    return sum(isinstance(page.get(field), str) for field in _URI_FIELDS)


def _rewrite_segments(body: bytes, gateway_base: str, backend_base: str, backend_name: str) -> bytes:
    """Spooled segments served by the coordinator carry no query id, so the gateway marks which
    backend they belong to in the URI it hands out; storage URIs are left alone."""
    backend_authority = backend_base.encode()
    marker = f"?{BACKEND_PARAM}={quote(backend_name, safe='')}".encode()

    def replace(match: re.Match[bytes]) -> bytes:
        if match.group(2) != backend_authority:
            return match.group(0)
        return match.group(1) + gateway_base.encode() + match.group(3) + marker + b'"'

    return _SEGMENT_URI.sub(replace, body)
