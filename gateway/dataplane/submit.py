"""A new query: where it goes (its transaction's backend, a killed query's backend, or its routing
group's best backends), whether it may start now (admission control), and then sending it.

Routing a query to a group: the group selector (header, rules, service; rules may read the query's
estimate), then the cost router where it places the query (``gateway.routing.cost_routing``), then the
group's backends, best first (``RouteDecider``).

    POST /v1/statement ─▶ route ─▶ admission ──room──▶ Sender.send ─▶ the backend's first page
                                       ├──no room──▶ it waits: Trino's QUEUED page with a gateway id
                                       └──queue full──▶ QUERY_QUEUE_FULL
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from gateway import errors
from gateway.backends.registry import BackendRegistry
from gateway.config import FailoverConfig, ProxyConfig
from gateway.dataplane import headers as hdr
from gateway.dataplane.answers import too_long
from gateway.dataplane.cached import ANSWERED, NOT_CACHED, CachedAnswers
from gateway.dataplane.exchange import BodyRefused, Exchange
from gateway.dataplane.pages import refused_page
from gateway.dataplane.query_ids import killed_query_id
from gateway.dataplane.sending import Sender
from gateway.queries.admission import Admission, QueueFull
from gateway.queries.book import QueryBook
from gateway.queries.held import HeldQuery
from gateway.queries.read_only import is_read_only
from gateway.queries.states import QUERY_QUEUE_FULL
from gateway.queries.submission import Submission, pack, shared
from gateway.queries.transactions import is_transaction_id
from gateway.routing.cost_routing import CostRouting
from gateway.routing.decider import NoBackendAvailable, RouteDecider
from gateway.routing.estimates import EstimateUse
from gateway.routing.rules import VERIFIED_USER, GroupSelector
from gateway.store.backend import Backend

log = logging.getLogger("gateway.dataplane")

# How a statement was routed when no selector chose its group (the history's routing_source).
ROUTED_TO_TRANSACTION_OWNER = "transaction"
ROUTED_TO_KILL_TARGET = "kill_query"


@dataclass(slots=True)
class Routed:
    """Where a new query goes."""

    group: str
    ranked: list[Backend]
    routed_by: tuple[str, str | None]
    fixed: bool = False
    """Its backend is the only one (a transaction's owner, a killed query's backend): sent at once,
    never held back, never moved."""
    bound: bool = False
    """It belongs to a transaction."""
    extra: tuple[tuple[str, str], ...] = ()
    """Headers the routing service adds."""
    user_limit: int | None = None
    weight: float | None = None
    failover: bool | None = None
    """A rule's word on failover (None: the config's)."""
    estimate: EstimateUse | None = None
    """What routing had of the query's estimate, if it asked for one."""
    cache_ttl: float | None = None
    """A rule's word on the result cache (``cacheTtl``), if one said."""


