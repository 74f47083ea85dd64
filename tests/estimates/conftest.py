"""Fixtures of the estimate tests: a scripted planner (a Trino coordinator that answers EXPLAIN as a
test says, counts what it is asked, and can be made to hang, fail or talk nonsense), and estimators
in front of planners, on the tests' event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.backends.health import HealthChecker
from gateway.config import EstimatesConfig, HealthConfig, RoutingConfig
from gateway.routing.decider import RouteDecider
from gateway.routing.estimates import EstimateRequest, Estimator
from gateway.store.backend import Backend
from gateway.upstream import Upstream
from trinosim.inprocess import LoopThread

# A plan as trinosim writes one (each node's own costs): 25 rows scanned and gathered.
SMALL_PLAN = {
    "0": {
        "id": "1",
        "name": "Output",
        "descriptor": {"columnNames": "[name]"},
        "outputs": [],
        "details": [],
        "estimates": [
            {"outputRowCount": 25.0, "outputSizeInBytes": 400.0, "cpuCost": 0.0, "memoryCost": 0.0, "networkCost": 0.0}
        ],
        "children": [
            {
                "id": "2",
                "name": "RemoteSource",
                "descriptor": {"sourceFragmentIds": "[1]"},
                "outputs": [],
                "details": [],
                "estimates": [],
                "children": [],
            }
        ],
    },
    "1": {
        "id": "0",
        "name": "TableScan",
        "descriptor": {"table": "tpch:tiny:nation"},
        "outputs": [],
        "details": [],
        "estimates": [
            {
                "outputRowCount": 25.0,
                "outputSizeInBytes": 400.0,
                "cpuCost": 400.0,
                "memoryCost": 0.0,
                "networkCost": 0.0,
            }
        ],
        "children": [],
    },
}


class ScriptedPlanner:
    """A coordinator that answers ``POST /v1/statement`` with one FINISHED page holding ``plan`` (or,
    by ``mode``: ``hang`` never answers, ``500`` an HTTP error, ``garbage`` cut-off bytes,
    ``user_error`` a FAILED query with a USER_ERROR, ``not_a_plan`` a row that is no plan, ``queued`` a
    QUEUED page first and the plan on its ``nextUri``, ``poll_hangs`` a QUEUED page whose ``nextUri``
    never answers). ``gate``: when set up, answers wait for it. ``cancels``: DELETEs of a ``nextUri``."""

    def __init__(self, loop: LoopThread, plan: Any = SMALL_PLAN) -> None:
        self.loop = loop
        self.plan = plan
        self.mode = "ok"
        self.gate: asyncio.Event | None = None
        self.posts: list[dict[str, Any]] = []
        self.cancels = 0
        self.runner: web.AppRunner | None = None
        self.url = ""
        self._stopping: asyncio.Event | None = None

    def start(self) -> ScriptedPlanner:
        async def start() -> None:
            self._stopping = asyncio.Event()
            app = web.Application()
            app.router.add_post("/v1/statement", self._post)
            app.router.add_get("/v1/statement/next/{n}", self._next)
            app.router.add_delete("/v1/statement/next/{n}", self._cancel)
            self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

        self.loop.run(start())
        return self

    def stop(self) -> None:
        if self.runner is not None:
            stopping = self._stopping
            if stopping is not None:
                self.loop.loop.call_soon_threadsafe(stopping.set)  # a hanging answer ends
            self.loop.run(self.runner.cleanup())
            self.runner = None

    def hold(self) -> None:
        """From now on answers wait until ``release``."""

        async def make() -> asyncio.Event:
            return asyncio.Event()

        self.gate = self.loop.run(make())

    def release(self) -> None:
        gate = self.gate
        if gate is not None:
            self.loop.loop.call_soon_threadsafe(gate.set)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        self.posts.append({"sql": await request.text(), "headers": dict(request.headers)})
        if self.gate is not None:
            await self.gate.wait()
        if self.mode == "hang":
            assert self._stopping is not None
            await self._stopping.wait()
            return web.Response(status=503)
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode == "garbage":
            return web.Response(status=200, body=b'{"id": "x", "data": [[', content_type="application/json")
        if self.mode == "user_error":
            error = {"message": "Table 'x' does not exist", "errorName": "TABLE_NOT_FOUND", "errorType": "USER_ERROR"}
            return web.json_response({"id": "q", "stats": {"state": "FAILED"}, "error": error})
        if self.mode in ("queued", "poll_hangs"):
            return web.json_response({"id": "q", "nextUri": f"{self.url}/v1/statement/next/1", "stats": {}})
        return self._finished()

    async def _next(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "poll_hangs":
            assert self._stopping is not None
            await self._stopping.wait()
            return web.Response(status=503)
        return self._finished()

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        self.cancels += 1
        return web.Response(status=204)

    def _finished(self) -> web.Response:
        row = "not a plan" if self.mode == "not_a_plan" else orjson.dumps(self.plan).decode()
        page = {"id": "q", "columns": [{"name": "Query Plan", "type": "varchar"}], "data": [[row]]}
        return web.json_response({**page, "stats": {"state": "FINISHED"}})

    def __enter__(self) -> ScriptedPlanner:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class Events:
    """The estimator's events, counted (``EstimateEvents``)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.outcomes: list[str] = []
        """Each EXPLAIN's outcome: ok, or why there was no plan."""
        self.fallbacks: dict[str, int] = {}

    def looked_up(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def explained(self, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)

    def fell_back(self, cause: str) -> None:
        self.fallbacks[cause] = self.fallbacks.get(cause, 0) + 1


class Registry:
    """The registry's one call the estimator makes."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    async def all(self) -> list[Backend]:
        return self.backends


def healthy(backends: list[Backend]) -> RouteDecider:
    health = HealthChecker(None, None, HealthConfig(monitor="NOOP"))  # type: ignore[arg-type]
    for backend in backends:
        health.of(backend.name).succeeded(None)
    return RouteDecider(RoutingConfig(), health, lambda name: 0)


def scope(user: str = "alice", **headers: str) -> dict[str, Any]:
    """A new query's ASGI scope with these headers (X-Trino-User: ``user``)."""
    raw = [(b"x-trino-user", user.encode())]
    raw += [(name.lower().replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "method": "POST", "path": "/v1/statement", "headers": raw}


class Estimators:
    """``make(url, **settings)``: an estimator asking the planner at ``url`` (group adhoc), with
    ``routing.estimates`` settings; ``run`` runs a coroutine on the tests' loop."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.upstreams: list[Upstream] = []

    def make(self, *urls: str, events: Events | None = None, **settings: Any) -> Estimator:
        backends = [Backend(name=f"planner-{n}", proxy_to=url, routing_group="adhoc") for n, url in enumerate(urls)]
        upstream = Upstream(1.0, 30.0, 64, 64)
        self.upstreams.append(upstream)
        config = EstimatesConfig.model_validate(settings)
        return Estimator(config, "adhoc", upstream, Registry(backends), healthy(backends), events)  # type: ignore[arg-type]

    def run(self, coroutine: Any, timeout: float = 60.0) -> Any:
        return self.loop.run(coroutine, timeout)

    def estimate(self, estimator: Estimator, sql: str, user: str = "alice", **headers: str) -> Any:
        return self.run(estimator.estimate(request(estimator, sql, user, **headers)))

    def close(self) -> None:
        for upstream in self.upstreams:
            self.loop.run(upstream.close())


def request(estimator: Estimator, sql: str, user: str = "alice", **headers: str) -> EstimateRequest:
    return estimator.request(scope(user, **headers), sql, user)


@pytest.fixture
def estimators(loop_thread: LoopThread) -> Iterator[Estimators]:
    made = Estimators(loop_thread)
    yield made
    made.close()


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[Callable[..., ScriptedPlanner]]:
    started: list[ScriptedPlanner] = []

    def start(plan: Any = SMALL_PLAN) -> ScriptedPlanner:
        planner = ScriptedPlanner(loop_thread, plan).start()
        started.append(planner)
        return planner

    yield start
    for planner in started:
        planner.release()
        planner.stop()
