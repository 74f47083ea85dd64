"""The query history API: ``GET /gateway/queries``, ``GET /gateway/queries/{queryId}`` and the counts of
``GET /gateway/queries/stats``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from gateway.control.api.access import principal, reader
from gateway.control.api.models import (
    BIGINT_MAX,
    STATS_STEP_MAX,
    STATS_STEP_MIN,
    QueriesArgs,
    Query,
    QueryBucket,
    QueryIdPath,
    QueryPage,
    QueryStats,
    StatsArgs,
    json_response,
)
from gateway.control.api.openapi import Answer, answers
from gateway.errors import api_error
from gateway.store import QueryFilter, now_ms

if TYPE_CHECKING:
    from gateway.control.services import Services

# Query counts: the default range and bucket length (seconds), and how many buckets one answer may span.
STATS_RANGE_MS = 3600 * 1000
STATS_STEP_DEFAULT = 60
STATS_MAX_BUCKETS = 1000


def _int_arg(name: str, default: int | None, low: int = 0, high: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be between {low} and {high if high is not None else 'any'}")
    return number


def _int_or(name: str, default: int, low: int = 0, high: int | None = None) -> int:
    value = _int_arg(name, None, low, high)
    return default if value is None else value


def queries_api(services: Services) -> Blueprint:
    api = Blueprint("queries", __name__)
    tracing = services.config.observability.tracing

    @api.get("/gateway/queries")
    @reader
    @answers({200: Answer("a page of queries", QueryPage), 400: "a bad parameter"}, query=QueriesArgs)
    async def queries() -> Response:
        """Routed queries, newest first.

        A caller who may not change anything (USER) sees its own queries only."""
        args = request.args
        caller = principal()
        user = args.get("user") if caller.sees_all_queries else caller.name
        try:
            where = QueryFilter(
                user=user,
                backend=args.get("backend"),
                routing_group=args.get("group"),
                transaction_id=args.get("transaction"),
                state=args.get("state", "").upper() or None,
                since_ms=_int_arg("since", None, high=BIGINT_MAX),
                until_ms=_int_arg("until", None, high=BIGINT_MAX),
                text=args.get("text") or None,
                id_prefix=args.get("id") or None,
                routing_rule=args.get("rule") or None,
            )
            limit = _int_or("limit", 100, 1, 1000)
            offset = _int_or("offset", 0, high=BIGINT_MAX)
        except ValueError as error:
            return api_error(400, f"bad query parameter: {error}")
        # What this worker has buffered is written first, so a client reads its own queries.
        await services.history.flush()
        total, records = await services.store.find_queries(where, limit, offset)
        return json_response(
            QueryPage(total=total, limit=limit, offset=offset, queries=[Query.of(r, tracing) for r in records])
        )

    @api.get("/gateway/queries/stats")
    @reader
    @answers(
        {
            200: Answer("the counts", QueryStats),
            400: f"a bad parameter, since not before until, or more than {STATS_MAX_BUCKETS} buckets",
        },
        query=StatsArgs,
    )
    async def query_stats() -> Response:
        """Routed queries counted per time bucket, routing group and backend.

        Counts of everyone's queries, for every role: they hold no SQL and no user. Only queries submitted
        in [since, until) count, and how many of them failed; buckets start at multiples of step since
        the epoch."""
        try:
            until = _int_or("until", now_ms(), high=BIGINT_MAX)
            since = _int_or("since", max(0, until - STATS_RANGE_MS), high=BIGINT_MAX)
            step = _int_or("step", STATS_STEP_DEFAULT, STATS_STEP_MIN, STATS_STEP_MAX)
        except ValueError as error:
            return api_error(400, f"bad query parameter: {error}")
        if since >= until:
            return api_error(400, f"bad query parameter: since ({since}) must be before until ({until})")
        step_ms = step * 1000
        buckets = -(-(until - since) // step_ms)
        if buckets > STATS_MAX_BUCKETS:
            return api_error(
                400,
                f"bad query parameters: {buckets} buckets of {step} s from since to until; at most "
                f"{STATS_MAX_BUCKETS}: ask for a shorter range or a longer step",
            )
        # What this worker has buffered is written first, as for the list.
        await services.history.flush()
        counts = await services.store.query_stats(since, until, step_ms)
        return json_response(
            QueryStats(since=since, until=until, step=step, buckets=[QueryBucket.of(c) for c in counts])
        )

    @api.get("/gateway/queries/<query_id>")
    @reader
    @answers(
        {200: Answer("the query", Query), 404: "no such query in the history, or not the caller's"},
        path=QueryIdPath,
    )
    async def one_query(query_id: str) -> Response:
        """One routed query.

        A caller who may not see every query (USER) gets 404 for another user's query, as for one that
        does not exist: the answer does not tell that it does."""
        await services.history.flush()
        record = await services.store.get_query(query_id)
        caller = principal()
        if record is None or not (caller.sees_all_queries or record.user_name == caller.name):
            return api_error(404, f"no query {query_id!r} in the history")
        return json_response(Query.of(record, tracing))

    return api
