"""The query history API: ``GET /gateway/queries``, ``GET /gateway/queries/{queryId}`` and the counts of
``GET /gateway/queries/stats``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from gateway.config import GatewayTracingConfig
from gateway.control.api.access import principal, reader
from gateway.errors import api_error, json_response
from gateway.store import QueryCount, QueryFilter, QueryRecord, now_ms
from observability.propagation import trace_id_of

if TYPE_CHECKING:
    from gateway.control.services import Services


def query_json(record: QueryRecord, tracing: GatewayTracingConfig) -> dict[str, Any]:
    """A query as the API shows it; ``tracing`` links its trace to the tracing UI, if one is configured."""
    trace_id = trace_id_of(record.trace_parent)
    return {
        "queryId": record.query_id,
        "user": record.user_name,
        "source": record.source,
        "clientTags": record.client_tags.split(",") if record.client_tags else [],
        "routingGroup": record.routing_group,
        "backend": record.backend_name,
        "backendUrl": record.backend_url,
        "query": record.query_text,
        "submittedAt": record.submitted_at,
        "state": record.state or "RUNNING",
        "errorName": record.error_name,
        "finishedAt": record.finished_at,
        "elapsedMs": record.elapsed_ms,
        "transactionId": record.transaction_id,
        "routingSource": record.routing_source,
        "routingRule": record.routing_rule,
        "gatewayQueryId": record.gateway_query_id,
        "queuedMs": record.queued_ms,
        "attempts": record.attempts,
        "traceId": trace_id,
        "traceUrl": tracing.trace_url(trace_id),
    }


def count_json(count: QueryCount) -> dict[str, Any]:
    return {
        "at": count.at,
        "routingGroup": count.routing_group,
        "backend": count.backend_name,
        "queries": count.queries,
        "failed": count.failed,
    }


# The stores keep times as SQL BIGINT and count rows in it: a larger number is no filter they can run.
BIGINT_MAX = 2**63 - 1
# Query counts: the default range, the bucket lengths (seconds), and how many buckets one answer may span.
STATS_RANGE_MS = 3600 * 1000
STATS_STEP_DEFAULT, STATS_STEP_MIN, STATS_STEP_MAX = 60, 10, 3600
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
    async def queries() -> Response:
        """Routed queries, newest first. Filters: user, backend, group, transaction, state (RUNNING for
        unfinished), since/until (epoch milliseconds), text (a part of the SQL, any case), id (the start
        of the query id, or of the gateway id it waited under), rule (the routing rule that chose the
        group); pagination: limit (max 1000), offset. A caller who may not see every query (USER) sees
        its own only."""
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
            {"total": total, "limit": limit, "offset": offset, "queries": [query_json(r, tracing) for r in records]}
        )

    @api.get("/gateway/queries/stats")
    @reader
    async def query_stats() -> Response:
        """Routed queries counted per time bucket, routing group and backend, and how many of them
        failed: since/until (epoch ms; default the last hour), step (bucket seconds, 10 to 3600, default
        60), at most 1000 buckets. Every caller sees everyone's counts: they hold no SQL and no user."""
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
        return json_response({"since": since, "until": until, "step": step, "buckets": [count_json(c) for c in counts]})

    @api.get("/gateway/queries/<query_id>")
    @reader
    async def one_query(query_id: str) -> Response:
        """One query's record. A caller who may not see every query gets 404 for another user's query,
        as for one that does not exist: the answer does not tell that it does."""
        await services.history.flush()
        record = await services.store.get_query(query_id)
        caller = principal()
        if record is None or not (caller.sees_all_queries or record.user_name == caller.name):
            return api_error(404, f"no query {query_id!r} in the history")
        return json_response(query_json(record, tracing))

    return api
