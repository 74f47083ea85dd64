"""The gateway's queue on every SQL store: a waiting query's place in its party's line (a query sent
again after its backend failed goes back first: a place before every other's), and the backends that
failed it (not tried again while others can be), and the slot an admitted one holds (a query admitted
again after its backend refused it holds a new one).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gateway_waiting_query", sa.Column("place", sa.BigInteger, nullable=True))
    op.add_column("gateway_waiting_query", sa.Column("attempts", sa.String(), nullable=True))
    op.add_column("gateway_waiting_query", sa.Column("slot_id", sa.String(256), nullable=True))
    op.execute("UPDATE gateway_waiting_query SET slot_id = query_id WHERE state IN ('ADMITTED', 'SENDING')")
    op.execute("UPDATE gateway_waiting_query SET place = enqueued_at")
    with op.batch_alter_table("gateway_waiting_query") as batch:
        batch.alter_column("place", existing_type=sa.BigInteger, nullable=False)
    op.drop_index("gateway_waiting_query_party_idx", "gateway_waiting_query")
    op.create_index(
        "gateway_waiting_query_party_idx",
        "gateway_waiting_query",
        ["routing_group", "party", "place", "query_id"],
        postgresql_where=sa.text("state = 'QUEUED'"),
        sqlite_where=sa.text("state = 'QUEUED'"),
    )


def downgrade() -> None:
    op.drop_index("gateway_waiting_query_party_idx", "gateway_waiting_query")
    op.create_index(
        "gateway_waiting_query_party_idx",
        "gateway_waiting_query",
        ["routing_group", "party", "enqueued_at", "query_id"],
        postgresql_where=sa.text("state = 'QUEUED'"),
        sqlite_where=sa.text("state = 'QUEUED'"),
    )
    with op.batch_alter_table("gateway_waiting_query") as batch:
        batch.drop_column("slot_id")
        batch.drop_column("attempts")
        batch.drop_column("place")
