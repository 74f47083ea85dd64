"""Which routing group a new query asks for: the header, the rules file, or an external service.

Every selector falls back to the ``X-Trino-Routing-Group`` header when it has no answer (no rule
set a group, a rule failed, the service failed), and the router falls back to the default group
when the group has no backend. Selection never fails a query, except when an external service
rejects it and ``propagate_errors`` is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.routing.estimates import EstimateUse, Estimator
from gateway.routing.estimates.estimate import NO_PLANNER, fallback
from gateway.routing.rules.external import ExternalRoutingError, ExternalRoutingService
from gateway.routing.rules.file_rules import Outcome, RuleSet, RulesFile
from gateway.routing.rules.query_estimate import EstimateNeeded, QueryEstimateVariable
from gateway.routing.rules.query_properties import TrinoQueryProperties, prepared_statements
from gateway.routing.rules.request import RuleRequest, TrinoRequestUser, UserSource, extract_user
from gateway.routing.rules.scope import header
from gateway.routing.rules.values import GLOBALS

log = logging.getLogger("gateway.routing.rules")

ROUTING_GROUP_HEADER = b"x-trino-routing-group"


@dataclass(frozen=True)
class Selection:
    group: str | None
    """The group asked for; None means the default group."""
    source: str
    """What chose it: ``header``, ``rule``, ``external``, ``default``, or ``cost`` (the cost router)."""
    rule: str | None = None
    """The rule that set the group (``external`` for the service)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers to add to the request sent to the backend."""
    rejected: tuple[str, ...] = ()
    """Errors of an external service that rejects the query (propagate_errors)."""
    max_running: int | None = None
    """How many queries the user may run at once, if a rule said (``result.put("maxRunning", 5)``)."""
    queue_weight: float | None = None
    """The user's share of starts while queries wait, if a rule said (``result.put("queueWeight", 2)``)."""
    failover: bool | None = None
    """False if a rule said the query must not be sent again elsewhere (``result.put("failover", false)``)."""
    estimate: EstimateUse | None = None
    """The query's estimate, when a rule read it (or the cost router or ``always`` asked for it)."""
    cache_ttl: float | None = None
    """How long its result is cached, if a rule said (``result.put("cacheTtl", "5m")``; 0: never)."""


def _by_header(scope: dict[str, Any]) -> Selection:
    group = (header(scope, ROUTING_GROUP_HEADER) or "").strip() or None
    return Selection(group, "header" if group else "default")


def _selection(outcome: Outcome, scope: dict[str, Any], estimate: EstimateUse | None = None) -> Selection:
    """The group the rules set, else the header's."""
    limits = {
        "max_running": outcome.max_running,
        "queue_weight": outcome.queue_weight,
        "failover": outcome.failover,
        "estimate": estimate,
        "cache_ttl": outcome.cache_ttl,
    }
    if outcome.routing_group is not None:
        return Selection(outcome.routing_group, "rule", outcome.decided_by, **limits)
    return replace(_by_header(scope), **limits)


class GroupSelector(Protocol):
    async def select(self, scope: dict[str, Any], body: bytes) -> Selection: ...


class HeaderSelector:
    """No rules engine: the client's ``X-Trino-Routing-Group`` header, else the default group."""

    async def select(self, scope: dict[str, Any], body: bytes) -> Selection:
        return _by_header(scope)


def query_properties(request: RuleRequest, body: bytes, max_body_size: int) -> TrinoQueryProperties:
    return TrinoQueryProperties(
        body.decode("utf-8", errors="replace"),
        request.header("x-trino-catalog"),
        request.header("x-trino-schema"),
        prepared_statements(request.getHeaders("x-trino-prepared-statement")),
        new_query=request.method == "POST" and request.path == "/v1/statement",
        max_body_size=max_body_size,
    )


