"""What the sandbox network has published, and how often it has been called."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base


class SandboxPost(Base):
    __tablename__ = "sandbox_posts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    # Recorded, and searchable, but not enforced: like most networks, publishing the same
    # thing twice shows it twice. Finding it again by key is the client's job.
    idempotency_key: Mapped[str | None] = mapped_column(String(120), index=True)
    type: Mapped[str] = mapped_column(String(16))
    caption: Mapped[str] = mapped_column(Text)
    media: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    media_type: Mapped[str | None] = mapped_column(String(16))
    published_at: Mapped[datetime]
    # When the publish call that created it arrived (before the network's latency).
    received_at: Mapped[datetime | None] = mapped_column(default=None)
    first_comment: Mapped[str | None] = mapped_column(Text, default=None)
    first_comment_at: Mapped[datetime | None] = mapped_column(default=None)


class SandboxCall(Base):
    """How many times an operation was called for a key: faults apply to the first N."""

    __tablename__ = "sandbox_calls"

    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    operation: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    # When the first and the latest call arrived: what a platform's own logs would show.
    first_at: Mapped[datetime | None] = mapped_column(default=None)
    last_at: Mapped[datetime | None] = mapped_column(default=None)
