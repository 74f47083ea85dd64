"""The store's tables. Migrations (``migrations/versions``) create and evolve them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

backends = sa.Table(
    "gateway_backend",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("proxy_to", sa.String(1024), nullable=False),
    sa.Column("external_url", sa.String(1024), nullable=True),
    sa.Column("routing_group", sa.String(256), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Migration 0003: the rest of the backend's record, so a backend added through the API has it all.
    sa.Column("weight", sa.Float, nullable=False, server_default="1.0"),
    sa.Column("monitor", sa.String(32), nullable=True),
    sa.Column("tls", sa.Text, nullable=True),  # JSON of BackendTls
)

query_history = sa.Table(
    "query_history",
    metadata,
    sa.Column("query_id", sa.String(256), primary_key=True),
    sa.Column("backend_name", sa.String(256), nullable=False),
    sa.Column("backend_url", sa.String(1024), nullable=False),
    sa.Column("routing_group", sa.String(256), nullable=False),
    sa.Column("user_name", sa.String(256), nullable=True),
    sa.Column("source", sa.String(256), nullable=True),
    sa.Column("client_tags", sa.Text, nullable=True),
    sa.Column("query_text", sa.Text, nullable=True),
    sa.Column("submitted_at", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(32), nullable=True),
    sa.Column("error_name", sa.String(128), nullable=True),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    sa.Column("elapsed_ms", sa.BigInteger, nullable=True),
    # W3C traceparent of the query's trace (migration 0002): every request of the query joins it.
    sa.Column("trace_parent", sa.String(64), nullable=True),
    # The transaction the statement ran in (migration 0004).
    sa.Column("transaction_id", sa.String(128), nullable=True),
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
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("address", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(256), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
    sa.Index("gateway_audit_at_idx", "at"),
)

# Which backend owns each transaction (migration 0004): every worker and gateway node reads it.
transactions = sa.Table(
    "gateway_transaction",
    metadata,
    sa.Column("transaction_id", sa.String(128), primary_key=True),
    sa.Column("backend_name", sa.String(256), nullable=False),
    sa.Column("backend_url", sa.String(1024), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=False),
    sa.Column("started_by", sa.String(256), nullable=True),
    sa.Column("ended_at", sa.BigInteger, nullable=True),
    sa.Column("end_reason", sa.String(64), nullable=True),
    sa.Index("gateway_transaction_open_idx", "backend_name", "ended_at"),
)