class Submitter:
    def __init__(
        self,
        settings: ProxyConfig,
        failover: FailoverConfig,
        registry: BackendRegistry,
        selector: GroupSelector,
        decider: RouteDecider,
        book: QueryBook,
        admission: Admission,
        sender: Sender,
        cost_routing: CostRouting | None = None,
        cached: CachedAnswers | None = None,
    ) -> None:
        self.forwarded = settings.forwarded_headers
        self.max_query_length = settings.max_query_length
        self.failover = failover
        self.registry = registry
        self.selector = selector
        self.decider = decider
        self.book = book
        self.admission = admission
        self.sender = sender
        self.cost_routing = cost_routing
        self.cached = cached

    async def submit(self, x: Exchange) -> None:
        # A statement of max_query_length characters has at most four UTF-8 bytes per character.
        body = await x.body(limit=4 * self.max_query_length)
        sql = body.decode("utf-8", errors="replace")
        if len(body) > self.max_query_length and len(sql) > self.max_query_length:
            raise BodyRefused(413, too_long(len(sql), self.max_query_length))
        user = x.scope.get(VERIFIED_USER) or x.header(b"x-trino-user")
        if user is not None:
            user = sys.intern(user)  # one string per user, whatever number of queries hold it
        transaction = x.header(b"x-trino-transaction-id")
        transaction = transaction if is_transaction_id(transaction) else None
        routed = await self._route(x, body, sql, user, transaction)
        if routed is None:
            return
        client, added = hdr.to_backend_parts(x.scope, x.base, True, self.forwarded)
        if routed.extra:
            # The routing service's headers replace any of the same name, the gateway's own included.
            client = hdr.with_extra(client + added, routed.extra)
            added = []
        headers = client + added
        considered = NOT_CACHED
        if self.cached is not None:
            considered = await self.cached.consider(
                x, routed.group, routed.cache_ttl, sql, user, transaction is not None or routed.bound, routed.routed_by
            )
            if considered is ANSWERED:
                return
        submission = Submission(
            body,
            user,
            x.header(b"x-trino-source"),
            x.header(b"x-trino-client-tags"),
            transaction,
            routed.group,
            routed.routed_by[0],
            routed.routed_by[1],
            pack(client),
            # Read-only and in no transaction: it may run again elsewhere (unless a rule says no).
            failover=self.failover.enabled
            and transaction is None
            and routed.failover is not False
            and not routed.fixed
            and is_read_only(sql),
            user_limit=routed.user_limit,
            weight=routed.weight,
            added_headers=shared(pack(added)),
            estimate=routed.estimate,
            cache=considered.word,
            capture=considered.capture,
        )
        waits = False
        try:
            waits = await self._run(x, routed, submission, headers)
        finally:
            capture = considered.capture
            if capture is not None and capture.open and not capture.attached and not waits:
                # No backend took it, and it does not wait in the gateway: its twins run on their own.
                capture.ended()

    async def _run(self, x: Exchange, routed: Routed, submission: Submission, headers: hdr.RawHeaders) -> bool:
        """The query goes to its backend now, waits in the gateway (True), or is refused."""
        if routed.fixed:
            # Statements of a transaction and kill_query calls must go where they go: never held back.
            await self.sender.send(x, submission, routed.ranked, bound=routed.bound, headers=headers)
            return False
        try:
            admitted = await self.admission.admit(routed.ranked, submission)
        except QueueFull as full:
            log.warning("routing group %r: %s", routed.group, full)
            x.observed.refused_by_gateway(str(full))
            await x.respond_json(200, refused_page(x.base, QUERY_QUEUE_FULL, str(full)))
            return False
        if isinstance(admitted, HeldQuery):
            # No backend of the group has room (or the user is at their limit): the query waits here,
            # and the client gets Trino's QUEUED page for it (its capture with it, on its submission).
            admitted.trace_parent = x.observed.waiting(admitted.id, routed.group)
            await self.sender.respond_held(x, admitted)
            return True
        await self.sender.send(x, submission, admitted.backends, admitted.slot, headers=headers)
        return False

    async def _route(
        self, x: Exchange, body: bytes, sql: str, user: str | None, transaction: str | None
    ) -> Routed | None:
        """Where the query goes; None when the client has been answered (refused, no backend)."""
        observed = x.observed
        target = killed_query_id(sql)
        killed = None if target is None else await self.book.find(target)
        if killed is not None:
            # CALL system.runtime.kill_query must reach the cluster running its target.
            return Routed(killed.group, [killed.backend], (ROUTED_TO_KILL_TARGET, None), fixed=True)
        binding = None if transaction is None else await self.book.transactions.owner(transaction)
        if binding is not None:
            # A statement of a transaction goes to the backend that owns it, whatever the rules, the
            # routers, its health or its active flag say: no other backend knows the transaction.
            observed.transaction = transaction
            owner = await self.book.backend_at(binding.backend_name, binding.backend_url)
            group = owner.routing_group
            observed.decided(group, group, [owner.name], observed.clock(), "transaction")
            return Routed(group, [owner], (ROUTED_TO_TRANSACTION_OWNER, None), fixed=True, bound=True)
        began = observed.clock()
        selection = await self.selector.select(x.scope, body)
        if selection.rejected:
            await x.respond_text(
                400, "trino-gateway: the routing service rejected the query: " + "; ".join(selection.rejected)
            )
            return None
        if self.cost_routing is not None:
            selection = await self.cost_routing.apply(selection, x.scope, sql, user)
        if selection.estimate is not None:
            observed.estimated(selection.estimate.span_attributes(), selection.estimate.seconds)
        backends = await self.registry.all()
        self.admission.refresh(backends)
        try:
            decision = self.decider.decide(backends, selection.group, user=user)
        except NoBackendAvailable as error:
            observed.no_backend(error.group, began, str(error))
            log.warning("%s", error)
            await x.respond_json(200, errors.no_backend_document(x.base, str(error)))
            return None
        observed.decided(
            decision.requested_group, decision.group, [b.name for b in decision.ranked], began, selection.rule
        )
        if decision.fell_back:
            log.info(
                "routing group %r has no active backend; using the default group %r",
                decision.requested_group,
                decision.group,
            )
        return Routed(
            decision.group,
            decision.ranked,
            (selection.source, selection.rule),
            extra=tuple(selection.headers),
            user_limit=selection.max_running,
            weight=selection.queue_weight,
            failover=selection.failover,
            estimate=selection.estimate,
            cache_ttl=selection.cache_ttl,
        )
