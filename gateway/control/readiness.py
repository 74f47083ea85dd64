"""Whether this worker should be sent new work: the answer to ``GET /gateway/readyz``, which a load
balancer asks of every node every second or so and gives up on after a second.

    ready ── not shutting down (gateway.node.shutdown's flag: a stat)
          └─ the store answered lately: any statement of this worker within FRESH_SECONDS
             (gateway.store.contact), else the watch's own ping, at most PING_TIMEOUT long

The answer is read, never awaited: the watch keeps it current in the background. A check answered
only after a round trip to the store waited behind the work it was to protect: in a burst through a
fleet, every worker's connections to PostgreSQL waited on the routing group's admission lock, the
ping waited up to 0.9 s for one of them, and haproxy (250 ms timeout) took every node out at once.
When the worker is busy, its own statements say the store answers; when it is idle, the watch pings
on a connection of its own (``Store.ping``), so an idle worker whose pool is held up by a lock is not
taken for one that cannot reach its store.

``respond`` answers in the ASGI entry (gateway.node.app), ahead of the admin app; the admin API's
route (gateway.control.api.status) gives the same verdict where credentials are required. The node
builds it (gateway.node.services) with its shutdown flag (gateway.node.shutdown.ShutdownFlag).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import orjson

from gateway.dataplane import Scope, Send
from gateway.dataplane.exchange import WORKER
from gateway.store import Store

log = logging.getLogger("gateway.readiness")

PATH = "/gateway/readyz"
# A statement that returned within this long says the store answers: no ping.
FRESH_SECONDS = 2.0
# The watch looks this often; a ping gives up after PING_TIMEOUT (the store counts as unreachable).
LOOK_EVERY_SECONDS = 1.0
PING_TIMEOUT = 3.0
# With no answer for this long the store counts as unreachable whatever the watch is doing.
SILENT_SECONDS = FRESH_SECONDS + LOOK_EVERY_SECONDS + PING_TIMEOUT + 1.0

SHUTTING_DOWN = "this gateway node is shutting down: it still answers, but take it out of rotation"


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    reason: str  # why not ready ("" when ready)

    @property
    def status(self) -> int:
        return 200 if self.ready else 503


READY = Verdict(True, "")


class ShutdownSignal(Protocol):
    """The node's shutdown flag (``gateway.node.shutdown.ShutdownFlag``): raised while it shuts down."""

    def is_raised(self) -> bool: ...


class Readiness:
    def __init__(self, store: Store, shutdown: ShutdownSignal | None = None) -> None:
        self.store = store
        self.contact = store.contact
        # Raised by the node's main process on SIGTERM; None: never.
        self.shutdown = shutdown
        self._ping: asyncio.Task[None] | None = None

    def verdict(self) -> Verdict:
        if self.shutdown is not None and self.shutdown.is_raised():
            # The node's grace: still serving, but load balancers are to stop sending it new work
            # before it stops accepting connections.
            return Verdict(False, SHUTTING_DOWN)
        contact = self.contact
        if contact.failing():
            return Verdict(False, f"the store cannot be read: {contact.error}")
        silent = contact.silent_for()
        if silent is None:
            return Verdict(False, "the store has not answered yet")
        if silent > SILENT_SECONDS:
            return Verdict(False, f"the store has not answered for {silent:.0f} s")
        return READY

    async def look(self) -> None:
        """Ping the store unless it answered within FRESH_SECONDS, and wait at most PING_TIMEOUT for
        the answer. One ping at a time: a ping the store left unanswered is waited for again at the
        next look, not joined by another."""
        if self._ping is None or self._ping.done():
            if self._fresh():
                return
            self._ping = asyncio.create_task(self._ping_once())
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await asyncio.shield(self._ping)
        except TimeoutError:
            if not self._fresh():
                self.contact.failed(f"no answer within {PING_TIMEOUT:g} s")

    def _fresh(self) -> bool:
        silent = self.contact.silent_for()
        return silent is not None and silent < FRESH_SECONDS

    async def _ping_once(self) -> None:
        try:
            await self.store.ping()
        except Exception as error:
            self.contact.failed(str(error) or type(error).__name__)
        else:
            self.contact.answered()

    async def watch_forever(self) -> None:
        was_ready = True
        try:
            while True:
                await asyncio.sleep(LOOK_EVERY_SECONDS)
                try:
                    await self.look()
                except Exception as error:  # a bug: logged, and the silence shows in the verdict
                    log.error("cannot look at the store: %s", error)
                verdict = self.verdict()
                if verdict.ready != was_ready and verdict.reason != SHUTTING_DOWN:
                    if verdict.ready:
                        log.warning("ready again: the store answers")
                    else:
                        log.warning("not ready: %s", verdict.reason)
                was_ready = verdict.ready
        finally:
            if self._ping is not None:
                self._ping.cancel()

    async def respond(self, scope: Scope, send: Send) -> None:
        """The verdict as readyz's answer, straight to the ASGI server (GET or HEAD)."""
        verdict = self.verdict()
        if verdict.ready:
            body, content_type = b"ok", b"text/plain"
        else:
            body, content_type = orjson.dumps({"error": verdict.reason}), b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), WORKER]
        await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
