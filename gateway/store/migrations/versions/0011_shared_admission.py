"""Admission control shared by a fleet: the queries waiting in the gateway, the slots of the queries
running under admission control, and the fair queue's turns per routing group.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_waiting_query",
        sa.Column("query_id", sa.String(256), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("routing_group", sa.String(256), nullable=False),
        sa.Column("party", sa.String(1024), nullable=False),
        sa.Column("user_name", sa.String(256), nullable=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("user_limit", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("backend_name", sa.String(256), nullable=True),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("enqueued_at", sa.BigInteger, nullable=False),
        sa.Column("deadline_at", sa.BigInteger, nullable=True),
        sa.Column("max_queue_wait", sa.Float, nullable=True),
        sa.Column("queued_ms", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.Column("submission", sa.String(), nullable=False),
        sa.Column("trace_parent", sa.String(64), nullable=True),
        sa.Column("error_name", sa.String(128), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("started_query_id", sa.String(256), nullable=True),
    )
    op.create_index("gateway_waiting_query_group_idx", "gateway_waiting_query", ["routing_group", "state"])
    op.create_index(
        "gateway_waiting_query_party_idx",
        "gateway_waiting_query",
        ["routing_group", "party", "enqueued_at", "query_id"],
        postgresql_where=sa.text("state = 'QUEUED'"),
        sqlite_where=sa.text("state = 'QUEUED'"),
    )
    op.create_table(
        "gateway_admission_slot",
        sa.Column("slot_id", sa.String(256), primary_key=True),
        sa.Column("query_id", sa.String(256), nullable=True),
        sa.Column("backend_name", sa.String(256), nullable=False),
        sa.Column("user_name", sa.String(256), nullable=False),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
    )
    op.create_index("gateway_admission_slot_query_idx", "gateway_admission_slot", ["query_id"])
    op.create_table(
        "gateway_fair_turns",
        sa.Column("routing_group", sa.String(256), primary_key=True),
        sa.Column("turns", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_fair_turns")
    op.drop_index("gateway_admission_slot_query_idx", "gateway_admission_slot")
    op.drop_table("gateway_admission_slot")
    op.drop_index("gateway_waiting_query_party_idx", "gateway_waiting_query")
    op.drop_index("gateway_waiting_query_group_idx", "gateway_waiting_query")
    op.drop_table("gateway_waiting_query")
