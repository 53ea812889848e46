"""channel credentials and target platform state

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credentials", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("post_targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform_state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("post_targets", schema=None) as batch_op:
        batch_op.drop_column("platform_state")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("credentials")
