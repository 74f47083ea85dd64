"""The one way the gateway talks to backends (and to the routing service).

- ``send``: a statement request (submit, poll, cancel), its answer read whole, over the measured
  keep-alive pool (``pool.py``): the hot path.
- ``stream``: anything else a client asked for (UI, spooled segments, HEAD), streamed through httpx.
- ``fetch``: the gateway's own calls (health checks, locator probes, the routing service), httpx.

Proxied calls (``send``, ``stream``) share one bound on requests in flight and a bound per backend
(``limits.py``); every failure is one of ``errors.py``'s family. With tracing on, the httpx
clients are instrumented (opentelemetry-instrumentation-httpx), so the gateway's own calls get CLIENT
spans; proxied calls get theirs from the proxy's request observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.store.backend import Backend, BackendTls
from gateway.upstream.errors import NotSent, UpstreamError, from_httpx
from gateway.upstream.limits import ConnectionLimits
from gateway.upstream.pool import Answer, UpstreamPool
from gateway.upstream.tls import TlsContexts, TlsSettingsError

RawHeaders = list[tuple[bytes, bytes]]
# A gateway call's answer is read whole: more than this from a health endpoint is junk.
FETCH_LIMIT = 8 * 1024 * 1024


@dataclass(slots=True)
class Streamed:
    """An answer whose body is still arriving: ``body`` yields its bytes as they come."""

    status: int
    headers: RawHeaders
    body: AsyncIterator[bytes]


class Upstream:
    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        max_connections_per_backend: int,
        tracer_provider: Any = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limits = ConnectionLimits(max_connections, max_connections_per_backend, wait_seconds=connect_timeout)
        self.pool = UpstreamPool(connect_timeout, read_timeout)
        self.tracer_provider = tracer_provider
        self._tls = TlsContexts()
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._max_connections = max_connections
        # Requests are built without the client (see fetch), so they carry their timeouts themselves.
        self._timeouts = {
            "timeout": httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout).as_dict()
        }
        # Built now, not in the first call: loading the trust store takes ~20 ms, which would count as
        # the first health check's latency.
        self._client(None)

    async def warm_up(self) -> None:
        """One request to a throwaway local server: httpx loads its async machinery at its first
        request (~17 ms measured), which must not count as the first backend's health-check latency."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            with contextlib.suppress(UpstreamError):
                await self.fetch(f"http://127.0.0.1:{port}/", timeout=5)
        finally:
            server.close()
            await server.wait_closed()

    # -- proxied calls ------------------------------------------------------------------------
    async def send(self, backend: Backend, method: str, target: str, headers: RawHeaders, body: bytes = b"") -> Answer:
        """A statement request to ``backend`` (``target``: path and query string), answered whole."""
        tls = self._context(backend)
        name = backend.name
        limits = self.limits
        await limits.acquire(name)
        try:
            return await self.pool.request(backend.proxy_to, method, target, headers, body, tls)
        finally:
            limits.release(name)

    @contextlib.asynccontextmanager
    async def stream(
        self, backend: Backend, method: str, target: str, headers: RawHeaders, body: bytes = b""
    ) -> AsyncIterator[Streamed]:
        """A request whose answer is passed on as it arrives; the connection is held until the block ends."""
        client = self._client(backend)
        # Built here, not with client.build_request: that would add the client's default headers
        # (User-Agent, Accept-Encoding...), which a proxied request must not gain.
        request = httpx.Request(
            method, backend.proxy_to + target, headers=headers, content=body or None, extensions=self._timeouts
        )
        await self.limits.acquire(backend.name)
        try:
            try:
                response = await client.send(request, stream=True)
            except (httpx.HTTPError, OSError) as error:
                raise from_httpx(error) from None
            try:
                yield Streamed(response.status_code, list(response.headers.raw), _body(response))
            finally:
                await response.aclose()
        finally:
            self.limits.release(backend.name)

    # -- the gateway's own calls --------------------------------------------------------------
    async def fetch(
        self,
        url: str,
        method: str = "GET",
        *,
        backend: Backend | None = None,
        tls: BackendTls | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """A call of the gateway's own (not counted against the proxy's limits), answered whole.
        ``backend`` (or ``tls``, for a service that is not a backend) chooses the TLS settings;
        redirects are not followed."""
        client = self._client(backend, tls)
        extensions = self._timeouts if timeout is None else {"timeout": httpx.Timeout(timeout).as_dict()}
        request = httpx.Request(
            method, url, params=params, headers=headers, data=data, content=content, extensions=extensions
        )
        try:
            response = await client.send(request, stream=True)
            try:
                chunks, size = [], 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > FETCH_LIMIT:
                        raise UpstreamError(f"answered more than {FETCH_LIMIT // (1024 * 1024)} MB")
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except (httpx.HTTPError, OSError) as error:
            raise from_httpx(error) from None
        return Answer(response.status_code, list(response.headers.raw), b"".join(chunks))

    async def close(self) -> None:
        self.pool.close()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # -- internals -----------------------------------------------------------------------------
    def _context(self, backend: Backend) -> ssl.SSLContext | None:
        try:
            return self._tls.get(backend.tls)
        except TlsSettingsError as error:
            raise NotSent(f"backend {backend.name}: {error}") from None

    def _client(self, backend: Backend | None, tls: BackendTls | None = None) -> httpx.AsyncClient:
        if backend is not None:
            context = self._context(backend)
        else:
            try:
                context = self._tls.get(tls)
            except TlsSettingsError as error:
                raise NotSent(str(error)) from None
        key = 0 if context is None else id(context)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._new_client(context)
        return client

    def _new_client(self, context: ssl.SSLContext | None) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            # The system's trust store (and SSL_CERT_FILE), as the statement pool uses.
            verify=context or ssl.create_default_context(),
            limits=httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=64, keepalive_expiry=15.0
            ),
            follow_redirects=False,
            # Backends are reached directly: HTTP(S)_PROXY variables meant for other traffic are ignored.
            trust_env=False,
        )
        if self.tracer_provider is not None:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.tracer_provider)
        return client


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except (httpx.HTTPError, OSError) as error:
        raise from_httpx(error) from None
