"""A bug in the proxy reaches the client as a Trino error it can read, and is counted."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.config import parse_config
from gateway.node.app import GatewayApp
from gateway.node.services import Services
from gateway.queries.book import Query
from gateway.upstream import Answer
from observability import metrics

QUERY_ID = "20261123_000000_00001_abcde"
POLL = f"/v1/statement/executing/{QUERY_ID}/y1/1"


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"gateway.example:8080"), (b"x-trino-user", b"alice")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def _call(app: GatewayApp, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path), receive, send)
    return sent


def _run_with_app(scenario: Any) -> None:
    async def main() -> None:
        config = parse_config(
            {
                "backends": [{"name": "b1", "proxy_to": "http://127.0.0.1:9"}],
                "store": {"url": "memory://"},
                "health": {"monitor": "NOOP"},
            },
            "test",
        )
        app = GatewayApp(config)
        await app.start()
        services = app.services
        assert services is not None
        backend = await services.registry.get("b1")
        assert backend is not None
        services.book.accepted(Query(QUERY_ID, backend, "adhoc"), "SELECT 1", None, None)
        try:
            await scenario(app, services)
        finally:
            await app.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_bug_before_the_answer_starts_becomes_a_readable_failed_query() -> None:
    async def scenario(app: GatewayApp, services: Services) -> None:
        def broken(query_id: str) -> None:
            raise RuntimeError("a bug in the query book")

        services.book.get = broken  # type: ignore[method-assign]
        before = _requests(services, "500")
        start, body = await _call(app, POLL)
        assert start["status"] == 500
        document = orjson.loads(body["body"])
        assert document["stats"]["state"] == "FAILED"
        assert "trino-gateway internal error: RuntimeError: a bug in the query book" in document["error"]["message"]
        assert _requests(services, "500") == before + 1

    _run_with_app(scenario)


def test_a_bug_after_the_answer_started_is_raised_to_the_server() -> None:
    async def scenario(app: GatewayApp, services: Services) -> None:
        async def answered(*_: Any) -> Answer:
            return Answer(200, [(b"content-type", b"application/json")], b'{"id":"%s"}' % QUERY_ID.encode())

        services.upstream.pool.request = answered  # type: ignore[method-assign]
        sends = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal sends
            sends += 1
            if message["type"] == "http.response.body":
                raise RuntimeError("the client's connection broke mid-answer")

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        with pytest.raises(RuntimeError, match="mid-answer"):
            await app(_scope(POLL), receive, send)
        assert sends == 2  # no second response start after the first one went out

    _run_with_app(scenario)


def _requests(services: Services, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value("trino_gateway_requests_total", {"kind": "poll", "status": status})
    return value or 0.0
