"""The upstream facade: one bound on requests in flight, a bound per backend so that a backend that
hangs cannot hold the connections of the others, and one family of errors for both clients."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.backend import Backend
from gateway.upstream import BackendBusy, Disconnected, NotSent, Upstream, UpstreamError, UpstreamTimeout, describe
from tests.gateway.test_upstream_pool import ScriptedServer, answer_ok, ok, run


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
    await asyncio.sleep(3600)
    return False


def _upstream(total: int = 16, per_backend: int = 4, connect_timeout: float = 0.3) -> Upstream:
    return Upstream(connect_timeout, read_timeout=30.0, max_connections=total, max_connections_per_backend=per_backend)


def test_a_hanging_backend_holds_only_its_own_connections_and_others_are_served() -> None:
    async def scenario() -> None:
        async with ScriptedServer(hang) as stuck, ScriptedServer(answer_ok) as healthy:
            upstream = _upstream(total=8, per_backend=4)
            hung = Backend(name="stuck", proxy_to=stuck.url)
            fine = Backend(name="fine", proxy_to=healthy.url)
            held = [asyncio.create_task(upstream.send(hung, "GET", f"/{i}", [])) for i in range(4)]
            while stuck.open_now < 4:
                await asyncio.sleep(0.01)
            # Four of the eight connections hang; the healthy backend gets the other four, as often as it asks.
            answers = await asyncio.gather(*(upstream.send(fine, "GET", f"/{i}", []) for i in range(40)))
            assert [a.status for a in answers] == [200] * 40
            assert healthy.most_open <= 4 and upstream.limits.in_use("stuck") == 4
            # A fifth request for the hanging backend does not wait behind the four: it is not sent.
            with pytest.raises(BackendBusy) as raised:
                await upstream.send(hung, "GET", "/5", [])
            assert isinstance(raised.value, NotSent)
            assert "proxy.max_connections_per_backend" in describe(raised.value)
            assert stuck.connections == 4
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            assert upstream.limits.in_use("stuck") == 0
            await upstream.close()

    run(scenario())


def test_statements_and_streams_share_one_bound() -> None:
    async def scenario() -> None:
        async with ScriptedServer(hang) as stuck, ScriptedServer(answer_ok) as healthy:
            upstream = _upstream(total=2, per_backend=2)
            hung_a = Backend(name="a", proxy_to=stuck.url)
            hung_b = Backend(name="b", proxy_to=stuck.url)

            async def stream_forever() -> None:
                async with upstream.stream(hung_b, "GET", "/ui/", []) as answer:
                    async for _ in answer.body:
                        pass

            held = [asyncio.create_task(upstream.send(hung_a, "GET", "/1", [])), asyncio.create_task(stream_forever())]
            while stuck.open_now < 2:
                await asyncio.sleep(0.01)
            fine = Backend(name="fine", proxy_to=healthy.url)
            waiting = asyncio.create_task(upstream.send(fine, "GET", "/x", []))
            await asyncio.sleep(0.3)
            # Two in flight in all, whichever client carries them: the third waits for a free slot.
            assert not waiting.done() and healthy.connections == 0
            held[0].cancel()
            assert (await asyncio.wait_for(waiting, 5)).status == 200
            held[1].cancel()
            await asyncio.gather(*held, return_exceptions=True)
            await upstream.close()

    run(scenario())


def test_both_clients_fail_in_the_same_family() -> None:
    async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, number: int) -> bool:
        writer.close()
        return False

    async def scenario() -> None:
        async with ScriptedServer(closes) as server:
            upstream = _upstream()
            backend = Backend(name="closes", proxy_to=server.url)
            with pytest.raises(Disconnected):
                await upstream.send(backend, "POST", "/v1/statement", [], b"SELECT 1")
            with pytest.raises(UpstreamError):
                async with upstream.stream(backend, "GET", "/ui/", []):
                    pass
            refused = Backend(name="gone", proxy_to="http://127.0.0.1:1")
            for call in (
                upstream.send(refused, "GET", "/v1/info", []),
                upstream.fetch("http://127.0.0.1:1/v1/info", backend=refused),
            ):
                with pytest.raises(NotSent) as raised:
                    await call
                assert describe(raised.value) == "connection refused"
            await upstream.close()

    run(scenario())


def test_a_gateway_call_times_out_as_an_upstream_timeout() -> None:
    async def scenario() -> None:
        async with ScriptedServer(hang) as stuck:
            upstream = _upstream()
            with pytest.raises(UpstreamTimeout):
                await upstream.fetch(f"{stuck.url}/v1/info", timeout=0.2)
            await upstream.close()

    run(scenario())


def test_a_streamed_answer_passes_its_bytes_and_headers_untouched() -> None:
    body = b'{"ok":true}'

    async def gzip_named(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, n: int) -> bool:
        # Says gzip without being gzip: a pass-through must not try to decode it.
        writer.write(ok(body, b"content-encoding: gzip\r\nx-trino-set-session: a=1\r\nx-trino-set-session: b=2\r\n"))
        await writer.drain()
        return True

    async def scenario() -> None:
        async with ScriptedServer(gzip_named) as server:
            upstream = _upstream()
            backend = Backend(name="s", proxy_to=server.url)
            async with upstream.stream(backend, "GET", "/ui/api/stats", [(b"x-trino-user", b"u")]) as answer:
                chunks = [chunk async for chunk in answer.body]
            assert b"".join(chunks) == body
            assert [v for k, v in answer.headers if k.lower() == b"x-trino-set-session"] == [b"a=1", b"b=2"]
            request = server.requests[0].lower()
            # Only what the client sent (and Host): no client library's own headers.
            assert b"accept-encoding" not in request and b"user-agent" not in request
            await upstream.close()

    run(scenario())
