"""The aiohttp session: backend calls that stream (UI, spooled segments, HEAD), health checks,
query-locator probes and the external routing service.

aiohttp, not httpx: measured on this machine, httpx's default transport proxies 205 polls/s at 32
connections and aiohttp ~6,700 (docs/performance.md). One session per worker process, keep-alive
connections to every backend, no automatic decompression (bodies pass through as sent).
"""

from __future__ import annotations

import aiohttp

from gateway.config import ProxyConfig


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
