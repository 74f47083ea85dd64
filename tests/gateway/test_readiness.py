"""Readiness (``GET /gateway/readyz``) is read, never awaited: it says 503 while the node shuts down
and while the store cannot be read, and it is answered whatever the store and the proxy are busy
with (gateway.control.readiness). Time here is a fake clock, or a state the test waits for: a store
whose ping hangs until the test lets it answer, a pool held by a burst waiting on admission's lock.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from gateway.auth.password_file import hash_password
from gateway.config import parse_config
from gateway.control import readiness
from gateway.control.readiness import FRESH_SECONDS, SHUTTING_DOWN, SILENT_SECONDS, Readiness
from gateway.node.app import GatewayApp
from gateway.node.shutdown import ShutdownFlag
from gateway.queries.admission.sql_state import group_lock_key
from gateway.store import MemoryStore, SqlStore, StoreError
from gateway.store.contact import StoreContact
from gateway.store.sql import POOL_OVERFLOW, POOL_SIZE
from tests.gateway.test_admission import backends
from tests.inprocess import InProcessGateway
from tests.postgres import PostgresServer
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import LoopThread


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class QuietStore(MemoryStore):
    """A store that stops answering on ``go_quiet()``: its ping waits until ``answer_again()``, and
    its other calls fail (as calls that time out would), so nothing tells the contact it answered."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.contact = StoreContact(clock)
        self.quiet = False
        self.pings = 0
        self.pings_waiting = 0
        self._answer = asyncio.Event()

    def go_quiet(self) -> None:
        self.quiet = True
        self._answer.clear()

    def answer_again(self) -> None:
        self.quiet = False
        self._answer.set()

    def _check(self) -> None:
        if self.quiet:
            raise StoreError("no answer")
        super()._check()

    async def ping(self) -> None:
        self.pings += 1
        if self.quiet:
            self.pings_waiting += 1
            try:
                await self._answer.wait()
            finally:
                self.pings_waiting -= 1
        await super().ping()


# -- the verdict ----------------------------------------------------------------------------------


def test_ready_while_the_store_answers_and_not_once_the_node_shuts_down(tmp_path) -> None:
    store = QuietStore(Clock())
    flag = ShutdownFlag(str(tmp_path / "shutting-down"))
    ready = Readiness(store, flag)
    assert ready.verdict().reason == "the store has not answered yet"
    store.contact.answered()
    assert ready.verdict().ready
    flag.raise_flag()
    assert ready.verdict() == readiness.Verdict(False, SHUTTING_DOWN)


def test_not_ready_from_the_stores_failure_until_it_answers_again() -> None:
    store = QuietStore(Clock())
    ready = Readiness(store)
    store.contact.answered()
    store.contact.failed("connection refused")
    verdict = ready.verdict()
    assert not verdict.ready and verdict.reason == "the store cannot be read: connection refused"
    store.contact.answered()  # any statement that returns, or the next ping
    assert ready.verdict().ready


def test_not_ready_once_the_store_has_been_silent_too_long() -> None:
    clock = Clock()
    store = QuietStore(clock)
    ready = Readiness(store)
    store.contact.answered()
    clock.advance(SILENT_SECONDS - 0.5)
    assert ready.verdict().ready
    clock.advance(1.0)
    verdict = ready.verdict()
    assert not verdict.ready and verdict.reason.startswith("the store has not answered for")


# -- the watch's look -----------------------------------------------------------------------------


def test_a_worker_that_heard_from_the_store_lately_does_not_ping_it() -> None:
    async def main() -> None:
        clock = Clock()
        store = QuietStore(clock)
        ready = Readiness(store)
        await store.list_backends()  # a call like any the worker makes: the store answered
        await ready.look()
        assert store.pings == 0
        clock.advance(FRESH_SECONDS)
        await ready.look()
        assert store.pings == 1 and ready.verdict().ready

    asyncio.run(main())


def test_a_ping_left_unanswered_fails_readiness_and_is_not_joined_by_another(monkeypatch) -> None:
    monkeypatch.setattr(readiness, "PING_TIMEOUT", 0.01)

    async def main() -> None:
        clock = Clock()
        store = QuietStore(clock)
        ready = Readiness(store)
        store.contact.answered()
        clock.advance(FRESH_SECONDS)
        store.go_quiet()
        await ready.look()
        verdict = ready.verdict()
        assert not verdict.ready and verdict.reason == "the store cannot be read: no answer within 0.01 s"
        await ready.look()
        assert (store.pings, store.pings_waiting) == (1, 1)
        store.answer_again()
        await ready.look()  # waits for the same ping, which now returns
        assert (store.pings, store.pings_waiting) == (1, 0)
        assert ready.verdict().ready

    asyncio.run(main())


# -- the ASGI entry -------------------------------------------------------------------------------


def _scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gateway.example:8080"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def _get(app: GatewayApp, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:  # the client stays connected until it has its answer
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # A bound against a hang only: an answer that waited for the store would never come.
    await asyncio.wait_for(app(_scope(path, headers), receive, send), 30)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def _app(store: MemoryStore, **sections: Any) -> GatewayApp:
    data = {"backends": [{"name": "b1", "proxy_to": "http://127.0.0.1:9"}], "health": {"monitor": "NOOP"}}
    config = parse_config({**data, "store": {"url": "memory://"}, **sections}, "test")
    return GatewayApp(config, store=store)


