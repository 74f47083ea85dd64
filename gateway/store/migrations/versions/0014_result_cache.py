"""The result cache: its entries shared through the store, when each routing group's entries (or all)
were last purged, the cache's word on each query in the query history, and the secret the fleet's
cache keys are made with (made once, by the first node that needs it).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_result_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("routing_group", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("gateway_result_cache_expires_idx", "gateway_result_cache", ["expires_ms"])
    op.create_table(
        "gateway_cache_purge",
        sa.Column("routing_group", sa.String(255), primary_key=True),
        sa.Column("purged_ms", sa.BigInteger, nullable=False),
    )
    op.add_column("query_history", sa.Column("cache", sa.String(160), nullable=True))
    op.create_table(
        "gateway_secret",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_secret")
    with op.batch_alter_table("query_history") as batch:
        batch.drop_column("cache")
    op.drop_table("gateway_cache_purge")
    op.drop_index("gateway_result_cache_expires_idx", "gateway_result_cache")
    op.drop_table("gateway_result_cache")