class FileRulesSelector:
    """Rules from a file (trino-gateway's ``rulesType: FILE``)."""

    def __init__(
        self,
        rules: RulesFile,
        max_body_size: int,
        users: UserSource,
        on_fired: Callable[[list[str]], None] | None = None,
        estimator: Estimator | None = None,
    ) -> None:
        """``on_fired``: told the rules that fired for each new query (the metrics' counter). It is
        handed in rather than imported: the CLI imports this package before it points prometheus-client
        at the workers' shared directory, and importing prometheus-client earlier fixes it per process.
        ``estimator``: where ``queryEstimate`` comes from (None: no estimate is ever available)."""
        self.rules = rules
        self.max_body_size = max_body_size
        self.users = users
        self.on_fired = on_fired
        self.estimator = estimator

    def variables(
        self, scope: dict[str, Any], body: bytes, estimate: QueryEstimateVariable | None = None
    ) -> dict[str, Any]:
        """What a rule can read: ``request``, ``trinoRequestUser``, ``trinoQueryProperties``,
        ``queryEstimate``, ``state`` (shared by the rules of one evaluation) and ``result``."""
        request = RuleRequest.from_scope(scope)
        user = extract_user(request, self.users)
        if estimate is None:
            estimate = self._estimate(scope, body, user)
        return {
            **GLOBALS,
            "request": request,
            "state": {},
            "result": {},
            "trinoRequestUser": TrinoRequestUser(user),
            "trinoQueryProperties": query_properties(request, body, self.max_body_size),
            "queryEstimate": estimate,
        }

    def _estimate(self, scope: dict[str, Any], body: bytes, user: str | None) -> QueryEstimateVariable:
        estimator = self.estimator
        if estimator is None:
            return QueryEstimateVariable.resolved(fallback(NO_PLANNER))
        # Built only if a rule reads an estimate: a rule set that never does pays for this object alone.
        return QueryEstimateVariable(
            lambda: estimator.request(scope, body.decode("utf-8", errors="replace"), user), estimator.peek
        )

    def outcome(
        self,
        scope: dict[str, Any],
        body: bytes,
        rules: RuleSet | None = None,
        estimate: QueryEstimateVariable | None = None,
    ) -> Outcome:
        """What ``rules`` (default: those in use) decide; raises ``EstimateNeeded`` when a rule reads an
        estimate the cache does not have (``estimate``: one had already)."""
        variables = self.variables(scope, body, estimate)
        outcome = (self.rules.rules if rules is None else rules).evaluate(variables)
        outcome.estimate = variables["queryEstimate"].use
        return outcome

    def evaluate(self, scope: dict[str, Any], body: bytes) -> Selection:
        """The group for a new query, without asking the planner (an estimate not in the cache counts as
        none); the rules that fired are counted: this is a real query. (``select`` asks.)"""
        try:
            outcome = self.outcome(scope, body)
        except EstimateNeeded:
            outcome = self.outcome(scope, body, estimate=QueryEstimateVariable.resolved(fallback(NO_PLANNER)))
        return self._counted(outcome, scope)

    def _counted(self, outcome: Outcome, scope: dict[str, Any]) -> Selection:
        if outcome.fired and self.on_fired is not None:
            self.on_fired(outcome.fired)
        return _selection(outcome, scope, outcome.estimate)

    async def decide(
        self, scope: dict[str, Any], body: bytes, rules: RuleSet | None = None, budget: float | None = None
    ) -> Outcome:
        """What the rules decide, asking the planner (within ``budget``, default: the configured one) if a
        rule reads an estimate the cache does not have: then the rules run again with it."""
        try:
            return await self._run(scope, body, rules, None)
        except EstimateNeeded as needed:
            assert self.estimator is not None
            use = await self.estimator.estimate(needed.request, budget)
            return await self._run(scope, body, rules, QueryEstimateVariable.resolved(use))

    async def _run(
        self, scope: dict[str, Any], body: bytes, rules: RuleSet | None, estimate: QueryEstimateVariable | None
    ) -> Outcome:
        if len(body) < 4096:
            # A short statement is analysed (if a rule asks) in the event loop: a thread hop costs more.
            return self.outcome(scope, body, rules, estimate)
        return await asyncio.to_thread(self.outcome, scope, body, rules, estimate)

    async def trial(
        self, scope: dict[str, Any], body: bytes, rules: RuleSet | None = None, budget: float | None = None
    ) -> tuple[Selection, Outcome]:
        """What ``rules`` (default: the ones in use) decide for a request, as for a new query, with
        nothing counted: the admin API's test of rules."""
        outcome = await self.decide(scope, body, rules, budget)
        return _selection(outcome, scope, outcome.estimate), outcome

    async def select(self, scope: dict[str, Any], body: bytes) -> Selection:
        return self._counted(await self.decide(scope, body), scope)


class ExternalSelector:
    """An external routing service (trino-gateway's ``rulesType: EXTERNAL``)."""

    def __init__(
        self, service: ExternalRoutingService, propagate_errors: bool, max_body_size: int, users: UserSource
    ) -> None:
        self.service = service
        self.propagate_errors = propagate_errors
        self.max_body_size = max_body_size
        self.users = users

    async def select(self, scope: dict[str, Any], body: bytes) -> Selection:
        request = RuleRequest.from_scope(scope)
        user = extract_user(request, self.users)
        try:
            answer = await self.service.ask(request, user, query_properties(request, body, self.max_body_size))
        except ExternalRoutingError as error:
            log.warning("routing service %s %s; routing by the request's header", self.service.url, error)
            return _by_header(scope)
        if answer.errors:
            if self.propagate_errors:
                return Selection(None, "external", "external", answer.headers, rejected=answer.errors)
            log.warning("routing service %s reported errors: %s", self.service.url, "; ".join(answer.errors))
        if answer.routing_group is None:
            fallback = _by_header(scope)
            return Selection(fallback.group, fallback.source, None, answer.headers)
        return Selection(answer.routing_group, "external", "external", answer.headers)
