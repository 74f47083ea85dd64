"""Cluster management: how the gateway starts and stops a backend (its scaler, JSON).

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


def downgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.drop_column("scaler")
