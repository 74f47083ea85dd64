"""A new query as a client submitted it: everything needed to send it to a backend, at once, after it
waited in the gateway, or again on another backend after the first failed.

A held query keeps its submission until its first rows, so the submission is kept small: the
statement as the bytes that came (its text is decoded when asked for), and the headers for the
backend packed into one bytes object rather than a list of pairs (10,000 held queries: ~300 bytes
each instead of ~1.5 KB).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cache.capture import Capture
from gateway.routing.estimates import EstimateUse

RawHeaders = list[tuple[bytes, bytes]]
# Between a header's name and value, and between headers: NUL is in neither (RFC 9110, 5.5).
_SEPARATOR = b"\x00"


@dataclass(slots=True, eq=False)
class Submission:
    body: bytes
    """The statement as it came."""
    user: str | None
    """The verified user if the gateway verifies users, else the X-Trino-User header."""
    source: str | None
    client_tags: str | None
    transaction: str | None
    group: str
    routing_source: str
    """What chose the group: header, rule, external, default, transaction, kill_query."""
    routing_rule: str | None
    packed_headers: bytes
    """The client's headers as sent to a backend (``pack``)."""
    failover: bool = False
    """It may be sent to another backend if its own fails before any row reached the client (a
    read-only statement outside a transaction, unless the config or a rule said no)."""
    user_limit: int | None = None
    """The most queries its user may run at once, if a rule or the config says (admission control)."""
    weight: float | None = None
    """Its user's weight in the fair queue, if a rule says."""
    added_headers: bytes = b""
    """The headers the gateway adds (forwarding, ``Via``), packed: one object shared by the queries of
    one client through one listener (``shared``)."""
    estimate: EstimateUse | None = None
    """Its estimate, if routing asked for one (its numbers one object for every query of a cached statement)."""
    cache: str | None = None
    """The result cache's word on it (miss, refused, waited, not eligible: why), if the cache applies."""
    capture: Capture | None = None
    """Its result on the way into the result cache, if it is to be cached (this worker's: not stored)."""

    @property
    def sql(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def headers(self) -> RawHeaders:
        return unpack(self.packed_headers) + unpack(self.added_headers)

    def to_json(self) -> str:
        """What a store keeps of it, for any node to send it."""
        return orjson.dumps(
            {
                "body": base64.b64encode(self.body).decode(),
                "user": self.user,
                "source": self.source,
                "client_tags": self.client_tags,
                "group": self.group,
                "routed_by": [self.routing_source, self.routing_rule],
                "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in self.headers],
                "failover": self.failover,
                "user_limit": self.user_limit,
                "weight": self.weight,
                "estimate": self.estimate.to_json() if self.estimate is not None else None,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Submission:
        data: dict[str, Any] = orjson.loads(text)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in data["headers"]]
        return cls(
            base64.b64decode(data["body"]),
            data["user"],
            data["source"],
            data["client_tags"],
            None,  # statements of a transaction never wait: they go to the transaction's owner
            data["group"],
            data["routed_by"][0],
            data["routed_by"][1],
            pack(headers),
            failover=bool(data["failover"]),
            user_limit=data.get("user_limit"),
            weight=data.get("weight"),
            estimate=EstimateUse.from_json(data.get("estimate")),
        )


def pack(headers: RawHeaders) -> bytes:
    return _SEPARATOR.join(part for pair in headers for part in pair)


_SHARED: dict[bytes, bytes] = {}
_SHARED_KEPT = 1024


def shared(packed: bytes) -> bytes:
    """One object for equal packed headers (those the gateway adds are the same for every query of a
    client): 10,000 held queries of a few clients keep a few copies, not 10,000."""
    kept = _SHARED.get(packed)
    if kept is None:
        if len(_SHARED) >= _SHARED_KEPT:
            _SHARED.clear()  # many clients: sharing starts over (nothing is lost, only shared less)
        kept = _SHARED[packed] = packed
    return kept


def unpack(packed: bytes) -> RawHeaders:
    if not packed:
        return []
    parts = packed.split(_SEPARATOR)
    return list(zip(parts[::2], parts[1::2], strict=True))
