"""The query history keeps what admission control did to a query: the gateway id its client saw while
it waited, how long it waited in the gateway, and its earlier attempts on other backends (all null for
rows written before, and for queries sent at once).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_history") as batch:
        batch.add_column(sa.Column("gateway_query_id", sa.String(256), nullable=True))
        batch.add_column(sa.Column("queued_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("attempts", sa.String(2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_history") as batch:
        batch.drop_column("attempts")
        batch.drop_column("queued_ms")
        batch.drop_column("gateway_query_id")
