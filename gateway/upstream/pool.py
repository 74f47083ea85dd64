"""Keep-alive HTTP/1.1 connections to backends for the statement protocol: one request, one whole answer.

Every poll of every query goes through here, so it does the least a correct HTTP/1.1 client can:
httptools (llhttp, the parser uvicorn uses) reads the answers; this module writes requests, keeps
idle connections per backend and enforces the timeouts. Measured on this machine (wrk, 32
connections, the same minimal proxy): aiohttp's client 8,457 polls/s, this 14,283 (docs/performance.md).

Statement answers are JSON documents of bounded size that the proxy rewrites, so they are read whole.
Streams (UI assets, spooled segments) and HEAD go through the httpx client instead. How many requests
may be in flight, in all and per backend, is the facade's business (``gateway.upstream.Upstream``).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from gateway.upstream.errors import BadResponse, ConnectTimeout, Disconnected, NotSent, UpstreamError, UpstreamTimeout


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True, slots=True)
class _Origin:
    key: tuple[str, int, int]  # host, port, and the TLS context's identity (0: plain HTTP)
    host: str
    port: int
    ssl: ssl.SSLContext | None
    prefix: bytes  # the path a backend URL may carry, e.g. http://host/trino
    host_header: bytes


# Methods that are safe to send again on a new connection when one closes before any answer.
_IDEMPOTENT = frozenset({"GET", "DELETE", "PUT", "OPTIONS"})


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.complete = False
        self.result: Answer | None = None
        self.keep_alive = False
        self.received = 0  # data_received calls, for the read-timeout watchdog

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(BadResponse(f"not an HTTP answer ({error})"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.status and not self._delimited():
            # No Content-Length and not chunked: the answer ends where the connection does.
            self._complete()
        elif self.received == 0:
            self._fail(Disconnected("the backend closed the connection without answering"))
        else:
            self._fail(Disconnected("the backend closed the connection in the middle of its answer"))

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes after the answer, with no request asked: nothing more on this connection can be
            # trusted. (Raised through httptools, then handled in data_received.)
            raise BadResponse("sent more than one answer to one request")
        self.headers = []
        self.chunks = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            self.status = 0  # an interim answer (100 Continue): the real one follows
            return
        self._complete()

    # -- used by the pool --------------------------------------------------------------------
    def begin(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self.status = 0
        self.complete = False
        self.result = None
        self.received = 0
        self.waiter = loop.create_future()
        return self.waiter

    def _complete(self) -> None:
        # The answer is kept now: whatever the parser reads next cannot change it.
        chunks = self.chunks
        self.result = Answer(self.status, self.headers, chunks[0] if len(chunks) == 1 else b"".join(chunks))
        self.complete = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: UpstreamError) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _delimited(self) -> bool:
        return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)


class UpstreamPool:
    """Requests to backends over reused connections (idle ones kept per origin)."""

    def __init__(self, connect_timeout: float, read_timeout: float, idle_seconds: float = 15.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # Idle connections older than this are closed rather than reused: a backend closes idle
        # connections on its own schedule, and a request sent into one being closed is lost.
        self.idle_seconds = idle_seconds
        self._origins: dict[tuple[str, int], _Origin] = {}
        self._idle: dict[tuple[str, int, int], list[_Connection]] = {}
        self._default_tls: ssl.SSLContext | None = None

    async def request(
        self,
        origin_url: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        tls: ssl.SSLContext | None = None,
    ) -> Answer:
        """Send ``method target`` to the backend at ``origin_url`` (``http(s)://host[:port][/prefix]``).

        ``target`` is the path and query string; ``tls`` the context for an ``https`` origin (default:
        the system's trust store). Raises ``NotSent`` when no connection could be opened,
        ``UpstreamTimeout``, ``Disconnected`` or ``BadResponse`` otherwise.
        """
        if method == "HEAD":
            raise ValueError("HEAD answers have no body to read: stream them instead")
        origin = self._origins.get((origin_url, id(tls))) or self._origin(origin_url, tls)
        request = self._encode(origin, method, target, headers, body)
        connection = self._take(origin) or await self._connect(origin)
        try:
            return await self._exchange(origin, connection, request)
        except Disconnected as error:
            # Closed before a byte of the answer came: a pooled connection the backend had just
            # closed, or a backend that went away. A method that may be repeated is sent once
            # more on a new connection (which, if the backend is gone, says "connection refused").
            if not (connection.received == 0 and method in _IDEMPOTENT):
                raise error from None
        return await self._exchange(origin, await self._connect(origin), request)

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()

    # -- internals ---------------------------------------------------------------------------
    async def _exchange(self, origin: _Origin, connection: _Connection, request: bytes) -> Answer:
        loop = asyncio.get_running_loop()
        waiter = connection.begin(loop)
        assert connection.transport is not None
        connection.transport.write(request)
        watchdog = _Watchdog(loop, connection, self.read_timeout)
        try:
            await waiter
        finally:
            watchdog.cancel()
            if not connection.complete:
                # Failed, timed out or cancelled (the client went away): the connection may still
                # carry the rest of this answer, so it cannot be reused.
                connection.abort()
        answer = connection.result
        assert answer is not None
        if connection.keep_alive and not connection.closed:
            connection.idle_since = loop.time()
            self._idle.setdefault(origin.key, []).append(connection)
        else:
            connection.abort()
        return answer

    def _take(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        oldest_usable = asyncio.get_running_loop().time() - self.idle_seconds
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest_usable:
                return connection
            connection.abort()
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(_Connection, origin.host, origin.port, ssl=origin.ssl)
        except TimeoutError:
            raise ConnectTimeout(f"connect timed out after {self.connect_timeout:g} s") from None
        except OSError as error:
            raise NotSent(str(error), error) from None
        return connection

    def _origin(self, url: str, tls: ssl.SSLContext | None) -> _Origin:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        context = None
        if secure:
            if tls is None and self._default_tls is None:
                self._default_tls = ssl.create_default_context()
            context = tls or self._default_tls
        host_header = parts.netloc.rsplit("@", 1)[-1].encode()
        origin = _Origin(
            key=(host, port, id(context) if context is not None else 0),
            host=host,
            port=port,
            ssl=context,
            prefix=parts.path.rstrip("/").encode(),
            host_header=host_header,
        )
        self._origins[(url, id(tls))] = origin
        return origin

    @staticmethod
    def _encode(origin: _Origin, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        lines = [
            b"%s %s%s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), origin.prefix, target.encode(), origin.host_header)
        ]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        if body or method in ("POST", "PUT"):
            lines.append(b"content-length: %d\r\n\r\n" % len(body))
            lines.append(body)
        else:
            lines.append(b"\r\n")
        return b"".join(lines)


class _Watchdog:
    """Fails a request whose backend has sent nothing for ``timeout`` seconds (like a socket read
    timeout: a slow but moving answer is not cut off). One timer per request, re-armed as needed."""

    __slots__ = ("connection", "handle", "loop", "seen", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: _Connection, timeout: float) -> None:
        self.loop = loop
        self.connection = connection
        self.timeout = timeout
        self.seen = connection.received
        self.handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        connection = self.connection
        if connection.received != self.seen:
            self.seen = connection.received
            self.handle = self.loop.call_later(self.timeout, self._check)
            return
        connection._fail(UpstreamTimeout(f"no answer within {self.timeout:g} s"))

    def cancel(self) -> None:
        self.handle.cancel()
