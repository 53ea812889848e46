"""Scheduled posts, their per-channel targets and their audit trail."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tidings.channels.models import Channel
from tidings.db.base import Base, TimestampMixin, str_enum
from tidings.platforms.base import MediaType, PostType
from tidings.publishing.states import TargetStatus
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.timefmt import utcnow


class ScheduledPost(TimestampMixin, Base):
    __tablename__ = "scheduled_posts"
    __table_args__ = (Index("ix_scheduled_posts_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[PostType] = mapped_column(str_enum(PostType), default=PostType.POST)
    # Kept in the shape the client sent (a URL, or a list of URLs / {"url","altText"}).
    media: Mapped[Any | None] = mapped_column(JSON, default=None)
    media_type: Mapped[MediaType | None] = mapped_column(str_enum(MediaType), default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None, index=True)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    task_id: Mapped[str | None] = mapped_column(String(40), default=None)
    status: Mapped[PostStatus] = mapped_column(str_enum(PostStatus), default=PostStatus.DRAFT)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(40))
    approved_by: Mapped[str | None] = mapped_column(String(40), default=None)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    rejected_by: Mapped[str | None] = mapped_column(String(40), default=None)
    rejected_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped once per change by the service (`touch`), and checked by SQLAlchemy in the
    # UPDATE's WHERE clause, so two writers that read the same revision cannot both win.
    revision: Mapped[int] = mapped_column(Integer, default=1)

    targets: Mapped[list["Target"]] = relationship(
        back_populates="post",
        lazy="raise",
        cascade="all, delete-orphan",
        order_by="Target.position",
    )

    __mapper_args__ = {"version_id_col": revision, "version_id_generator": False}

    def touch(self, now: datetime) -> None:
        """Mark one change: a new revision, however many flushes it takes to write."""
        self.revision += 1
        self.updated_at = now


class Target(Base):
    """One channel of a post: what to publish there and, once scheduled, how it went."""

    __tablename__ = "post_targets"

    post_id: Mapped[str] = mapped_column(
        ForeignKey("scheduled_posts.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    caption: Mapped[str | None] = mapped_column(Text, default=None)
    first_comment: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[TargetStatus | None] = mapped_column(str_enum(TargetStatus), default=None)
    external_post_id: Mapped[str | None] = mapped_column(String(200), default=None)
    external_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(100), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    # Stable across attempts and persisted before the first call, so a lost answer can be
    # looked up on the platform instead of publishing again.
    idempotency_key: Mapped[str | None] = mapped_column(String(120), default=None)
    rate_limited_count: Mapped[int] = mapped_column(Integer, default=0)
    auth_refreshed: Mapped[bool] = mapped_column(default=False)
    first_comment_status: Mapped[str | None] = mapped_column(String(16), default=None)
    first_comment_id: Mapped[str | None] = mapped_column(String(200), default=None)
    first_comment_error: Mapped[str | None] = mapped_column(Text, default=None)
    # What a connector persisted before its irreversible call (a container id, a TikTok
    # publish_id), to resume or reconcile from instead of publishing again.
    platform_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    post: Mapped[ScheduledPost] = relationship(back_populates="targets", lazy="raise")
    channel: Mapped[Channel] = relationship(lazy="raise")


class PostEvent(Base):
    """An append-only audit trail: who did what to a post, from which status to which."""

    __tablename__ = "post_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    post_id: Mapped[str] = mapped_column(
        ForeignKey("scheduled_posts.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(40))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[PostStatus | None] = mapped_column(str_enum(PostStatus), default=None)
    to_status: Mapped[PostStatus] = mapped_column(str_enum(PostStatus))
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Lets one flush insert a new post and its first event in the right order.
    post: Mapped[ScheduledPost] = relationship(lazy="raise")
