"""How the gateway talks to backends: ``Upstream`` (``client.py``) is the one facade, with one
family of errors (``errors.py``) and one set of connection limits (``limits.py``)."""

from gateway.upstream.client import Streamed, Upstream
from gateway.upstream.errors import (
    BackendBusy,
    BadResponse,
    ConnectTimeout,
    Disconnected,
    NotSent,
    UpstreamError,
    UpstreamTimeout,
    describe,
)
from gateway.upstream.pool import Answer

__all__ = [
    "Answer",
    "BackendBusy",
    "BadResponse",
    "ConnectTimeout",
    "Disconnected",
    "NotSent",
    "Streamed",
    "Upstream",
    "UpstreamError",
    "UpstreamTimeout",
    "describe",
]
