"""The store's tables. Migrations (``migrations/versions``) create and evolve them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.store.records import CLUSTER_DETAIL_LENGTH


class Text(sa.types.TypeDecorator[str]):
    """Text as every SQL store can keep it. What clients send (SQL, user and source names, filters) is
    written as is, except that PostgreSQL refuses a NUL character and a value longer than its
    column: one such row would fail its whole batch of query history, and every batch after it.
    So NUL becomes U+FFFD and a value is cut to its column's length, the same on every store
    (a filter value is cut the same way, so it still finds what was written)."""

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.limit = length

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return self.fit(value) if isinstance(value, str) else value

    def fit(self, value: str) -> str:
        """``value`` as this column keeps it."""
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if self.limit is not None and len(value) > self.limit:
            value = value[: self.limit]
        return value


def fitted(column: sa.Column[Any], value: str) -> str:
    """``value`` as ``column`` keeps it (for a comparison SQLAlchemy cannot type by the column)."""
    return column.type.fit(value) if isinstance(column.type, Text) else value


metadata = sa.MetaData()

backends = sa.Table(
    "gateway_backend",
    metadata,
    sa.Column("name", Text(256), primary_key=True),
    sa.Column("proxy_to", Text(1024), nullable=False),
    sa.Column("external_url", Text(1024), nullable=True),
    sa.Column("routing_group", Text(256), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Migration 0003: the rest of the backend's record, so a backend added through the API has it all.
    sa.Column("weight", sa.Float, nullable=False, server_default="1.0"),
    sa.Column("monitor", Text(32), nullable=True),
    sa.Column("tls", Text(), nullable=True),  # JSON of BackendTls
    # Migration 0009: the most queries the gateway runs there at once (null: no limit).
    sa.Column("max_running", sa.Integer, nullable=True),
    # Migration 0015: how the gateway starts and stops it (null: it does not).
    sa.Column("scaler", Text(), nullable=True),  # JSON of BackendScaler
)

query_history = sa.Table(
    "query_history",
    metadata,
    sa.Column("query_id", Text(256), primary_key=True),
    sa.Column("backend_name", Text(256), nullable=False),
    sa.Column("backend_url", Text(1024), nullable=False),
    sa.Column("routing_group", Text(256), nullable=False),
    sa.Column("user_name", Text(256), nullable=True),
    sa.Column("source", Text(256), nullable=True),
    sa.Column("client_tags", Text(), nullable=True),
    sa.Column("query_text", Text(), nullable=True),
    sa.Column("submitted_at", sa.BigInteger, nullable=False),
    sa.Column("state", Text(32), nullable=True),
    sa.Column("error_name", Text(128), nullable=True),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    sa.Column("elapsed_ms", sa.BigInteger, nullable=True),
    # W3C traceparent of the query's trace (migration 0002): every request of the query joins it.
    sa.Column("trace_parent", Text(64), nullable=True),
    # The transaction the statement ran in (migration 0004).
    sa.Column("transaction_id", Text(128), nullable=True),
    # How the query was routed (migration 0006): what chose the group, and which rule.
    sa.Column("routing_source", Text(32), nullable=True),
    sa.Column("routing_rule", Text(256), nullable=True),
    # Admission control (migration 0010): the id the client saw while the query waited in the gateway,
    # how long it waited, and earlier attempts on other backends ("; "-joined).
    sa.Column("gateway_query_id", Text(256), nullable=True),
    sa.Column("queued_ms", sa.BigInteger, nullable=True),
    sa.Column("attempts", Text(2048), nullable=True),
    # Cost-aware routing (migration 0013): where the query's estimate came from (cache, planner, none)
    # and the estimate itself (JSON), when routing asked for one.
    sa.Column("estimate_source", Text(16), nullable=True),
    sa.Column("estimate", Text(4096), nullable=True),
    # The result cache (migration 0014): its word on the query (hit, miss, waited, refused, off,
    # "not eligible: <why>").
    sa.Column("cache", Text(160), nullable=True),
    sa.Index("query_history_submitted_idx", "submitted_at"),
    sa.Index("query_history_user_idx", "user_name"),
    sa.Index("query_history_backend_idx", "backend_name"),
    # Drain status: the unfinished queries of a backend (migration 0004).
    sa.Index("query_history_unfinished_idx", "backend_name", "state"),
)

# Every change through the admin API (migration 0005).
audit_log = sa.Table(
    "gateway_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", Text(256), nullable=False),
    sa.Column("method", Text(32), nullable=False),
    sa.Column("address", Text(256), nullable=False),
    sa.Column("action", Text(64), nullable=False),
    sa.Column("target", Text(256), nullable=True),
    sa.Column("outcome", Text(16), nullable=False),
    sa.Column("before", Text(), nullable=True),
    sa.Column("after", Text(), nullable=True),
    sa.Index("gateway_audit_at_idx", "at"),
)

# Which backend owns each transaction (migration 0004): every worker and gateway node reads it.
transactions = sa.Table(
    "gateway_transaction",
    metadata,
    sa.Column("transaction_id", Text(128), primary_key=True),
    sa.Column("backend_name", Text(256), nullable=False),
    sa.Column("backend_url", Text(1024), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=False),
    sa.Column("started_by", Text(256), nullable=True),
    sa.Column("ended_at", sa.BigInteger, nullable=True),
    sa.Column("end_reason", Text(64), nullable=True),
    sa.Index("gateway_transaction_open_idx", "backend_name", "ended_at"),
)

# One health check per backend for the whole fleet (migration 0007): the worker holding a backend's
# lease checks it and writes the result here; every other worker reads it.
shared_checks = sa.Table(
    "gateway_health_check",
    metadata,
    sa.Column("backend_name", Text(256), primary_key=True),
    sa.Column("holder", Text(256), nullable=False),
    sa.Column("lease_until", sa.BigInteger, nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=True),
    sa.Column("outcome", Text(16), nullable=True),  # ok, failed, starting
    sa.Column("error", Text(), nullable=True),
    sa.Column("stats", Text(), nullable=True),  # JSON of ClusterStats
    sa.Column("seconds", sa.Float, nullable=True),
)

# The routing rules every node uses (migration 0008): one row, the last change made on any node.
shared_rules = sa.Table(
    "gateway_routing_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("text", Text(), nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
    sa.Column("changed_by", Text(256), nullable=False),
)

# The gateway's queue on a SQL store (migrations 0011, 0012; gateway.queries.admission.sql_state): the
# queries that wait in the gateway, whichever worker or node took them, so that any of them answers
# their polls and a worker's or node's restart or death loses none.
waiting_queries = sa.Table(
    "gateway_waiting_query",
    metadata,
    sa.Column("query_id", Text(256), primary_key=True),  # the gateway's id its client polls
    sa.Column("slug", Text(64), nullable=False),
    sa.Column("routing_group", Text(256), nullable=False),
    sa.Column("party", Text(1024), nullable=False),
    sa.Column("user_name", Text(256), nullable=True),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("user_limit", sa.Integer, nullable=True),
    sa.Column("state", Text(16), nullable=False),  # QUEUED, ADMITTED, SENDING, STARTED, FAILED, CANCELED
    sa.Column("backend_name", Text(256), nullable=True),  # chosen when ADMITTED
    sa.Column("token", sa.Integer, nullable=False),  # of the page its client asks for next
    sa.Column("enqueued_at", sa.BigInteger, nullable=False),
    sa.Column("deadline_at", sa.BigInteger, nullable=True),
    sa.Column("max_queue_wait", sa.Float, nullable=True),
    sa.Column("queued_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
    sa.Column("submission", Text(), nullable=False),  # JSON: what is needed to send it
    sa.Column("trace_parent", Text(64), nullable=True),
    sa.Column("error_name", Text(128), nullable=True),
    sa.Column("error_message", Text(), nullable=True),
    sa.Column("started_query_id", Text(256), nullable=True),
    # Its place in its party's line: when it joined, or before every other for a query sent again.
    sa.Column("place", sa.BigInteger, nullable=False),
    sa.Column("attempts", Text(), nullable=True),  # the backends that failed it, and why ("; "-joined)
    sa.Column("slot_id", Text(256), nullable=True),  # the slot it holds once ADMITTED
    sa.Index("gateway_waiting_query_group_idx", "routing_group", "state"),
    # The waiting ones, by party and place in line: the fair queue's heads (gateway.queries.admission.sql_state).
    sa.Index(
        "gateway_waiting_query_party_idx",
        "routing_group",
        "party",
        "place",
        "query_id",
        postgresql_where=sa.text("state = 'QUEUED'"),
        sqlite_where=sa.text("state = 'QUEUED'"),
    ),
)

# One row per query running on a backend under admission control, whichever node sent it: the
# backend's and the user's counts are the rows' counts. A row's lease is renewed while the query's
# client polls (on any node); the row is deleted when any node sees the query end.
admission_slots = sa.Table(
    "gateway_admission_slot",
    metadata,
    sa.Column("slot_id", Text(256), primary_key=True),
    sa.Column("query_id", Text(256), nullable=True),  # the backend's id, once it took the query
    sa.Column("backend_name", Text(256), nullable=False),
    sa.Column("user_name", Text(256), nullable=False),
    sa.Column("lease_until", sa.BigInteger, nullable=False),
    sa.Index("gateway_admission_slot_query_idx", "query_id"),
)

# The fair queue's turns per routing group (JSON: virtual time and each party's pass).
fair_turns = sa.Table(
    "gateway_fair_turns",
    metadata,
    sa.Column("routing_group", Text(256), primary_key=True),
    sa.Column("turns", Text(), nullable=False),
)

# The result cache's entries shared by the fleet (PostgreSQL) or the workers of a node (SQLite)
# (migration 0014): the blob is the cache's own format, never read by the store.
result_cache = sa.Table(
    "gateway_result_cache",
    metadata,
    sa.Column("key", Text(64), primary_key=True),
    sa.Column("routing_group", Text(255), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),  # the blob's bytes: the totals without reading blobs
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Index("gateway_result_cache_expires_idx", "expires_ms"),
)

# When each routing group's entries (or all: "*") were last purged: a worker drops the entries its
# own tiers made before, so a purge on one worker or node reaches them all.
cache_purges = sa.Table(
    "gateway_cache_purge",
    metadata,
    sa.Column("routing_group", Text(255), primary_key=True),
    sa.Column("purged_ms", sa.BigInteger, nullable=False),
)

# Secrets every worker and node of the store shares, made by the first that needs one (migration 0014):
# the result cache's keys are made with one.
secrets_table = sa.Table(
    "gateway_secret",
    metadata,
    sa.Column("name", Text(64), primary_key=True),
    sa.Column("value", Text(128), nullable=False),
)

# What the cluster manager last did to each managed cluster (migration 0015): one row per backend it
# has moved, shared by every worker and node, written only by compare-and-set (Store.move_cluster).
clusters = sa.Table(
    "gateway_cluster",
    metadata,
    sa.Column("backend_name", Text(256), primary_key=True),
    sa.Column("state", Text(16), nullable=False),  # STOPPED, STARTING, READY, DRAINING, TERMINATING
    sa.Column("since_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", Text(CLUSTER_DETAIL_LENGTH), nullable=True),
    sa.Column("failed_ms", sa.BigInteger, nullable=True),
    sa.Column("starts", sa.Integer, nullable=False, server_default="0"),
)

# Leases by name (migration 0015): one holder at a time decides something for the fleet (the
# autoscaler of a routing group), until its lease runs out or it lets go.
leases = sa.Table(
    "gateway_lease",
    metadata,
    sa.Column("name", Text(256), primary_key=True),
    sa.Column("holder", Text(256), nullable=False),
    sa.Column("lease_until", sa.BigInteger, nullable=False),
)
