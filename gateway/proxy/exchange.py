"""One proxied request while the proxy handles it: the ASGI scope and channels, what the request is,
its observation (metrics and spans), and the answer to send. Passed to every step of the proxy
instead of long argument lists."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.classify import Classified
from observability.request import ObservedRequest

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

# Which gateway process answered: lets operators (and tests) see workers share queries.
WORKER = (b"x-trino-gateway-worker", f"{socket.gethostname()}:{os.getpid()}".encode())


def gateway_base(scope: Scope) -> str:
    """``scheme://host[:port]`` the client reached the gateway at (a fronting proxy may say so)."""
    scheme = host = None
    for key, value in scope["headers"]:
        if key == b"host" and host is None:
            host = value.decode("latin-1")
        elif key == b"x-forwarded-host":
            host = value.decode("latin-1").split(",")[0].strip()
        elif key == b"x-forwarded-proto":
            scheme = value.decode("latin-1").split(",")[0].strip()
    if host is None:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme or scope.get('scheme', 'http')}://{host}"


class Exchange:
    __slots__ = ("_base", "classified", "observed", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, observed: ObservedRequest, classified: Classified) -> None:
        self.scope = scope
        self.receive = receive
        self.observed = observed
        self.send = observed.send
        self.classified = classified
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

    async def body(self) -> bytes:
        chunks = []
        while True:
            message = await self.receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def respond(self, status: int, headers: RawHeaders, body: bytes) -> None:
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append(WORKER)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, document: Any) -> None:
        await self.respond(status, [(b"content-type", b"application/json")], orjson.dumps(document))

    async def respond_text(self, status: int, text: str) -> None:
        await self.respond(status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode())
