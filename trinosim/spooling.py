"""The spooling protocol of Trino 466+, as a coordinator serving segments itself (retrieval mode
``COORDINATOR_PROXY``).

A client that sends ``X-Trino-Query-Data-Encoding: json+zstd,json+lz4,json`` (in preference order)
gets, when spooling is on, each page's rows as ``data: {"encoding", "segments": [...]}``: small pages
*inline* (base64 of the encoded rows), larger ones *spooled*: ``uri`` to download them from
``/v1/spooled/download/{id}``, ``ackUri`` (``/v1/spooled/ack/{id}``) to say they may be deleted, and
``headers`` the download must carry (here a per-segment key, as object stores want for encryption).
Rows are encoded as the same JSON array the direct protocol sends; ``json+zstd`` compresses it as a
zstd frame and ``json+lz4`` as a raw LZ4 block, and only when the segment is large enough
(``uncompressedSize`` is present exactly when it is compressed). Segments expire after ``ttl``.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

try:  # the codecs are optional: without them only "json" is offered
    import zstandard
except ImportError:  # pragma: no cover - depends on what is installed
    zstandard = None  # type: ignore[assignment]
try:
    import lz4.block as lz4_block
except ImportError:  # pragma: no cover
    lz4_block = None  # type: ignore[assignment]

HEADER = "X-Trino-Query-Data-Encoding"
SEGMENT_KEY_HEADER = "X-Trino-Sim-Segment-Key"
# Trino's inlining defaults: protocol.spooling.inlining.max-rows and .max-size.
INLINE_MAX_ROWS = 1000
INLINE_MAX_BYTES = 128 * 1024
# Smaller segments are not worth compressing (Trino: protocol.spooling.encoding.compression threshold).
COMPRESS_FROM_BYTES = 8 * 1024


def supported_encodings() -> list[str]:
    encodings = []
    if zstandard is not None:
        encodings.append("json+zstd")
    if lz4_block is not None:
        encodings.append("json+lz4")
    encodings.append("json")
    return encodings


def choose_encoding(header: str | None) -> str | None:
    """The first encoding the client asks for that this server can write, or None (direct protocol)."""
    if not header:
        return None
    available = supported_encodings()
    for wanted in (part.strip().lower() for part in header.split(",")):
        if wanted in available:
            return wanted
    return None


def _compress(encoding: str, raw: bytes) -> bytes | None:
    if len(raw) < COMPRESS_FROM_BYTES:
        return None
    if encoding == "json+zstd":
        packed = zstandard.ZstdCompressor().compress(raw)
    elif encoding == "json+lz4":
        packed = lz4_block.compress(raw, store_size=False)
    else:
        return None
    return packed if len(packed) < len(raw) else None


@dataclass
class Segment:
    identifier: str
    data: bytes
    key: str
    expires: float
    query_id: str


class SegmentStore:
    """Spooled segments in memory until acknowledged or expired."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._segments: dict[str, Segment] = {}
        self.counters = {"spooled": 0, "downloaded": 0, "acknowledged": 0, "expired": 0}

    def encode_page(
        self, query_id: str, rows: list[list[Any]], encoding: str, base: str, row_offset: int
    ) -> dict[str, Any]:
        """One page's ``data`` object: a single inline or spooled segment."""
        raw = orjson.dumps(rows)
        packed = _compress(encoding, raw)
        payload = packed if packed is not None else raw
        metadata: dict[str, Any] = {"rowOffset": row_offset, "rowsCount": len(rows), "segmentSize": len(payload)}
        if packed is not None:
            metadata["uncompressedSize"] = len(raw)
        if len(rows) <= INLINE_MAX_ROWS and len(payload) <= INLINE_MAX_BYTES:
            segment: dict[str, Any] = {
                "type": "inline",
                "data": base64.b64encode(payload).decode("ascii"),
                "metadata": metadata,
            }
            return {"encoding": encoding, "segments": [segment]}
        identifier = secrets.token_urlsafe(24)
        key = secrets.token_urlsafe(16)
        expires = time.time() + self.ttl
        self._segments[identifier] = Segment(identifier, payload, key, time.monotonic() + self.ttl, query_id)
        self.counters["spooled"] += 1
        metadata["expiresAt"] = dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        spooled = {
            "type": "spooled",
            "uri": f"{base}/v1/spooled/download/{identifier}",
            "ackUri": f"{base}/v1/spooled/ack/{identifier}",
            "metadata": metadata,
            "headers": {SEGMENT_KEY_HEADER: [key]},
        }
        return {"encoding": encoding, "segments": [spooled]}

    def get(self, identifier: str, key: str | None) -> Segment | None:
        """The segment, if it exists, has not expired, and ``key`` is its key."""
        segment = self._segments.get(identifier)
        if segment is None or segment.expires < time.monotonic() or key != segment.key:
            return None
        self.counters["downloaded"] += 1
        return segment

    def acknowledge(self, identifier: str) -> bool:
        if self._segments.pop(identifier, None) is None:
            return False
        self.counters["acknowledged"] += 1
        return True

    def expire(self) -> None:
        now = time.monotonic()
        for identifier in [i for i, s in self._segments.items() if s.expires < now]:
            del self._segments[identifier]
            self.counters["expired"] += 1

    @property
    def held(self) -> int:
        return len(self._segments)
