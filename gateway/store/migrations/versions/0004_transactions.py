"""Transactions and the backend that owns each; the transaction of each query; an index for drain status.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_transaction",
        sa.Column("transaction_id", sa.String(128), primary_key=True),
        sa.Column("backend_name", sa.String(256), nullable=False),
        sa.Column("backend_url", sa.String(1024), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=False),
        sa.Column("started_by", sa.String(256), nullable=True),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
    )
    op.create_index("gateway_transaction_open_idx", "gateway_transaction", ["backend_name", "ended_at"])
    with op.batch_alter_table("query_history") as batch:
        batch.add_column(sa.Column("transaction_id", sa.String(128), nullable=True))
    op.create_index("query_history_unfinished_idx", "query_history", ["backend_name", "state"])


def downgrade() -> None:
    op.drop_index("query_history_unfinished_idx", "query_history")
    with op.batch_alter_table("query_history") as batch:
        batch.drop_column("transaction_id")
    op.drop_table("gateway_transaction")
