"""Backends and query history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_backend",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("proxy_to", sa.String(1024), nullable=False),
        sa.Column("external_url", sa.String(1024), nullable=True),
        sa.Column("routing_group", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "query_history",
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
    )
    op.create_index("query_history_submitted_idx", "query_history", ["submitted_at"])
    op.create_index("query_history_user_idx", "query_history", ["user_name"])
    op.create_index("query_history_backend_idx", "query_history", ["backend_name"])


def downgrade() -> None:
    op.drop_table("query_history")
    op.drop_table("gateway_backend")
