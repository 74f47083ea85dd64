"""The routing rules through the admin API: ``GET /gateway/routing-rules`` (the rules in use and how
often each fired), ``PUT`` (a new rules file: validated as at start-up, written whole, in use at once)
and ``POST /gateway/routing-rules/test`` (what given rules decide for a request; nothing changes)."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from quart import Blueprint, Response, request

from gateway.control.api.access import action, address, changer, principal, reader
from gateway.control.api.models import (
    RoutingRules,
    RulesError,
    RulesFromFile,
    RulesFromService,
    RulesOff,
    RulesTest,
    RulesText,
    RulesTrial,
    json_response,
)
from gateway.control.api.openapi import JSON, Answer, answers
from gateway.errors import api_error
from gateway.routing.rules import VERIFIED_USER, FileRulesSelector, RuleSet, RulesLoadError, parse_rules
from observability import metrics

if TYPE_CHECKING:
    from gateway.control.services import Services

RULES_BODY_MAX_BYTES = 1_048_576
NO_RULES_FILE = "routing rules are off or come from a service: there is no rules file"
TOO_LARGE = f"the body is over {RULES_BODY_MAX_BYTES} bytes"


def invalid(message: str, line: int | None = None) -> Response:
    """400 for rules that do not load (and bodies that hold none): the message, and the line of the
    rules' text where it goes wrong when it can be told."""
    return json_response(RulesError(error=message, line=line), 400)


def request_scope(headers: dict[str, str], user: str | None, verified: bool) -> dict[str, Any]:
    """A new query's ASGI scope as the proxy would hand it to the rules: ``POST /v1/statement`` with
    these headers (``X-Trino-User`` from ``user`` when given). ``verified``: the gateway verifies the
    users of queries, so the rules see ``user`` as verified."""
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if user is not None:
        raw = [(name, value) for name, value in raw if name != b"x-trino-user"] + [(b"x-trino-user", user.encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/statement",
        "query_string": b"",
        "scheme": "http",
        "headers": raw,
    }
    if verified and user is not None:
        scope[VERIFIED_USER] = user
    return scope


def routing_rules_api(services: Services) -> Blueprint:
    api = Blueprint("routing_rules", __name__)

    def file_rules() -> FileRulesSelector | Response:
        if isinstance(services.selector, FileRulesSelector):
            return services.selector
        settings = services.config.routing_rules
        kind = "off (routing_rules.enabled: false)" if not settings.enabled else f"of type {settings.type}"
        return api_error(409, f"routing rules are {kind}: there is no rules file to change or test")

    def described(selector: FileRulesSelector) -> RulesFromFile:
        # Fired counts as /metrics shows them: summed over this node's workers.
        return RulesFromFile.of(selector.rules, metrics.rule_fired_counts())

    async def body(keys: tuple[str, ...]) -> dict[str, Any] | Response:
        if (request.content_length or 0) > RULES_BODY_MAX_BYTES:
            return api_error(413, f"the request body is over {RULES_BODY_MAX_BYTES} bytes")
        raw = await request.get_data()
        if len(raw) > RULES_BODY_MAX_BYTES:
            return api_error(413, f"the request body is over {RULES_BODY_MAX_BYTES} bytes")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return invalid(f"request body is not valid JSON: {error}")
        if not isinstance(data, dict) or set(data) - set(keys):
            return invalid(f"request body must be a JSON object with {', '.join(keys)}")
        return data

    @api.get("/gateway/routing-rules")
    @reader
    @answers({200: Answer("the rules", RoutingRules)})
    async def show() -> Response:
        """The routing rules in use, how often each fired, and why the last change did not load.

        This worker's copy of the rules, and the text they were read from."""
        settings = services.config.routing_rules
        if not settings.enabled:
            return json_response(RulesOff(enabled=False, type=None))
        if isinstance(services.selector, FileRulesSelector):
            return json_response(described(services.selector))
        assert settings.external is not None
        return json_response(RulesFromService(enabled=True, type="EXTERNAL", url=settings.external.url))

    @api.put("/gateway/routing-rules")
    @changer
    @answers(
        {
            200: Answer("the rules now in use", RulesFromFile),
            400: Answer("the rules do not load, or the body holds none", RulesError),
            409: NO_RULES_FILE,
            413: TOO_LARGE,
            500: "the rules file cannot be written (the message says why)",
        },
        body={JSON: RulesText},
    )
    async def update() -> Response:
        """Replace the rules file.

        The text is checked as at start-up; rules that do not load answer 400 with the line, and nothing
        is written. Otherwise the file is replaced whole, this worker uses the new rules at once and the
        others at their next check of the file; the change is audited with the text before and after."""
        selector = file_rules()
        if isinstance(selector, Response):
            return selector
        data = await body(tuple(RulesText.model_fields))
        if isinstance(data, Response):
            return data
        try:
            text = RulesText.model_validate(data).text
        except ValidationError:
            return invalid('request body must be {"text": "<the rules file, YAML>"}')
        rules = selector.rules
        try:
            before = await asyncio.to_thread(rules.replace, text)
        except RulesLoadError as error:
            return invalid(str(error), error.line)
        except OSError as error:
            return api_error(500, f"the rules file {rules.path} cannot be written: {error.strerror or error}")
        await services.audit.record(principal(), address(), action(), os.fspath(rules.path), before=before, after=text)
        if services.shared_rules is not None:
            services.shared_rules.changed_here()  # every other node takes the new rules up now
        return json_response(described(selector))

    @api.post("/gateway/routing-rules/test")
    @reader
    @answers(
        {
            200: Answer("what the rules decide", RulesTest),
            400: Answer("the rules do not load, or the body is not as described", RulesError),
            409: NO_RULES_FILE,
            413: TOO_LARGE,
        },
        body={JSON: RulesTrial},
    )
    async def test() -> Response:
        """What routing rules decide for a new query; nothing changes.

        Rules (`text`, default: those in use) run as for a new query with these headers, user
        (`X-Trino-User`, verified if the gateway verifies users) and SQL. Nothing is written or counted. A
        rule that reads `queryEstimate` gets the statement's estimate from the cache, else from the planner
        (waiting up to `routing.estimates.timeout`, not a query's budget: someone is reading the answer),
        and the answer shows it."""
        selector = file_rules()
        if isinstance(selector, Response):
            return selector
        data = await body(tuple(RulesTrial.model_fields))
        if isinstance(data, Response):
            return data
        try:
            trial = RulesTrial.model_validate(data)
        except ValidationError:
            return invalid("text, user and sql must be strings (or left out), headers an object of strings")
        rules: RuleSet | None = None
        if trial.text is not None:
            try:
                rules = await asyncio.to_thread(parse_rules, trial.text, "text")
            except RulesLoadError as error:
                return invalid(str(error), error.line)
        client_auth = services.proxy.client_auth
        verified = client_auth is not None and client_auth.verify
        scope = request_scope(trial.headers or {}, trial.user, verified)
        budget = services.config.routing.estimates.timeout
        selection, outcome = await selector.trial(scope, (trial.sql or "").encode(), rules, budget)
        return json_response(RulesTest.of(selection, outcome))

    return api
