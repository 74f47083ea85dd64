"""The whole backend record in the store: weight, monitor and TLS settings beside the rest.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.add_column(sa.Column("weight", sa.Float, nullable=False, server_default="1.0"))
        batch.add_column(sa.Column("monitor", sa.String(32), nullable=True))
        batch.add_column(sa.Column("tls", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.drop_column("tls")
        batch.drop_column("monitor")
        batch.drop_column("weight")
