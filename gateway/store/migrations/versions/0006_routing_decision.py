"""How each query was routed: what chose its routing group (header, rule, external, default) and the rule.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_history") as batch:
        batch.add_column(sa.Column("routing_source", sa.String(32), nullable=True))
        batch.add_column(sa.Column("routing_rule", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_history") as batch:
        batch.drop_column("routing_rule")
        batch.drop_column("routing_source")
