"""The HTTP client the gateway talks to backends with.

aiohttp, not httpx, on this path: measured on this machine, httpx's default transport proxies 205
polls/s at 32 connections and aiohttp ~6,700 (docs/performance.md). One session per worker process,
keep-alive connections to every backend, no automatic decompression (bodies pass through as sent).
"""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.config import ProxyConfig

# Failures where nothing can have reached the backend: a new query may go to another backend.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# The backend did not answer in time.
TIMEOUTS = (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, asyncio.TimeoutError)
FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def create_session(config: ProxyConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=config.max_connections, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout, sock_read=config.read_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def describe(error: BaseException) -> str:
    """A short reason for a failed upstream call, for the message a client reads."""
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {error.os_error}"
    if isinstance(error, TIMEOUTS):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
