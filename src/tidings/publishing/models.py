"""The durable task queue: the database is the queue, so tasks commit with their cause."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, TimestampMixin, str_enum


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class TaskKind(StrEnum):
    PUBLISH_POST = "publish_post"  # due at scheduledFor: fans out into one task per target
    PUBLISH_TARGET = "publish_target"  # publish one channel of a post
    FIRST_COMMENT = "first_comment"  # post a published target's first comment
    REFRESH_TOKEN = "refresh_token"  # renew a channel's token ahead of its expiry


class AttemptOutcome(StrEnum):
    IN_FLIGHT = "IN_FLIGHT"  # started; if it stays so, the worker died during the call
    PUBLISHED = "PUBLISHED"
    FAILED = "FAILED"  # refused; see the error
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # sent, no answer: reconciled before any retry
    RECONCILED = "RECONCILED"  # found on the platform by its key after a lost answer
    ABANDONED = "ABANDONED"  # its worker died mid-call; the next attempt reconciled it


class Task(TimestampMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_run_at", "status", "run_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[TaskKind] = mapped_column(str_enum(TaskKind))
    post_id: Mapped[str | None] = mapped_column(
        ForeignKey("scheduled_posts.id", ondelete="CASCADE"), default=None, index=True
    )
    channel_id: Mapped[str | None] = mapped_column(String(40), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_at: Mapped[datetime]
    status: Mapped[TaskStatus] = mapped_column(str_enum(TaskStatus), default=TaskStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(100), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class PublishAttempt(Base):
    """The ledger: one row per platform call, written before the call and closed after."""

    __tablename__ = "publish_attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    post_id: Mapped[str] = mapped_column(
        ForeignKey("scheduled_posts.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(String(40))
    operation: Mapped[str] = mapped_column(String(16))  # publish | lookup | comment
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[AttemptOutcome] = mapped_column(str_enum(AttemptOutcome))
    error_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    error_code: Mapped[str | None] = mapped_column(String(100), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    request_id: Mapped[str | None] = mapped_column(String(200), default=None)


class WorkerHeartbeat(Base):
    """A running worker says it is alive; /health reads the freshest beat."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime] = mapped_column(index=True)
    concurrency: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer, default=0)
