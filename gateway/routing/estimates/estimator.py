"""A new query's estimate: from the cache, or from the planner, within the query's time budget, and
never the reason a query fails.

    peek ──▶ the text's key in the cache ──hit──▶ the estimate (a dictionary lookup: the hot path)
      │ miss
    estimate ──▶ too long? ─▶ parse and normalise (sqlglot): not explainable? ─▶ none, never sent
                    ──▶ the normalised key in the cache ──hit──▶ the estimate
                    ──▶ an EXPLAIN of the same key under way? join it (single flight)
                    ──▶ else: the user's rate, the EXPLAINs open (max_in_flight), a planner: one EXPLAIN
                    ──▶ wait for it at most what is left of the budget

Whatever goes wrong, the answer is an ``EstimateUse`` without an estimate and the cause: the query is
routed as if no estimate had been asked for. Each cause is counted per query (``fell_back``) and logged
once, until an estimate is had again. An EXPLAIN a query stopped waiting for goes on (up to
``timeout``) and its plan is kept for the next query of the statement.

Nothing here runs unless asked: a rule that reads ``queryEstimate``, the cost router, or ``always``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.backends.registry import BackendRegistry
from gateway.config import EstimatesConfig
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.routing.estimates.cache import BoundedCache
from gateway.routing.estimates.estimate import (
    BAD_ANSWER,
    BUDGET,
    BUSY,
    EXPECTED_CAUSES,
    NO_PLANNER,
    PLANNER_TIMEOUT,
    RATE_LIMITED,
    TOO_LONG,
    EstimateUse,
    QueryEstimate,
    fallback,
)
from gateway.routing.estimates.plan import BadPlan, read_plan
from gateway.routing.estimates.planner import Planner, PlannerError
from gateway.routing.estimates.rate import UserRate
from gateway.routing.estimates.request import EstimateRequest
from gateway.routing.estimates.statement import read_statement
from gateway.store.backend import Backend
from gateway.upstream import Upstream

log = logging.getLogger("gateway.routing.estimates")

# A statement this long or longer is parsed in a thread: the event loop serves every other request.
INLINE_PARSE_CHARS = 4096
# What an estimate takes in the cache beside its key's text (the cache's bytes bound).
ESTIMATE_BYTES = 400

# The cache holds estimates and, under a text's own key, why a text is not explained (so that sending
# it again costs a lookup, not a parse).
Cached = QueryEstimate | str


class EstimateEvents(Protocol):
    """What the estimator tells the metrics (``observability.metrics.EstimateMetrics``)."""

    def looked_up(self, hit: bool) -> None: ...

    def explained(self, outcome: str, seconds: float) -> None: ...

    def fell_back(self, cause: str) -> None: ...


class _Quiet:
    def looked_up(self, hit: bool) -> None:
        pass

    def explained(self, outcome: str, seconds: float) -> None:
        pass

    def fell_back(self, cause: str) -> None:
        pass


class Estimator:
    def __init__(
        self,
        settings: EstimatesConfig,
        default_group: str,
        upstream: Upstream,
        registry: BackendRegistry,
        decider: RouteDecider,
        events: EstimateEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.budget = settings.budget
        self.default_group = default_group
        self.registry = registry
        self.decider = decider
        self.planner = Planner(upstream)
        self.events: EstimateEvents = events or _Quiet()
        self.clock = clock
        self.cache: BoundedCache[Cached] = BoundedCache(
            settings.cache.max_entries,
            settings.cache.max_bytes,
            settings.ttl,
            size_of=lambda value: len(value) if isinstance(value, str) else ESTIMATE_BYTES,
            clock=clock,
        )
        self.rate = UserRate(settings.user_rate.per_second, settings.user_rate.burst, clock=clock)
        counted = settings.session_properties
        self.session_properties = frozenset(counted) if counted is not None else None
        self._flights: dict[str, asyncio.Task[QueryEstimate]] = {}
        self._logged: set[str] = set()
        self.explains = 0
        """EXPLAINs sent by this worker (for tests and status pages)."""

    # -- asking -----------------------------------------------------------------------------------
    def request(self, scope: dict[str, Any], sql: str, user: str | None) -> EstimateRequest:
        """What a new query's estimate is asked with: its statement, user, headers and cache key."""
        return EstimateRequest.of(scope, sql, user, self.session_properties)

    def peek(self, request: EstimateRequest) -> EstimateUse | None:
        """The estimate the cache holds for the statement as sent, else None (``estimate`` must ask)."""
        began = self.clock()
        value = self.cache.get(request.key)
        if value is None:
            return None
        if isinstance(value, str):
            return self._fallback(value, began)
        self.events.looked_up(True)
        return EstimateUse(value, "cache", self.clock() - began)

    async def estimate(self, request: EstimateRequest, budget: float | None = None) -> EstimateUse:
        """The statement's estimate, waiting at most ``budget`` seconds (default: the configured one)."""
        began = self.clock()
        budget = self.budget if budget is None else budget
        known = self.peek(request)
        if known is not None:
            return known
        if len(request.sql) > self.settings.max_statement_length:
            return self._fallback(TOO_LONG, began)
        if len(request.sql) < INLINE_PARSE_CHARS:
            statement = read_statement(request.sql)  # a thread hop costs more than a short parse
        else:
            try:
                async with asyncio.timeout(budget):
                    statement = await asyncio.to_thread(read_statement, request.sql)
            except TimeoutError:
                return self._fallback(BUDGET, began)
        if statement.normalised is None:
            assert statement.why is not None
            self.cache.put(request.key, statement.why)
            return self._fallback(statement.why, began)
        key = request.normalised_key(statement.normalised)
        value = self.cache.get(key)
        if isinstance(value, QueryEstimate):
            self._alias(request, key, value)
            self.events.looked_up(True)
            return EstimateUse(value, "cache", self.clock() - began)
        self.events.looked_up(False)
        flight = self._flights.get(key)
        if flight is None:
            if not self.rate.allow(request.user):
                return self._fallback(
                    RATE_LIMITED, began, f"user {request.user!r} asked for more EXPLAINs than allowed"
                )
            if len(self._flights) >= self.settings.max_in_flight:
                return self._fallback(BUSY, began, f"{len(self._flights)} EXPLAINs are open already")
            flight = self._start(key, request)
        try:
            async with asyncio.timeout(max(0.0, budget - (self.clock() - began))):
                estimate = await asyncio.shield(flight)
        except TimeoutError:
            return self._fallback(BUDGET, began, f"no plan within the budget of {budget * 1000:.0f} ms")
        except PlannerError as error:
            return self._fallback(error.cause, began, str(error))
        self._alias(request, key, estimate)
        return EstimateUse(estimate, "planner", self.clock() - began)

    def _alias(self, request: EstimateRequest, key: str, estimate: QueryEstimate) -> None:
        """The text as sent finds the estimate at once next time (and not after the estimate expires)."""
        self.cache.put(request.key, estimate, expires=self.cache.expiry(key))

    # -- the EXPLAIN --------------------------------------------------------------------------------
    def _start(self, key: str, request: EstimateRequest) -> asyncio.Task[QueryEstimate]:
        flight = asyncio.get_running_loop().create_task(self._explain(key, request))
        self._flights[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        return flight

    async def _explain(self, key: str, request: EstimateRequest) -> QueryEstimate:
        began = self.clock()
        try:
            backend = await self._planner_backend()
            self.explains += 1
            try:
                # The planner keeps to the timeout itself (and cancels an EXPLAIN it gives up on); this
                # bound, a second later, is for a call that would not end.
                timeout = self.settings.timeout
                async with asyncio.timeout(timeout + 1.0):
                    text = await self.planner.explain(backend, request, timeout)
            except TimeoutError:
                why = f"backend {backend.name} did not plan the statement in time"
                raise PlannerError(PLANNER_TIMEOUT, why) from None
            try:
                estimate = read_plan(text, self.settings.plan_costs)
            except BadPlan as error:
                why = f"backend {backend.name} answered a plan that cannot be read: {error}"
                raise PlannerError(BAD_ANSWER, why) from None
        except PlannerError as error:
            self.events.explained(error.cause, self.clock() - began)
            raise
        self.events.explained("ok", self.clock() - began)
        self.cache.put(key, estimate)
        self._logged &= EXPECTED_CAUSES  # estimates flow again: the next failure is news
        return estimate

    def _landed(self, key: str, flight: asyncio.Task[QueryEstimate]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if flight.cancelled():
            return
        error = flight.exception()  # retrieved, so that a flight no query waits for any more is not reported
        if isinstance(error, PlannerError):
            self._log_once(error.cause, str(error))
        elif error is not None:
            log.error("query estimate failed unexpectedly: %r", error)

    async def _planner_backend(self) -> Backend:
        """The backend to ask: the configured one, else the best of the configured or the default group."""
        backends = await self.registry.all()
        planner = self.settings.planner
        if planner.backend is not None:
            backend = self.decider.routable(backends, planner.backend)
            if backend is None:
                raise PlannerError(NO_PLANNER, f"the planning backend {planner.backend!r} is not active and healthy")
            return backend
        try:
            ranked = self.decider.decide(backends, planner.group or self.default_group).ranked
        except NoBackendAvailable as error:
            raise PlannerError(NO_PLANNER, f"no backend to plan on: {error}") from None
        if not ranked:
            raise PlannerError(NO_PLANNER, "no backend to plan on: the planning group's clusters are starting")
        return ranked[0]

    # -- without one ---------------------------------------------------------------------------------
    def _fallback(self, cause: str, began: float, detail: str = "") -> EstimateUse:
        self.events.fell_back(cause)
        self._log_once(cause, detail)
        return fallback(cause, self.clock() - began)

    def _log_once(self, cause: str, detail: str) -> None:
        if cause in self._logged:
            return
        self._logged.add(cause)
        level = logging.INFO if cause in EXPECTED_CAUSES else logging.WARNING
        log.log(
            level,
            "query routed without an estimate: %s%s (counted in trino_gateway_estimate_fallbacks_total; logged once "
            "until an estimate is had again)",
            cause,
            f": {detail}" if detail else "",
        )

    # -- status -----------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def settle(self) -> None:
        """Wait for the EXPLAINs under way (tests)."""
        flights: list[Awaitable[Any]] = list(self._flights.values())
        if flights:
            await asyncio.gather(*flights, return_exceptions=True)
