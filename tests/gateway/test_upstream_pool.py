"""The statement path's HTTP/1.1 client against a scripted server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.store.backend import Backend
from gateway.upstream import (
    BadResponse,
    ConnectTimeout,
    Disconnected,
    NotSent,
    Upstream,
    UpstreamTimeout,
    describe,
)
from gateway.upstream.pool import UpstreamPool
from trinosim.gateway_process import free_port

Reply = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, bytes, int], Awaitable[bool]
]  # -> keep the connection open


def ok(body: bytes = b'{"id":"q"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


class ScriptedServer:
    """Reads requests (head + Content-Length body) and lets ``reply`` answer each one."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.closed_by_client = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.port = free_port()

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.wait_for(self.server.wait_closed(), 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        number = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                number += 1
                if not await self.reply(reader, writer, request, number):
                    writer.close()
                    return
        except ConnectionError:
            return
        finally:
            self.open_now -= 1


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
    writer.write(ok())
    await writer.drain()
    return True


def pool(**settings: float) -> UpstreamPool:
    return UpstreamPool(
        connect_timeout=settings.get("connect_timeout", 2.0),
        read_timeout=settings.get("read_timeout", 2.0),
        idle_seconds=settings.get("idle_seconds", 15.0),
    )


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 20))


def test_requests_reuse_one_connection_and_carry_method_target_headers_and_body() -> None:
    async def scenario() -> None:
        async with ScriptedServer(answer_ok) as server:
            client = pool()
            first = await client.request(
                server.url, "POST", "/v1/statement", [(b"x-trino-user", b"alice")], b"SELECT 1"
            )
            second = await client.request(server.url, "GET", "/v1/statement/executing/q/x/1", [])
            third = await client.request(server.url, "DELETE", "/v1/statement/executing/q/x/1", [])
            client.close()
        assert (first.status, first.body, second.body, third.status) == (200, b'{"id":"q"}', b'{"id":"q"}', 200)
        assert (b"content-type", b"application/json") in first.headers
        assert server.connections == 1
        post, get, delete = server.requests
        assert post.startswith(b"POST /v1/statement HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in post
        assert b"\r\nx-trino-user: alice\r\n" in post
        assert post.endswith(b"content-length: 8\r\n\r\nSELECT 1")
        assert get.startswith(b"GET /v1/statement/executing/q/x/1 HTTP/1.1\r\n")
        assert b"content-length" not in get
        assert delete.startswith(b"DELETE ")

    run(scenario())


def test_a_backend_url_with_a_path_prefixes_every_target() -> None:
    async def scenario() -> None:
        async with ScriptedServer(answer_ok) as server:
            client = pool()
            await client.request(server.url + "/trino", "GET", "/v1/info", [])
            client.close()
        assert server.requests[0].startswith(b"GET /trino/v1/info HTTP/1.1\r\n")

    run(scenario())


def test_chunked_close_delimited_and_interim_answers_are_read_whole() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if number == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif number == 2:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after continue"))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            return False
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool()
            chunked = await client.request(server.url, "GET", "/a", [])
            interim = await client.request(server.url, "GET", "/b", [])
            delimited = await client.request(server.url, "GET", "/c", [])
            again = await client.request(server.url, "GET", "/d", [])
            client.close()
        assert chunked.body == b"hello world"
        assert (interim.status, interim.body) == (200, b"after continue")
        assert delimited.body == b"until the end"
        assert again.body == b"hello world"  # the closed connection was not reused: a new one's first answer
        assert server.connections == 2

    run(scenario())


def test_a_refused_connection_is_not_sent(refused_port: int) -> None:
    async def scenario() -> None:
        with pytest.raises(NotSent) as raised:
            await pool().request(f"http://127.0.0.1:{refused_port}", "POST", "/v1/statement", [], b"SELECT 1")
        assert isinstance(raised.value.os_error, ConnectionRefusedError)
        assert describe(raised.value) == "connection refused"

    run(scenario())


def test_a_connect_timeout_is_both_not_sent_and_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def never_connects(*_: object, **__: object) -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(loop, "create_connection", never_connects)
        with pytest.raises(NotSent) as raised:
            await pool(connect_timeout=0.1).request("http://127.0.0.1:1", "POST", "/v1/statement", [], b"SELECT 1")
        # A new query may go elsewhere, and the client reads (and metrics count) a timeout.
        assert isinstance(raised.value, NotSent) and isinstance(raised.value, UpstreamTimeout)
        assert isinstance(raised.value, ConnectTimeout)
        assert describe(raised.value) == "connect timed out after 0.1 s"

    run(scenario())


def test_a_silent_backend_times_out_and_its_connection_is_dropped() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if request.startswith(b"GET /slow"):
            await asyncio.sleep(3)  # longer than the read timeout
            return False
        writer.write(ok())
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool(read_timeout=0.3)
            with pytest.raises(UpstreamTimeout) as raised:
                await client.request(server.url, "GET", "/slow", [])
            assert describe(raised.value) == "timed out"
            answer = await client.request(server.url, "GET", "/next", [])
            client.close()
        assert answer.status == 200
        assert server.connections == 2

    run(scenario())


def test_a_slow_answer_that_keeps_coming_is_not_cut_off() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
        for byte in b"abcdef":
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool(read_timeout=0.3)  # the whole answer takes 0.6 s, no gap 0.3 s long
            answer = await client.request(server.url, "GET", "/trickle", [])
            client.close()
        assert answer.body == b"abcdef"

    run(scenario())


def test_a_backend_gone_mid_request_is_retried_once_and_then_reads_connection_refused() -> None:
    async def scenario() -> None:
        gone = asyncio.Event()

        async def reply(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int
        ) -> bool:
            gone.set()
            return False  # the request arrived; the process died before answering

        server = ScriptedServer(reply)
        async with server:
            client = pool()
            polling = asyncio.create_task(client.request(server.url, "GET", "/v1/statement/executing/q/y/1", []))
            await asyncio.wait_for(gone.wait(), 5)
            server.server.close()  # and nothing listens on its port any more
        with pytest.raises(NotSent) as raised:
            await polling
        assert describe(raised.value) == "connection refused"
        assert server.connections == 1

    run(scenario())


def test_a_pooled_connection_closed_by_the_backend_is_retried_only_for_idempotent_methods() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if number == 1:
            writer.write(ok())
            await writer.drain()
            return True
        return False  # the second request on a connection: closed unanswered (an idle timeout's race)

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool()
            await client.request(server.url, "GET", "/1", [])
            retried = await client.request(server.url, "GET", "/2", [])
            assert retried.status == 200
            assert server.connections == 2
            with pytest.raises(Disconnected, match="without answering"):
                # A POST may have started a query: it is not sent twice.
                await client.request(server.url, "POST", "/v1/statement", [], b"SELECT 1")
            client.close()
        assert [r.split(b" ", 2)[:2] for r in server.requests] == [
            [b"GET", b"/1"],
            [b"GET", b"/2"],
            [b"GET", b"/2"],
            [b"POST", b"/v1/statement"],
        ]

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"garbage that is not HTTP\r\n\r\n", BadResponse, "not an HTTP answer"),
        (b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"cut', Disconnected, "middle of its answer"),
    ],
)
def test_junk_and_cut_off_answers_fail_clearly(answer: bytes, error: type[Exception], message: str) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.write(answer)
        await writer.drain()
        return False

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool()
            with pytest.raises(error, match=message):
                await client.request(server.url, "GET", "/junk", [])
            client.close()

    run(scenario())


