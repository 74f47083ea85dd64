"""The one family of errors a call to a backend can end in, whichever client made it.

    UpstreamError                     no usable answer
    ├── NotSent                       nothing reached the backend: a new query may go elsewhere
    │   ├── ConnectTimeout            (also an UpstreamTimeout)
    │   └── BackendBusy               every connection the backend may have is in use
    ├── UpstreamTimeout               the backend stopped answering for longer than the read timeout
    ├── Disconnected                  the connection closed before a whole answer arrived
    └── BadResponse                   the backend's bytes are not HTTP

httpx's exceptions (the client off the hot path) are translated into these by ``from_httpx``.
"""

from __future__ import annotations

import httpx


class UpstreamError(Exception):
    """A backend call that produced no usable answer."""


class NotSent(UpstreamError):
    """No request could be sent: nothing reached the backend."""

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class UpstreamTimeout(UpstreamError):
    """The backend stopped sending for longer than the read timeout."""


class ConnectTimeout(NotSent, UpstreamTimeout):
    """No connection within the connect timeout: nothing was sent, and it counts as a timeout."""


class BackendBusy(NotSent):
    """Every connection this backend may have (``proxy.max_connections_per_backend``) stayed in use
    for the connect timeout: a backend that hangs cannot take the connections of the others."""


class Disconnected(UpstreamError):
    """The connection closed before a whole answer arrived."""


class BadResponse(UpstreamError):
    """The backend's bytes are not HTTP."""


def describe(error: BaseException) -> str:
    """A short reason for a failed upstream call, for the message a client reads."""
    if isinstance(error, NotSent):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        if error.os_error is None:
            return str(error)
        return f"cannot connect: {error.os_error}"
    if isinstance(error, UpstreamTimeout | TimeoutError):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _os_error(error: BaseException) -> OSError | None:
    """The socket error behind ``error``: the first in its chain with an errno (anyio wraps the
    real one, e.g. ConnectionRefusedError, in a plain "All connection attempts failed")."""
    seen: BaseException | None = error
    first = None
    while seen is not None:
        if isinstance(seen, OSError):
            if seen.errno is not None:
                return seen
            first = first or seen
        seen = seen.__cause__ or seen.__context__
    return first


def from_httpx(error: httpx.HTTPError | OSError) -> UpstreamError:
    """The family member an httpx failure (or a bare socket error) means."""
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ConnectTimeout(f"connect timed out: {error}")
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(str(error) or "timed out")
    if isinstance(error, httpx.ConnectError):
        return NotSent(str(error) or "cannot connect", _os_error(error))
    if isinstance(error, httpx.RemoteProtocolError):
        if "without sending" in str(error) or "disconnected" in str(error).lower():
            return Disconnected(f"the backend closed the connection: {error}")
        return BadResponse(f"not an HTTP answer ({error})")
    if isinstance(error, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return Disconnected(f"the connection broke: {error}")
    if isinstance(error, OSError):
        return Disconnected(f"the connection broke: {error}")
    return UpstreamError(f"{type(error).__name__}: {error}")
