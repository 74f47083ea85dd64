"""One proxied request while the proxy handles it: the ASGI scope and channels, what the request is,
its observation (metrics and spans), and the answer to send. Passed to every step of the proxy
instead of long argument lists."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.dataplane.classify import Classified
from observability.request import ObservedRequest

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

# Which gateway process answered: lets operators (and tests) see workers share queries.
WORKER = (b"x-trino-gateway-worker", f"{socket.gethostname()}:{os.getpid()}".encode())


# What a Host (or X-Forwarded-Host) may be: a name or address and a port. Anything else (quotes,
# slashes, spaces) would be written into every URI and challenge handed back: it is ignored.
_HOST = re.compile(r"^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def gateway_base(scope: Scope) -> str:
    """``scheme://host[:port]`` the client reached the gateway at (a fronting proxy may say so)."""
    scheme = host = None
    for key, value in scope["headers"]:
        if key == b"host" and host is None:
            host = value.decode("latin-1")
        elif key == b"x-forwarded-host":
            host = value.decode("latin-1").split(",")[0].strip()
        elif key == b"x-forwarded-proto":
            scheme = value.decode("latin-1").split(",")[0].strip().lower()
    if host is None or not _HOST.match(host):
        server = scope.get("server") or ("localhost", 80)
        host = f"[{server[0]}]:{server[1]}" if ":" in str(server[0]) else f"{server[0]}:{server[1]}"
    if scheme not in ("http", "https"):
        scheme = scope.get("scheme", "http")
    return f"{scheme}://{host}"


class BodyRefused(Exception):
    """The request's body cannot be had: too large, too slow, or the client left while sending it.
    Nothing of it may reach a backend (a cut-off statement is another statement)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Exchange:
    __slots__ = ("_base", "body_limit", "body_timeout", "classified", "observed", "receive", "scope", "send")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        observed: ObservedRequest,
        classified: Classified,
        body_limit: int = 1_048_576,
        body_timeout: float = 30.0,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.observed = observed
        self.send = observed.send
        self.classified = classified
        self.body_limit = body_limit
        self.body_timeout = body_timeout
        self._base: str | None = None

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def base(self) -> str:
        """Where the client reached the gateway: the base of every URI handed back to it."""
        if self._base is None:
            self._base = gateway_base(self.scope)
        return self._base

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case bytes, as ASGI servers give names), or None."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    async def body(self, limit: int | None = None) -> bytes:
        """The whole request body, at most ``limit`` bytes (default ``body_limit``), within
        ``body_timeout`` seconds; else BodyRefused."""
        limit = self.body_limit if limit is None else limit
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyRefused(413, f"the request body has {declared} bytes, more than the {limit} allowed")
        chunks = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await self.receive()
                    if message["type"] == "http.disconnect":
                        raise BodyRefused(499, "the client left while sending the request body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise BodyRefused(413, f"the request body has more than the {limit} bytes allowed")
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            raise BodyRefused(408, f"the request body did not arrive within {self.body_timeout:g} s") from None

    async def respond(self, status: int, headers: RawHeaders, body: bytes) -> None:
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append(WORKER)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, document: Any) -> None:
        await self.respond(status, [(b"content-type", b"application/json")], orjson.dumps(document))

    async def respond_text(self, status: int, text: str) -> None:
        await self.respond(status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode())
