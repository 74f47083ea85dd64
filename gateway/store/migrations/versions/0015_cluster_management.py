"""Cluster management: how the gateway starts and stops a backend (its scaler, JSON), what the cluster
manager last did to each cluster, and leases by name (one node decides per routing group).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.add_column(sa.Column("scaler", sa.Text, nullable=True))
    op.create_table(
        "gateway_cluster",
        sa.Column("backend_name", sa.String(256), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.String(512), nullable=True),
        sa.Column("failed_ms", sa.BigInteger, nullable=True),
        sa.Column("starts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "gateway_lease",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_lease")
    op.drop_table("gateway_cluster")
    with op.batch_alter_table("gateway_backend") as batch:
        batch.drop_column("scaler")
