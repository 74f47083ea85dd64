"""One health check per backend for the whole fleet: who holds each backend's lease, and the last result.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_health_check",
        sa.Column("backend_name", sa.String(256), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
        sa.Column("checked_at", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("stats", sa.Text, nullable=True),
        sa.Column("seconds", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gateway_health_check")
