"""API keys: what their signature covers and their scopes; date signatures already used

Keys made before this revision sign the whole request and get the default scopes (posts
and channels, read and write).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT_SCOPES = ["posts:read", "posts:write", "channels:read", "channels:write"]


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(
            sa.Column(
                "signing",
                sa.Enum("request", "date", name="signing", native_enum=False, length=16),
                nullable=False,
                server_default="request",
            )
        )
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
    keys = sa.table("api_keys", sa.column("scopes", sa.JSON()))
    op.execute(keys.update().values(scopes=_DEFAULT_SCOPES))
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.alter_column("signing", server_default=None)
        batch_op.alter_column("scopes", existing_type=sa.JSON(), nullable=False)

    op.create_table(
        "used_signatures",
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_used_signatures_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", "signature", name=op.f("pk_used_signatures")),
    )
    with op.batch_alter_table("used_signatures") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_used_signatures_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("used_signatures") as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_signatures_expires_at"))
    op.drop_table("used_signatures")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("scopes")
        batch_op.drop_column("signing")
