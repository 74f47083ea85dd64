"""Keeping clients on the gateway: the URIs a backend puts in its answers are pointed back at us.

A statement page is one JSON object: the protocol's URIs (``nextUri``, ``infoUri``,
``partialCancelUri``) are members of it, and the rows are the array of its ``data`` member, the only
part that grows with the result (up to megabytes a page). JSON gives key order no meaning: Trino
writes the URIs first and ``stats``, ``warnings``, ... after the rows, but a proxy that re-encodes
pages (sorted keys) or another server may write them anywhere. So every URI member is rewritten
wherever it is, and the rows are neither read nor changed (they are the user's data: a string or a
map key in them that looks like a URI stays as it is), at the cost of one copy into the answer:

- where the rows begin: the first ``"data":`` key of the page (no other object of a statement page
  has a ``data`` member, and no rows come before it);
- where they end: found from the end of the page, whose members after the rows are few and short
  (``_rows_end``), so the rows themselves are never scanned.

Only the values of URI members are touched: a member name inside a JSON *string* has escaped quotes
(``\\"nextUri\\"``), so it cannot be taken for one.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import orjson

# A URI member of the page, up to its value's authority. The search skips ahead to each ``Uri"``
# (a literal first: half the cost of matching at each quote); the look-behinds then check the name,
# its opening quote not escaped (a name inside a string has escaped quotes, ``\"nextUri\"``). JSON
# may escape the slashes (``http:\/\/``).
_URI_MEMBER = re.compile(
    rb'(Uri"(?:(?<=[^\\]"nextUri")|(?<=[^\\]"infoUri")|(?<=[^\\]"partialCancelUri"))\s*:\s*")'
    rb'https?:\\?/\\?/[^/"\\]+'
)
# Which member a _URI_MEMBER match is, by the letter before its "Uri": each one's bit.
_MEMBER_BIT = {ord("t"): 1, ord("o"): 2, ord("l"): 4}
_EVERY_MEMBER = 7
_SEGMENT_URI = re.compile(rb'("(?:uri|ackUri)"\s*:\s*")(https?://[^/"]+)(/v1/spooled/[^"?]*)"')
_DATA = re.compile(rb'"data"\s*:\s*')
_SPACE = b" \t\r\n"
# What _at_top_level keeps of the page's end: quotes, brackets and backslashes.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}\\')
# Candidates for the end of the rows that are checked at most (each check reads what follows it): in
# a statement page the first is the one, unless a string or a member after the rows holds ``]],``.
_ROWS_END_TRIES = 16
BACKEND_PARAM = "trino_gateway_backend"
# Trino's OAuth2 challenge: WWW-Authenticate: Bearer x_redirect_server="...", x_token_server="..."
_CHALLENGE_URI = re.compile(rb'((?:x_redirect_server|x_token_server)=")(https?://[^/"]+)?(/[^"?]*)(\?[^"]*)?"')


def rewrite_uris(body: bytes, gateway_base: str, backend_base: str, backend_name: str) -> bytes:
    """``body`` with the protocol URIs on ``gateway_base`` (``scheme://host:port``)."""
    base = gateway_base.encode()

    def replacement(match: re.Match[bytes]) -> bytes:
        # A function, not a b"\\g<1>..." template: half the cost per match (on every poll).
        return match.group(1) + base

    data = data_value(body)
    if data != -1 and body[data] == 0x7B:  # "{": not rows but the spooling protocol's segments
        body = body[:data] + _rewrite_segments(body[data:], gateway_base, backend_base, backend_name)
    if data == -1 or body[data] != 0x5B:  # "[": no rows (no "data", spooled segments, null)
        return _URI_MEMBER.sub(replacement, body)
    found = 0

    def in_head(match: re.Match[bytes]) -> bytes:
        nonlocal found
        found |= _MEMBER_BIT[match.string[match.start() - 1]]  # nex(t)Uri, inf(o)Uri, partialCance(l)Uri
        return match.group(1) + base

    head = _URI_MEMBER.sub(in_head, body[:data])
    if found == _EVERY_MEMBER:
        # Every URI member is before the rows (Trino's order while a query runs), and a page has each
        # once: what follows the rows is not even looked at, so the page costs what it did when only
        # that order was read.
        return b"".join((head, memoryview(body)[data:]))
    rows_end = _rows_end(body, data)
    # The rows stay a view until the one copy into the answer: a page is up to megabytes.
    rows = memoryview(body)[data:rows_end]
    return b"".join((head, rows, _URI_MEMBER.sub(replacement, body[rows_end:])))


def next_uri_of(body: bytes) -> bytes | None:
    """The backend's ``nextUri`` in a statement page, wherever the page puts it (a map in its rows
    with such a key is not the page's); None if the page has none (the query's last page)."""
    data = data_value(body)
    rows = (data, _rows_end(body, data)) if data != -1 and body[data] == 0x5B else (len(body), len(body))
    for start, end in ((0, rows[0]), (rows[1], len(body))):
        for member in _URI_MEMBER.finditer(body, start, end):
            if body.startswith(b'"nextUri"', member.start() - 5):
                closing = body.find(b'"', member.end())
                if closing == -1:
                    return None  # a page cut off
                uri = body[member.end(1) : closing]
                # A JSON escape (such as "\/") is legal there: the URI itself has none.
                return orjson.loads(b'"' + uri + b'"').encode() if b"\\" in uri else uri
    return None


def data_value(body: bytes) -> int:
    """Where the value of the page's ``data`` member begins, or -1 if it has none: the first
    ``"data"`` followed by ``:`` (a column or a value named "data" is followed by ``,``, ``]`` or
    ``}``; the rows, and a spooled segment's own ``data``, come after the page's)."""
    found = _DATA.search(body)
    return -1 if found is None or found.end() == len(body) else found.end()


def _rows_end(body: bytes, rows: int) -> int:
    """Where the rows array that begins at ``rows`` ends (the index after its ``]``), read from the
    end of the page, so that the rows themselves are not read.

    The rows are the page's last member whose value is an array of arrays (no other member of a
    statement page is one). Each ``]`` that closes an array whose last element is an array, and is
    followed by ``,`` or by the page's closing brace, is a candidate, the nearest to the end first:
    one followed by the closing brace is the rows' end; one followed by ``,`` is if that ``,``
    separates two members of the page (``_at_top_level``), not two values inside a string or a
    nested value. Only the page's members after the rows are read: ``stats``, ``warnings``, ... in
    Trino's order. An empty array ends at once; in a page that is not JSON, everything after
    ``"data":`` is kept as it is."""
    after = _skip_space(body, rows + 1)
    if body[after : after + 1] == b"]":
        return after + 1
    last = len(body) - 1
    while last > rows and body[last] in _SPACE:
        last -= 1
    candidate, tries = last, _ROWS_END_TRIES  # the page's closing brace is not one
    while tries and (candidate := body.rfind(b"]", rows + 1, candidate)) != -1:
        before = candidate - 1
        while body[before] in _SPACE:
            before -= 1
        if body[before] != 0x5D:  # "]": the array's last element is not an array
            continue
        following = candidate + 1
        while body[following] in _SPACE:
            following += 1
        if following == last:
            return candidate + 1  # the rows are the page's last member
        if body[following] == 0x2C:  # ","
            tries -= 1
            if _at_top_level(body, following):
                return candidate + 1
    return len(body)


def _at_top_level(body: bytes, comma: int) -> bool:
    """Whether the ``,`` at ``comma`` separates two members of the page's object, not two values
    inside a string or a nested value: what follows it must close exactly one object.

    Of what follows, the quotes, brackets and backslashes are kept and each string's pair of quotes
    dropped. With no backslash (every quote a string's start or end) and no quote left over (a
    quote is left by a string that holds a bracket, and by a comma inside a string: its closing
    quote has no pair), what is left are the brackets outside strings, and after a member of a JSON
    page they close one more than they open. Anything else is parsed: ``{`` and the rest must be a
    JSON object."""
    rest = body[comma + 1 :]
    brackets = rest.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if not brackets.strip(b"[]{}"):  # brackets only: no quote or backslash left
        return len(brackets) - 2 * (brackets.count(b"{") + brackets.count(b"[")) == 1
    try:
        orjson.loads(b"{" + rest)
    except orjson.JSONDecodeError:
        return False
    return True


def _skip_space(body: bytes, at: int) -> int:
    """The first index from ``at`` that is not JSON white space (``len(body)`` at the end)."""
    end = len(body)
    while at < end and body[at] in _SPACE:
        at += 1
    return at


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
