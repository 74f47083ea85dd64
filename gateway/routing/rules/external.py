"""An external routing service picks the group (trino-gateway's ``rulesType: EXTERNAL``).

The gateway POSTs the request's headers (as HTTP headers and as a map in the JSON body, minus the
excluded ones), the user and the query properties; the service answers
``{"routingGroup": ..., "errors": [...], "externalHeaders": {...}}``. A service that fails, times
out or answers something else is logged and the query is routed by its header; it is never failed
for that.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.routing.rules.query_properties import TrinoQueryProperties
from gateway.routing.rules.request import RuleRequest
from gateway.store.backend import BackendTls
from gateway.upstream import Upstream, UpstreamError, UpstreamTimeout, describe

log = logging.getLogger("gateway.routing.rules")

# Never sent on: they describe the gateway's own request, not the client's.
_NOT_SENT = frozenset({"content-length", "host", "connection", "transfer-encoding", "expect", "keep-alive"})


class ExternalRoutingError(Exception):
    """The routing service could not be asked or gave an answer the gateway cannot use."""


@dataclass(frozen=True)
class ExternalAnswer:
    routing_group: str | None
    errors: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]


def request_document(
    request: RuleRequest, user: str | None, properties: TrinoQueryProperties, headers: dict[str, str]
) -> dict[str, Any]:
    """The JSON body: trino-gateway's fields, plus the headers as a map."""
    return {
        "headers": headers,
        "trinoRequestUser": {"user": user},
        "trinoQueryProperties": properties.as_json(),
        "contentType": request.getContentType() or "application/json",
        "remoteUser": user,
        "method": request.method,
        "requestURI": request.path,
        "queryString": request.query_string or None,
        "session": None,
        "remoteAddr": request.remote_addr,
        "remoteHost": request.remote_addr,
        "parameters": {},
    }


# RFC 9110 5.1 (field names are tokens) and 5.5 (values: visible Latin-1, spaces and tabs).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _answer(status: int, body: bytes) -> ExternalAnswer:
    if status != 200:
        raise ExternalRoutingError(f"answered HTTP {status}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ExternalRoutingError("answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise ExternalRoutingError("answered JSON that is not an object")
    group = document.get("routingGroup")
    errors = document.get("errors") or []
    headers = document.get("externalHeaders") or {}
    if group is not None and not isinstance(group, str):
        raise ExternalRoutingError("routingGroup is not a string")
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise ExternalRoutingError("errors is not a list of strings")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ExternalRoutingError("externalHeaders is not an object of strings")
    for name, value in headers.items():
        # They go into the backend request as written: a line break would inject headers.
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise ExternalRoutingError(f"externalHeaders has an invalid HTTP header: {name!r}")
    return ExternalAnswer(group or None, tuple(errors), tuple(headers.items()))


class ExternalRoutingService:
    def __init__(
        self, upstream: Upstream, url: str, exclude_headers: list[str], timeout: float, tls: BackendTls | None = None
    ) -> None:
        self.upstream = upstream
        self.url = url
        self.tls = tls
        self.exclude = frozenset(h.lower() for h in exclude_headers) | _NOT_SENT
        self.timeout = timeout

    async def ask(self, request: RuleRequest, user: str | None, properties: TrinoQueryProperties) -> ExternalAnswer:
        headers = [(name, value) for name, value in request.headers if name.lower() not in self.exclude]
        # The analysis parses SQL: off the event loop, so a long statement does not stall other requests.
        document = await asyncio.to_thread(request_document, request, user, properties, dict(headers))
        try:
            # One deadline for the whole call (httpx's timeouts are per phase).
            async with asyncio.timeout(self.timeout):
                answer = await self.upstream.fetch(
                    self.url,
                    "POST",
                    tls=self.tls,
                    content=orjson.dumps(document),
                    headers=[*headers, ("Content-Type", "application/json")],
                    timeout=self.timeout,
                )
        except (TimeoutError, UpstreamTimeout):
            raise ExternalRoutingError(f"did not answer within {self.timeout} s") from None
        except UpstreamError as error:
            raise ExternalRoutingError(f"cannot be reached: {describe(error)}") from None
        return _answer(answer.status, answer.body)