def test_bytes_after_an_answer_do_not_change_it_and_end_the_connection() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if request.startswith(b"GET /1 "):
            # One request, two answers in one write: the second must not replace the first.
            writer.write(ok(b'{"first":1}') + ok(b'{"second":2}'))
        else:
            writer.write(ok())
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            client = pool()
            first = await client.request(server.url, "GET", "/1", [])
            second = await client.request(server.url, "GET", "/2", [])
            client.close()
        assert first.body == b'{"first":1}'
        assert second.body == b'{"id":"q"}'
        assert server.connections == 2  # the connection that spoke out of turn was not reused

    run(scenario())


def test_a_cancelled_request_closes_its_connection() -> None:
    eof: asyncio.Future[bool]

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        if request.startswith(b"GET /hang"):
            # Never answered: what the client does with the connection shows as EOF here.
            eof.set_result(await asyncio.wait_for(reader.read(1), 5) == b"")
            return False
        writer.write(ok())
        await writer.drain()
        return True

    async def scenario() -> None:
        nonlocal eof
        eof = asyncio.get_running_loop().create_future()
        async with ScriptedServer(reply) as server:
            client = pool()
            task = asyncio.create_task(client.request(server.url, "GET", "/hang", []))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Closed at once: the answer could still arrive on it, so it must not be reused.
            assert await asyncio.wait_for(eof, 2) is True
            answer = await client.request(server.url, "GET", "/next", [])
            client.close()
        assert answer.status == 200
        assert server.connections == 2

    run(scenario())


def test_connections_are_bounded_and_stale_idle_ones_are_not_reused() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        await asyncio.sleep(0.05)
        writer.write(ok())
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(reply) as server:
            # The bound is the facade's (proxy.max_connections): the pool reuses what it is allowed.
            bounded = Upstream(2.0, 2.0, max_connections=2, max_connections_per_backend=2)
            backend = Backend(name="scripted", proxy_to=server.url)
            answers = await asyncio.gather(*(bounded.send(backend, "GET", f"/{i}", []) for i in range(10)))
            await bounded.close()
            assert [a.status for a in answers] == [200] * 10
            assert (server.most_open, server.connections) == (2, 2)

            never_idle = pool(idle_seconds=0.0)
            await never_idle.request(server.url, "GET", "/a", [])
            await asyncio.sleep(0.01)
            await never_idle.request(server.url, "GET", "/b", [])
            never_idle.close()
        assert server.connections == 4

    run(scenario())


def test_head_is_refused_because_its_answer_has_no_body_to_read() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="HEAD"):
            await pool().request("http://127.0.0.1:1", "HEAD", "/v1/info", [])

    run(scenario())
