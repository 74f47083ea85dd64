"""What a failed backend call means, whichever client made it."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.upstream.pool import NotSent, UpstreamError, UpstreamTimeout

# Failures where nothing can have reached the backend: a new query may go to another backend.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, NotSent)
# The backend did not answer in time.
TIMEOUTS = (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, asyncio.TimeoutError, UpstreamTimeout)
FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError, UpstreamError)


def describe(error: BaseException) -> str:
    """A short reason for a failed upstream call, for the message a client reads."""
    if isinstance(error, aiohttp.ClientConnectorError | NotSent):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, NotSent) and error.os_error is None:
            return str(error)
        return f"cannot connect: {error.os_error}"
    if isinstance(error, TIMEOUTS):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
