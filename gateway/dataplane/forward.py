"""Forwarding: every request of a query the gateway does not hold goes to the query's backend as it
came, and the answer back to the client. Statement answers (polls, cancels) are read whole, because
their URIs are rewritten (a page is at most a few MB); everything else (UI pages, spooled segments,
HEAD) is streamed through untouched."""

from __future__ import annotations

import logging

from gateway import errors
from gateway.backends.health import HealthChecker
from gateway.dataplane import headers as hdr
from gateway.dataplane import oauth2
from gateway.dataplane.answers import NOT_A_DOCUMENT, continues, is_document, query_string
from gateway.dataplane.attempt import call_failed, failure_message
from gateway.dataplane.exchange import WORKER, Exchange
from gateway.dataplane.rewrite import rewrite_uris
from gateway.queries.book import FAILED, Query, QueryBook
from gateway.store.backend import Backend
from gateway.upstream import Upstream, UpstreamError, UpstreamTimeout, describe

log = logging.getLogger("gateway.dataplane")

_PARTIAL_CANCEL = "/partialCancel/"


class ResponseAborted(Exception):
    """The backend failed in the middle of a streamed answer: the client's connection is dropped so
    that it sees a cut-off answer as one (the failure is logged where it happened)."""


async def fail_query(x: Exchange, book: QueryBook, query: Query | None, message: str, query_id: str | None) -> str:
    """A statement request whose backend is gone, hung or talking nonsense: the query is FAILED, said
    the way every Trino client reads it (HTTP 200 and the error in the document). A 502/504 made
    clients retry in vain and then report only the status: the Python client raised "error 502: bad
    gateway"; garbage passed on made it raise a JSON decoding error. Returns the error's name."""
    document = errors.failed_query(x.base, message, query_id=query_id)
    error_name: str = document["error"]["errorName"]
    if query is not None:
        book.finished(query, FAILED, error_name)
    await x.respond_json(200, document)
    return error_name


class Forwarder:
    def __init__(self, upstream: Upstream, health: HealthChecker, book: QueryBook, forwarded: bool) -> None:
        self.upstream = upstream
        self.health = health
        self.book = book
        self.forwarded = forwarded

    async def statement(self, x: Exchange, backend: Backend, body: bytes, query: Query) -> None:
        """A poll or cancel of ``query``: the answer is read whole and its URIs rewritten."""
        method = x.method
        target = x.scope["path"] + query_string(x.scope)
        name = backend.name
        headers = x.observed.upstream_begin(
            name, method, backend.proxy_to + target, hdr.to_backend(x.scope, x.base, True, self.forwarded)
        )
        try:
            answer = await self.upstream.send(backend, method, target, headers, body)
        except UpstreamError as error:
            call_failed(x, self.health, backend, error)
            await fail_query(x, self.book, query, failure_message(name, query.id, error), query.id)
            return
        status, content = answer.status, answer.body
        x.observed.upstream_end(status)
        if status >= 500:
            self.health.request_failed(name, f"HTTP {status}")
        elif status == 200 and method == "GET":
            if not is_document(content):
                self.health.request_failed(name, NOT_A_DOCUMENT)
                message = f"trino-gateway: backend {name} {NOT_A_DOCUMENT} for query {query.id}"
                await fail_query(x, self.book, query, message, query.id)
                return
            self.health.poll_answered(name)
            await self.book.page_seen(query, answer.headers, content, not continues(content), x.scope["path"])
        elif method == "DELETE" and status == 204 and _PARTIAL_CANCEL not in target:
            # (A partial cancel stops one stage: the query goes on.)
            self.book.finished(query, FAILED, "USER_CANCELED")
        await x.respond(status, hdr.to_client(answer.headers), rewrite_uris(content, x.base, backend.proxy_to, name))

    async def stream(
        self, x: Exchange, backend: Backend, body: bytes, query: Query | None, extra: hdr.RawHeaders | None = None
    ) -> None:
        """Anything else (UI, spooled segments, HEAD): passed through as it arrives, untouched
        (``extra``: response headers the gateway adds)."""
        method = x.method
        target = x.scope["path"] + query_string(x.scope)
        headers = x.observed.upstream_begin(
            backend.name, method, backend.proxy_to + target, hdr.to_backend(x.scope, x.base, False, self.forwarded)
        )
        query_id = None if query is None else query.id
        try:
            async with self.upstream.stream(backend, method, target, headers, body) as answer:
                x.observed.upstream_end(answer.status)
                response_headers = hdr.to_client(answer.headers, keep_length=True)
                if answer.status == 401:
                    response_headers = oauth2.challenge_on_gateway(response_headers, x.base, backend.name)
                if extra:
                    response_headers.extend(extra)
                response_headers.append(WORKER)
                await x.send({"type": "http.response.start", "status": answer.status, "headers": response_headers})
                try:
                    async for chunk in answer.body:
                        await x.send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UpstreamError as error:
                    self.health.request_failed(backend.name, describe(error))
                    log.warning("backend %s failed in the middle of an answer to %s: %s", backend.name, target, error)
                    raise ResponseAborted(str(error)) from None
                await x.send({"type": "http.response.body", "body": b""})
        except UpstreamError as error:
            call_failed(x, self.health, backend, error)
            status = 504 if isinstance(error, UpstreamTimeout) else 502
            await x.respond_json(
                status, errors.failed_query(x.base, failure_message(backend.name, query_id, error), query_id=query_id)
            )
