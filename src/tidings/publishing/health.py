"""Whether due work is being picked up: the figures behind /health and /metrics."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.publishing.models import Task, TaskStatus, WorkerHeartbeat
from tidings.publishing.states import TargetStatus
from tidings.scheduled_posts.models import Target


@dataclass(frozen=True)
class EngineReport:
    fresh_workers: int
    heartbeat_age: timedelta | None  # of the freshest beat; None when no worker ever beat
    oldest_overdue: timedelta  # how long the oldest due, unclaimed task has waited
    tasks_due: int
    tasks_running: int
    targets: dict[str, int]

    def problems(self, *, max_heartbeat_age: timedelta, max_lag: timedelta) -> list[str]:
        found = []
        if self.heartbeat_age is None or self.heartbeat_age > max_heartbeat_age:
            found.append(
                "no worker has a fresh heartbeat (none within "
                f"{max_heartbeat_age.total_seconds():g} s): nothing will be published"
            )
        if self.oldest_overdue > max_lag:
            found.append(
                f"due work has waited {self.oldest_overdue.total_seconds():.1f} s "
                f"(more than {max_lag.total_seconds():g} s)"
            )
        return found


async def engine_report(
    session: AsyncSession, now: datetime, *, fresh_within: timedelta
) -> EngineReport:
    newest = await session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
    fresh = await session.scalar(
        select(func.count())
        .select_from(WorkerHeartbeat)
        .where(WorkerHeartbeat.beat_at >= now - fresh_within)
    )
    due = Task.status == TaskStatus.PENDING, Task.run_at <= now
    oldest = await session.scalar(select(func.min(Task.run_at)).where(*due))
    tasks_due = await session.scalar(select(func.count()).select_from(Task).where(*due))
    running = await session.scalar(
        select(func.count()).select_from(Task).where(Task.status == TaskStatus.RUNNING)
    )
    by_status = dict(
        (await session.execute(select(Target.status, func.count()).group_by(Target.status))).all()
    )
    return EngineReport(
        fresh_workers=int(fresh or 0),
        heartbeat_age=(now - newest) if newest is not None else None,
        oldest_overdue=max(timedelta(0), now - oldest) if oldest is not None else timedelta(0),
        tasks_due=int(tasks_due or 0),
        tasks_running=int(running or 0),
        targets={s.value: int(by_status.get(s, 0)) for s in TargetStatus},
    )
