"""Cost-aware routing: each routed query's estimate in the query history (where it came from: cache,
planner, or none; and the estimate itself, as JSON), when routing asked for one.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("query_history", sa.Column("estimate_source", sa.String(16), nullable=True))
    op.add_column("query_history", sa.Column("estimate", sa.String(4096), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_history") as batch:
        batch.drop_column("estimate")
        batch.drop_column("estimate_source")
