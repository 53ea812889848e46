"""Enqueue and cancel publish tasks, always inside the caller's transaction."""

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.db.engine import NOTIFY_WORKERS
from tidings.ids import new_id
from tidings.platforms.base import Published
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.publishing.states import TargetStatus, post_status
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.scheduled_posts.rows import PostRow


def _enqueue(
    session: AsyncSession,
    kind: TaskKind,
    workspace_id: str,
    run_at: datetime,
    *,
    post_id: str | None = None,
    channel_id: str | None = None,
) -> Task:
    """Add a PENDING task to the session, and have workers woken when it commits."""
    task = Task(
        id=new_id("task"),
        workspace_id=workspace_id,
        kind=kind,
        post_id=post_id,
        channel_id=channel_id,
        run_at=run_at,
        status=TaskStatus.PENDING,
    )
    session.add(task)
    session.info[NOTIFY_WORKERS] = True
    return task


async def enqueue_publish(
    session: AsyncSession, *, workspace_id: str, post_id: str, run_at: datetime
) -> Task:
    """Add the task that publishes a post at `run_at`; it commits with the approval."""
    task = _enqueue(session, TaskKind.PUBLISH_POST, workspace_id, run_at, post_id=post_id)
    await session.flush()
    return task


def enqueue_target_task(
    session: AsyncSession,
    *,
    kind: TaskKind,
    workspace_id: str,
    post_id: str,
    channel_id: str,
    run_at: datetime,
) -> Task:
    """Add a task about one target of a post (publish it, or post its first comment)."""
    return _enqueue(session, kind, workspace_id, run_at, post_id=post_id, channel_id=channel_id)


def enqueue_refresh(
    session: AsyncSession, *, workspace_id: str, channel_id: str, run_at: datetime
) -> Task:
    """Add the task that renews a channel's token at `run_at`."""
    return _enqueue(session, TaskKind.REFRESH_TOKEN, workspace_id, run_at, channel_id=channel_id)


async def cancel_post_tasks(session: AsyncSession, post_id: str, now: datetime) -> int:
    """Cancel every task of a post that has not started; returns how many were cancelled."""
    result = await session.execute(
        update(Task)
        .where(Task.post_id == post_id, Task.status == TaskStatus.PENDING)
        .values(status=TaskStatus.CANCELED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def mark_published(
    session: AsyncSession, post: ScheduledPost, target: Target, result: Published
) -> None:
    """A target is live (or in its owner's inbox): keep the platform's ids, then queue its
    first comment, if any."""
    target.status = TargetStatus.SENT_TO_INBOX if result.sent_to_inbox else TargetStatus.PUBLISHED
    target.external_post_id = result.external_post_id
    target.external_url = result.external_url
    target.published_at = result.published_at
    target.error_code = None
    target.error_message = None
    if target.first_comment and not result.sent_to_inbox:
        target.first_comment_status = "PENDING"
        enqueue_target_task(
            session,
            kind=TaskKind.FIRST_COMMENT,
            workspace_id=post.workspace_id,
            post_id=post.id,
            channel_id=target.channel_id,
            run_at=result.published_at,
        )


def derived_post_status(post: ScheduledPost | PostRow) -> PostStatus:
    """The post's status as its targets make it (see `states.post_status`)."""
    started = any(t.attempt_count > 0 for t in post.targets)
    return post_status((t.status or TargetStatus.PENDING for t in post.targets), started=started)
