"""sandbox call times

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sandbox_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sandbox_posts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandbox_posts", schema=None) as batch_op:
        batch_op.drop_column("received_at")
    with op.batch_alter_table("sandbox_calls", schema=None) as batch_op:
        batch_op.drop_column("last_at")
        batch_op.drop_column("first_at")
