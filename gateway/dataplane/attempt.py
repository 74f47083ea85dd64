"""One attempt: a request of a query sent to one backend, once, and what came of it as an ``Outcome``.

An attempt decides nothing about the query: whoever owns its life (``sending``, ``held_requests``)
acts on the outcome (the next backend, failover, waiting again, the client's answer). What an attempt
does itself is what every attempt owes: the request's observation (metrics, spans) and the backend's
health hear how it went.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from gateway.backends.health import HealthChecker
from gateway.dataplane import headers as hdr
from gateway.dataplane.answers import NOT_A_DOCUMENT, cluster_fault, is_document
from gateway.dataplane.exchange import Exchange
from gateway.queries.submission import Submission
from gateway.store.backend import Backend
from gateway.upstream import Answer, NotSent, Upstream, UpstreamError, UpstreamTimeout, describe

# Answers to a submission that mean no query was created: it may go to the next backend.
NOT_TAKEN_STATUSES = frozenset({502, 503, 504})


class Kind(enum.Enum):
    ANSWERED = "answered"
    """A Trino document (or a status the client is to see as it is, such as 401)."""
    NOT_TAKEN = "not taken"
    """Nothing reached the backend, or it said it took nothing (502, 503, 504): another may take it."""
    FAILED = "failed"
    """It may have reached the backend, which failed: a timeout, a reset, a 5xx, junk, the cluster's
    own fault. Only a read-only query may be sent elsewhere."""
    PASS_ON = "pass on"
    """An answer to a poll the client is to see as it is (busy: the client retries; a refusal)."""


@dataclass(slots=True)
class Outcome:
    kind: Kind
    answer: Answer | None = None
    why: str = ""
    """In a few words: "connection refused", "HTTP 500", a Trino error name."""
    message: str = ""
    """What the client reads if the query fails of it."""


def call_failed(
    x: Exchange, health: HealthChecker, backend: Backend, error: UpstreamError, refused: bool = False
) -> None:
    """A call to ``backend`` ended without an answer: the request's observation and the backend's
    health both hear of it."""
    x.observed.upstream_failed(error, isinstance(error, UpstreamTimeout), refused=refused)
    health.request_failed(backend.name, describe(error))


def failure_message(name: str, query_id: str | None, error: BaseException) -> str:
    if isinstance(error, UpstreamTimeout):
        return f"trino-gateway: backend {name} did not answer in time for query {query_id or '?'}: {describe(error)}"
    return f"trino-gateway: backend {name} running query {query_id or '?'} is unreachable: {describe(error)}"


class Attempts:
    def __init__(self, upstream: Upstream, health: HealthChecker, forwarded: bool) -> None:
        self.upstream = upstream
        self.health = health
        self.forwarded = forwarded

    async def submit(self, x: Exchange, backend: Backend, submission: Submission, headers: hdr.RawHeaders) -> Outcome:
        """The statement sent to ``backend`` once."""
        name = backend.name
        began = time.perf_counter()
        sent = x.observed.upstream_begin(name, "POST", backend.proxy_to + "/v1/statement", headers)
        try:
            answer = await self.upstream.send(backend, "POST", "/v1/statement", sent, submission.body)
        except NotSent as error:
            call_failed(x, self.health, backend, error, refused=True)
            return Outcome(Kind.NOT_TAKEN, why=describe(error))
        except UpstreamError as error:
            call_failed(x, self.health, backend, error)
            why = describe(error)
            return Outcome(
                Kind.FAILED, why=why, message=f"trino-gateway: backend {name} failed while taking the query: {why}"
            )
        status, content = answer.status, answer.body
        x.observed.upstream_end(status)
        if status in NOT_TAKEN_STATUSES:
            self.health.request_failed(name, f"HTTP {status} to a new query")
            return Outcome(Kind.NOT_TAKEN, answer, f"HTTP {status}")
        if status >= 500 or (status == 200 and not is_document(content)):
            why = f"HTTP {status}" if status >= 500 else NOT_A_DOCUMENT
            self.health.request_failed(name, f"{why} to a new query")
            said = f"answered HTTP {status}" if status != 200 else NOT_A_DOCUMENT
            return Outcome(Kind.FAILED, answer, why, f"trino-gateway: backend {name} {said} to a new query")
        self.health.request_succeeded(name, time.perf_counter() - began)
        return Outcome(Kind.ANSWERED, answer)

    async def poll(self, x: Exchange, backend: Backend, method: str, target: str, query_id: str) -> Outcome:
        """A poll (or cancel) of a held query's page, sent to ``backend`` once."""
        name = backend.name
        headers = x.observed.upstream_begin(
            name, method, backend.proxy_to + target, hdr.to_backend(x.scope, x.base, True, self.forwarded)
        )
        try:
            answer = await self.upstream.send(backend, method, target, headers)
        except UpstreamError as error:
            call_failed(x, self.health, backend, error)
            return Outcome(Kind.FAILED, why=describe(error), message=failure_message(name, query_id, error))
        status, content = answer.status, answer.body
        x.observed.upstream_end(status)
        if method != "GET" or status == 503 or (400 <= status < 500 and status not in (404, 410)):
            # A cancel's answer; busy (the client retries this same URI, as Trino clients do); a
            # refusal of this request: the client gets it as it is.
            return Outcome(Kind.PASS_ON, answer)
        if status != 200 or not is_document(content):
            # A 404/410: the backend forgot the query (it restarted); else it is broken.
            why = f"HTTP {status}" if status != 200 else NOT_A_DOCUMENT
            self.health.request_failed(name, why)
            return Outcome(
                Kind.FAILED, answer, why, f"trino-gateway: backend {name} answered {why} for query {query_id}"
            )
        self.health.poll_answered(name)
        fault = cluster_fault(content)
        if fault is not None:
            return Outcome(
                Kind.FAILED, answer, fault, f"trino-gateway: backend {name} failed query {query_id}: {fault}"
            )
        return Outcome(Kind.ANSWERED, answer)