def test_a_look_cancelled_as_its_ping_returns_ends_cancelled() -> None:
    # A node stops by cancelling its watch and waiting for it. Cancelled in the moment between its
    # ping's answer and its own wake-up, Python 3.11's wait_for returned the answer and dropped the
    # cancel: the watch looked on, and the stop waited for ever (seen: a gateway that did not stop
    # within 30 s, its readiness watch asleep in its loop). The cancel is sent from the ping task's
    # last done callback, after the one that hands its answer on: exactly that moment.
    class CancelledAsItAnswers(QuietStore):
        async def ping(self) -> None:
            await super().ping()
            asyncio.current_task().add_done_callback(lambda _: looking.cancel())

    async def main() -> None:
        nonlocal looking
        store = CancelledAsItAnswers(Clock())
        looking = asyncio.create_task(Readiness(store).look())
        await asyncio.wait([looking], timeout=5)
        assert store.pings == 1
        assert looking.cancelled(), "the cancel was lost: the look went on"

    looking: asyncio.Task[None]
    asyncio.run(main())


def test_readyz_is_answered_while_the_stores_ping_hangs() -> None:
    async def main() -> None:
        clock = Clock()
        store = QuietStore(clock)
        app = _app(store)
        await app.start()
        try:
            assert app.services is not None
            watch = app.services.readiness
            assert await _get(app, "/gateway/readyz") == (200, b"ok")

            store.go_quiet()
            clock.advance(FRESH_SECONDS + 0.5)
            look = asyncio.create_task(watch.look())
            while store.pings_waiting == 0:
                await asyncio.sleep(0.01)
            # The ping hangs; readyz answers from what the worker knows: it heard from the store
            # 2.5 s ago, and nothing failed yet.
            assert await _get(app, "/gateway/readyz") == (200, b"ok")
            assert store.pings_waiting == 1
            # Silent too long: 503, while the ping still hangs.
            clock.advance(SILENT_SECONDS)
            status, body = await _get(app, "/gateway/readyz")
            assert status == 503 and orjson.loads(body)["error"].startswith("the store has not answered for")
            assert store.pings_waiting == 1

            store.answer_again()
            await look
            assert await _get(app, "/gateway/readyz") == (200, b"ok")
        finally:
            store.answer_again()
            await app.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_readyz_outside_the_public_paths_asks_for_credentials_and_gives_the_same_verdict(tmp_path) -> None:
    passwords = tmp_path / "password.db"
    passwords.write_text(f"alice:{hash_password('alice-pw', rounds=4)}\n")
    auth = {"password_file": str(passwords), "roles": {"ADMIN": ["alice"]}, "public_paths": ["/gateway/livez"]}
    alice = [(b"authorization", b"Basic " + base64.b64encode(b"alice:alice-pw"))]

    async def main() -> None:
        store = QuietStore(Clock())
        app = _app(store, auth=auth)
        await app.start()
        try:
            assert (await _get(app, "/gateway/readyz"))[0] == 401
            assert await _get(app, "/gateway/readyz", alice) == (200, b"ok")
            store.contact.failed("connection refused")
            status, body = await _get(app, "/gateway/readyz", alice)
            assert (status, orjson.loads(body)) == (503, {"error": "the store cannot be read: connection refused"})
        finally:
            await app.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


# -- PostgreSQL: a burst holds the pool ------------------------------------------------------------


def lock_waiters(postgres: PostgresServer) -> int:
    return int(postgres.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"))


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.mark.slow
def test_readyz_is_answered_while_a_burst_holds_every_pooled_connection(
    loop_thread: LoopThread, make_sim: Any, postgres: PostgresServer
) -> None:
    """As in chaos scenario 15's burst: every submission waits for its group's admission lock while
    holding one of the worker's pooled connections. Here the lock is held until the test lets go."""
    sim = make_sim(name="solo")
    with InProcessGateway(loop_thread, {"backends": backends(sim, max_running=1)}, postgres.url()) as gateway:
        store = gateway.services.store
        assert isinstance(store, SqlStore)
        pool, most = store.engine.pool, POOL_SIZE + POOL_OVERFLOW

        async def hold_the_lock() -> asyncpg.Connection:
            connection = await asyncpg.connect(postgres.url(driver="postgresql"))
            await connection.execute("SELECT pg_advisory_lock($1)", group_lock_key("adhoc"))
            return connection

        holder = loop_thread.submit(hold_the_lock()).result(30)
        answers: list[int] = []

        def submit(number: int) -> None:
            answer = httpx.post(
                f"{gateway.url}/v1/statement", content=f"SELECT {number}", headers={"X-Trino-User": "u"}, timeout=120
            )
            answers.append(answer.status_code)

        clients = [threading.Thread(target=submit, args=(n,), daemon=True) for n in range(most + 5)]
        try:
            for client in clients:
                client.start()

            # Every pooled connection held (the change listener's, and the others by submissions waiting
            # on the lock), and more submissions queued for one.
            def held() -> bool:
                return pool.checkedout() >= most and lock_waiters(postgres) >= most - 1

            wait_until(held, timeout=60, what="every pooled connection held by the burst")

            # The store's ping has a connection of its own: it does not wait for the pool.
            loop_thread.submit(store.ping()).result(30)
            answer = httpx.get(f"{gateway.url}/gateway/readyz", timeout=30)
            assert (answer.status_code, answer.text) == (200, "ok")
            # ... and all that while the burst still waited.
            assert pool.checkedout() >= most and answers == []
        finally:
            loop_thread.submit(holder.close()).result(30)
        for client in clients:
            client.join(120)
        assert answers == [200] * len(clients)
