"""A backend's capacity: the most queries the gateway runs on it at once (null: no limit).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.add_column(sa.Column("max_running", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_backend") as batch:
        batch.drop_column("max_running")
