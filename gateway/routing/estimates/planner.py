"""Asking a Trino coordinator for a statement's plan: ``EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON)``
through the client protocol (``POST /v1/statement``, then each ``nextUri`` until there is none), and the
one row's one column, the plan's JSON text.

Every way it can go wrong ends in ``PlannerError`` with its cause (``gateway.routing.estimates.estimate``):
the planner unreachable, too slow, answering an HTTP error or something that is not the protocol, or
failing the EXPLAIN (a user error, such as a table that does not exist: ``refused``). The gateway's own
call (``Upstream.fetch``): never counted against the proxy's limits, never a client's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.routing.estimates.estimate import BAD_ANSWER, PLANNER_ERROR, PLANNER_TIMEOUT, REFUSED, UNREACHABLE
from gateway.routing.estimates.request import EstimateRequest
from gateway.store.backend import Backend
from gateway.upstream import Answer, BadResponse, NotSent, Upstream, UpstreamError, UpstreamTimeout, describe

log = logging.getLogger("gateway.routing.estimates")

EXPLAIN = "EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON) "
# The EXPLAINs' X-Trino-Source: a cluster's query list tells them from the users' queries.
SOURCE = "trino-gateway-estimate"
# Pages a plan may take before the answer counts as not the protocol (one page, in practice).
MAX_PAGES = 1_000


class PlannerError(Exception):
    """No plan: ``cause`` is one of the estimate causes, the message says what happened."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class Planner:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._cancels: set[asyncio.Task[None]] = set()

    async def explain(self, backend: Backend, request: EstimateRequest, timeout: float) -> str:
        """The plan of ``request``'s statement on ``backend``, as JSON text, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        # Who asks and in which session: the query's own headers. Polls carry them too (a coordinator
        # that authenticates asks on every request).
        polls = [*request.headers, ("x-trino-source", SOURCE)]
        if not any(name == "x-trino-user" for name, _ in request.headers):
            polls.append(("x-trino-user", request.user or "trino-gateway"))
        submission = [*polls, ("content-type", "text/plain; charset=utf-8")]
        body = (EXPLAIN + request.sql).encode()
        answer = await self._call(backend, "POST", "/v1/statement", submission, deadline, body)
        rows: list[Any] = []
        for _ in range(MAX_PAGES):
            page = _page(backend, answer)
            error = page.get("error")
            if error is not None:
                raise _failed(backend, error)
            data = page.get("data")
            if isinstance(data, list):
                rows.extend(data)
            next_uri = page.get("nextUri")
            if not next_uri:
                break
            if not isinstance(next_uri, str):
                raise PlannerError(BAD_ANSWER, f"backend {backend.name} answered a nextUri that is not a URI")
            try:
                answer = await self._call(backend, "GET", _target(next_uri), polls, deadline)
            except PlannerError as failure:
                if failure.cause == PLANNER_TIMEOUT:
                    self._cancel(backend, next_uri, polls)  # the EXPLAIN runs on: stop it
                raise
        else:
            raise PlannerError(BAD_ANSWER, f"backend {backend.name} answered more than {MAX_PAGES} pages for a plan")
        if len(rows) != 1 or not isinstance(rows[0], list) or len(rows[0]) != 1 or not isinstance(rows[0][0], str):
            raise PlannerError(BAD_ANSWER, f"backend {backend.name} answered {len(rows)} rows, not one plan")
        return rows[0][0]

    async def _call(
        self,
        backend: Backend,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        deadline: float,
        body: bytes | None = None,
    ) -> Answer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PlannerError(PLANNER_TIMEOUT, f"backend {backend.name} did not plan the statement in time")
        try:
            return await self.upstream.fetch(
                backend.proxy_to + target, method, backend=backend, headers=headers, content=body, timeout=left
            )
        except NotSent as error:
            raise PlannerError(UNREACHABLE, f"backend {backend.name}: {describe(error)}") from None
        except UpstreamTimeout:
            raise PlannerError(PLANNER_TIMEOUT, f"backend {backend.name} did not plan the statement in time") from None
        except BadResponse as error:
            raise PlannerError(BAD_ANSWER, f"backend {backend.name}: {describe(error)}") from None
        except UpstreamError as error:
            raise PlannerError(PLANNER_ERROR, f"backend {backend.name}: {describe(error)}") from None

    def _cancel(self, backend: Backend, next_uri: str, headers: list[tuple[str, str]]) -> None:
        async def cancel() -> None:
            with contextlib.suppress(UpstreamError):
                await self.upstream.fetch(
                    backend.proxy_to + _target(next_uri), "DELETE", backend=backend, headers=headers, timeout=5
                )

        task = asyncio.get_running_loop().create_task(cancel())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)


def _target(uri: str) -> str:
    """A nextUri's path and query: sent to the backend's own address, whatever host the URI names (a
    coordinator behind a proxy may name another)."""
    parts = urlsplit(uri)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _page(backend: Backend, answer: Answer) -> dict[str, Any]:
    if answer.status != 200:
        raise PlannerError(PLANNER_ERROR, f"backend {backend.name} answered HTTP {answer.status}")
    try:
        page = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise PlannerError(BAD_ANSWER, f"backend {backend.name} answered something that is not JSON") from None
    if not isinstance(page, dict):
        raise PlannerError(BAD_ANSWER, f"backend {backend.name} answered JSON that is not a query result")
    return page


def _failed(backend: Backend, error: Any) -> PlannerError:
    if not isinstance(error, dict):
        return PlannerError(BAD_ANSWER, f"backend {backend.name} answered an error that is not Trino's")
    name, message = error.get("errorName") or "?", str(error.get("message") or "")[:300]
    # A user error (no such table, no access, bad syntax) is the statement's: the query will meet it too.
    cause = REFUSED if error.get("errorType") == "USER_ERROR" else PLANNER_ERROR
    return PlannerError(cause, f"backend {backend.name} failed the EXPLAIN: {name}: {message}")
