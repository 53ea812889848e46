"""Enqueue and cancel publish tasks, always inside the caller's transaction."""

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.ids import new_id
from tidings.publishing.models import Task, TaskKind, TaskStatus


async def enqueue_publish(
    session: AsyncSession, *, workspace_id: str, post_id: str, run_at: datetime
) -> Task:
    """Add the task that publishes a post at `run_at`; it commits with the approval."""
    task = Task(
        id=new_id("task"),
        workspace_id=workspace_id,
        kind=TaskKind.PUBLISH_POST,
        post_id=post_id,
        run_at=run_at,
        status=TaskStatus.PENDING,
    )
    session.add(task)
    await session.flush()
    return task


async def cancel_post_tasks(session: AsyncSession, post_id: str, now: datetime) -> int:
    """Cancel every task of a post that has not started; returns how many were cancelled."""
    result = await session.execute(
        update(Task)
        .where(Task.post_id == post_id, Task.status == TaskStatus.PENDING)
        .values(status=TaskStatus.CANCELED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
