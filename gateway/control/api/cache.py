"""The result cache for operators: how each group uses it, and purging it (docs/cache.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from gateway.control.api.access import action, address, changer, principal, reader
from gateway.control.api.models import (
    CacheArgs,
    CacheGroup,
    CachePurged,
    CacheStatus,
    CacheStatusArgs,
    CacheTier,
    json_response,
)
from gateway.control.api.openapi import Answer, answers
from gateway.control.cache_status import group_uses
from gateway.errors import api_error
from gateway.store import StoreError, now_ms

if TYPE_CHECKING:
    from gateway.control.services import Services

HOUR_MS = 3_600_000


def cache_api(services: Services) -> Blueprint:
    api = Blueprint("cache", __name__)

    @api.get("/gateway/cache")
    @reader
    @answers(
        {200: Answer("the result cache", CacheStatus), 400: "since is not epoch milliseconds"}, query=CacheStatusArgs
    )
    async def status() -> Response:
        """Each routing group's use of the result cache over the last hour (or since ``since``), from the query
        history of every worker and node; the entries each tier holds."""
        try:
            args = CacheStatusArgs.model_validate(request.args.to_dict())
        except ValueError:
            return api_error(400, "since must be epoch milliseconds")
        since = args.since if args.since is not None else now_ms() - HOUR_MS
        cache = services.result_cache
        assert cache is not None
        await services.history.flush()
        words = await services.store.count_cache_words(since)
        groups = [CacheGroup(**use) for use in group_uses(services.config.routing.groups, words)]
        tiers = {name: CacheTier(entries=entries, size=size) for name, (entries, size) in cache.tiers().items()}
        try:
            entries, size = await services.store.cached_result_totals()
            tiers["store"] = CacheTier(entries=entries, size=size)
        except StoreError:
            pass  # (the store's tier is left out: the rest is still worth an answer)
        return json_response(CacheStatus(since=since, groups=groups, tiers=tiers, flights=len(cache.flights)))

    @api.delete("/gateway/cache")
    @changer
    @answers({200: Answer("what was purged", CachePurged), 400: "group is empty or too long"}, query=CacheArgs)
    async def purge() -> Response:
        """Purge the result cache: every entry, or one routing group's (``group``), on every worker and node.

        The store's entries go at once; every worker forgets what it holds from before the purge within a
        second. A client reading a cached answer at that moment gets an error and runs its query again.
        The purge is in the audit trail."""
        try:
            args = CacheArgs.model_validate(request.args.to_dict())
        except ValueError:
            return api_error(400, "group must be a routing group's name (1 to 255 characters)")
        cache = services.result_cache
        assert cache is not None
        purged = await cache.purge(args.group)
        await services.audit.record(principal(), address(), action(), args.group or "*", after={"purged": purged})
        return json_response(CachePurged(group=args.group, purged=purged))

    return api
