"""The worker: claims due tasks from the database and publishes, never twice.

Each task is handled in three steps so that nothing irreversible happens inside a database
transaction and nothing is forgotten if the process dies:

1. *prepare* (one transaction): check the post still wants publishing, mark the target
   PUBLISHING and write an IN_FLIGHT attempt to the ledger, with the target's stable
   idempotency key already stored;
2. *call* the platform, outside any transaction;
3. *record* (one transaction): close the attempt and apply the outcome (published, retry
   later, failed, or unknown) to the target and, through `post_status`, to the post.

A worker that dies between 1 and 3 leaves the task RUNNING with an expired lease and the
target PUBLISHING: whoever claims it next reconciles through the connector's lookup before
anything is sent again, and a target the platform cannot look up becomes UNKNOWN, for a
person to resolve. Once a target has started, its post is PUBLISHING and can no longer be
reverted or cancelled (the lifecycle refuses with 409), so no revert can race a call.
"""

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tidings.channels.models import ChannelStatus
from tidings.channels.service import facts
from tidings.config import Settings
from tidings.db.engine import TASKS_CHANNEL, Database
from tidings.ids import new_id
from tidings.platforms import get_platform
from tidings.platforms.base import (
    LookupUnavailable,
    Platform,
    PlatformContext,
    Published,
    PublishFailure,
    PublishRequest,
)
from tidings.publishing.metrics import EngineMetrics
from tidings.publishing.models import (
    AttemptOutcome,
    PublishAttempt,
    Task,
    TaskKind,
    TaskStatus,
    WorkerHeartbeat,
)
from tidings.publishing.service import derived_post_status, enqueue_target_task, mark_published
from tidings.publishing.states import (
    ErrorKind,
    Next,
    RetryPolicy,
    TargetStatus,
    after_failure,
)
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.scheduled_posts.service import content_of
from tidings.timefmt import utcnow

log = logging.getLogger("tidings.worker")

_LIVE_POST = frozenset({PostStatus.SCHEDULED, PostStatus.PUBLISHING})


@dataclass(frozen=True)
class EngineConfig:
    lease: timedelta = timedelta(seconds=120)
    call_timeout: timedelta = timedelta(seconds=60)
    missed_after: timedelta = timedelta(hours=24)
    poll_interval: timedelta = timedelta(seconds=1)
    heartbeat_every: timedelta = timedelta(seconds=5)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        lease=timedelta(seconds=settings.worker_lease_seconds),
        call_timeout=timedelta(seconds=settings.worker_call_timeout_seconds),
        missed_after=timedelta(hours=settings.missed_after_hours),
    )


@dataclass(frozen=True)
class Claimed:
    id: str
    kind: TaskKind
    post_id: str | None
    channel_id: str | None
    run_at: datetime


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"


class Worker:
    """Claims due tasks with leases and runs up to `concurrency` of them at once."""

    def __init__(
        self,
        db: Database,
        *,
        config: EngineConfig | None = None,
        concurrency: int = 8,
        name: str | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.config = config or EngineConfig()
        self.concurrency = concurrency
        self.name = name or default_worker_name()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for due work now (a task was just added in this process)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until `stop` is set; then let running ones finish."""
        started = utcnow()
        last_beat: datetime | None = None
        listener = None if self.db.is_sqlite else asyncio.create_task(self._listen(stop))
        while not stop.is_set():
            now = utcnow()
            if last_beat is None or now - last_beat >= self.config.heartbeat_every:
                await self._beat(started, now)
                last_beat = now
            free = self.concurrency - len(self._running)
            claimed = await self._claim(free) if free > 0 else []
            for task in claimed:
                running = asyncio.create_task(self._handle(task))
                self._running.add(running)
                running.add_done_callback(self._finished)
            if claimed and len(claimed) == free:
                continue
            await self._sleep(stop)
        # Calls in flight are let finish (each is bounded by `call_timeout`): cancelling
        # one half-way would only leave its target for another worker to reconcile.
        if self._running:
            await asyncio.wait(self._running)
        if listener is not None:
            await listener
        await self._release()
        await self._beat(started, None)

    async def _listen(self, stop: asyncio.Event) -> None:
        """On PostgreSQL, wake up as soon as another process commits a task (LISTEN/NOTIFY).

        The connection is the worker's own, outside the pool; if it drops it is opened again,
        and meanwhile the poll interval still finds the work.
        """
        import asyncpg

        dsn = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot LISTEN for new tasks (%s); polling meanwhile", exc)
                await _wait_any(stop, None, seconds=5)
                continue
            try:
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(TASKS_CHANNEL, lambda *_args: self._wake.set())
                self._wake.set()  # anything committed before we listened is looked for now
                await _wait_any(stop, lost, seconds=None)
            finally:
                if not connection.is_closed():
                    await connection.close()

    async def _beat(self, started: datetime, now: datetime | None) -> None:
        """Record that this worker is alive (or, with `now` None, that it has stopped)."""
        async with self.db.transaction() as session:
            beat = await session.get(WorkerHeartbeat, self.name)
            if now is None:
                if beat is not None:
                    await session.delete(beat)
                return
            if beat is None:
                beat = WorkerHeartbeat(name=self.name, started_at=started, beat_at=now)
                session.add(beat)
            beat.beat_at = now
            beat.concurrency = self.concurrency
            beat.running = len(self._running)

    async def _release(self) -> None:
        """Hand back any lease this worker still holds, so others need not wait it out."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Task)
                .where(Task.locked_by == self.name, Task.status == TaskStatus.RUNNING)
                .values(status=TaskStatus.PENDING, locked_by=None, locked_until=None)
                .execution_options(synchronize_session=False)
            )

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("task handler failed", exc_info=task.exception())

    async def _sleep(self, stop: asyncio.Event) -> None:
        """Until the next task is due, a wake-up, a finished handler, or the poll interval."""
        timeout = self.config.poll_interval.total_seconds()
        next_due = await self._next_due()
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - utcnow()).total_seconds()))
        self._wake.clear()
        await _wait_any(self._wake, stop, seconds=timeout)

    async def run_until_idle(self, within: float = 30) -> None:
        """Run until no task is due or running (for tests and one-shot use)."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            claimed = await self._claim(self.concurrency)
            if claimed:
                await asyncio.gather(*(self._handle(t) for t in claimed))
                continue
            next_due = await self._next_due()
            if next_due is None or next_due > utcnow() + timedelta(seconds=within):
                return
            await asyncio.sleep(min(0.05, max(0.0, (next_due - utcnow()).total_seconds())))
        raise TimeoutError("work was still due when the deadline passed")

    # --- claiming -------------------------------------------------------------------------

    async def _next_due(self) -> datetime | None:
        async with self.db.transaction(write=False) as session:
            value = await session.scalar(
                select(func.min(Task.run_at)).where(Task.status == TaskStatus.PENDING)
            )
            return value

    async def _claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        async with self.db.transaction() as session:
            due = or_(
                and_(Task.status == TaskStatus.PENDING, Task.run_at <= now),
                and_(Task.status == TaskStatus.RUNNING, Task.locked_until < now),
            )
            query = select(Task.id).where(due).order_by(Task.run_at, Task.id).limit(limit)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if not ids:
                return []
            await session.execute(
                update(Task)
                .where(Task.id.in_(ids))
                .values(
                    status=TaskStatus.RUNNING,
                    locked_by=self.name,
                    locked_until=now + self.config.lease,
                    attempts=Task.attempts + 1,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if self.metrics is not None:
                self.metrics.claimed.inc(len(ids))
            rows = await session.execute(select(Task).where(Task.id.in_(ids)))
            return [
                Claimed(t.id, t.kind, t.post_id, t.channel_id, t.run_at) for t in rows.scalars()
            ]

    async def _finish(
        self,
        session: AsyncSession,
        task_id: str,
        status: TaskStatus,
        *,
        run_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, object] = {
            "status": status,
            "locked_by": None,
            "locked_until": None,
            "updated_at": utcnow(),
            "last_error": error,
        }
        if run_at is not None:
            values["run_at"] = run_at
        # Only the lease holder may finish a task: a lease that expired and was taken over
        # by another worker is not ours to close.
        await session.execute(
            update(Task)
            .where(Task.id == task_id, Task.locked_by == self.name)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    # --- handlers ---------------------------------------------------------------------------

    async def _handle(self, task: Claimed) -> None:
        if task.kind is TaskKind.PUBLISH_POST:
            await self._fan_out(task)
        elif task.kind is TaskKind.PUBLISH_TARGET:
            await self._publish_target(task)
        elif task.kind is TaskKind.FIRST_COMMENT:
            await self._first_comment(task)

    async def _load(self, session: AsyncSession, post_id: str | None) -> ScheduledPost | None:
        if post_id is None:
            return None
        query = (
            select(ScheduledPost)
            .where(ScheduledPost.id == post_id)
            .options(selectinload(ScheduledPost.targets).selectinload(Target.channel))
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(of=ScheduledPost)
        return (await session.execute(query)).scalar_one_or_none()

    async def _load_target(
        self, session: AsyncSession, task: Claimed
    ) -> tuple[ScheduledPost | None, Target | None]:
        """The task's post (locked) and the target of the task's channel, if both exist."""
        post = await self._load(session, task.post_id)
        targets = post.targets if post is not None else []
        return post, next((t for t in targets if t.channel_id == task.channel_id), None)

    def _settle(self, post: ScheduledPost, now: datetime) -> None:
        """Derive the post's status from its targets, marking a change."""
        status = derived_post_status(post)
        if status is not post.status:
            post.status = status
            post.touch(now)

    async def _fan_out(self, task: Claimed) -> None:
        """The post is due: one publish task per pending target, or MISSED if far too late."""
        now = utcnow()
        async with self.db.transaction() as session:
            post = await self._load(session, task.post_id)
            if (
                post is None
                or post.deleted_at is not None
                or post.status is not PostStatus.SCHEDULED
                or post.task_id != task.id
            ):
                await self._finish(session, task.id, TaskStatus.CANCELED)
                return
            missed = now - task.run_at > self.config.missed_after
            for target in post.targets:
                if target.status is not TargetStatus.PENDING:
                    continue
                if missed:
                    target.status = TargetStatus.FAILED
                    target.error_code = "MISSED"
                    target.error_message = (
                        f"not published: due at {task.run_at.isoformat()}, more than "
                        f"{self.config.missed_after} before a worker could start it"
                    )
                    continue
                target.idempotency_key = target.idempotency_key or f"{post.id}:{target.channel_id}"
                enqueue_target_task(
                    session,
                    kind=TaskKind.PUBLISH_TARGET,
                    workspace_id=post.workspace_id,
                    post_id=post.id,
                    channel_id=target.channel_id,
                    run_at=now,
                )
            if missed:
                self._settle(post, now)
            await self._finish(session, task.id, TaskStatus.DONE)
        self.wake()

    async def _publish_target(self, task: Claimed) -> None:
        prepared = await self._prepare(task)
        if prepared is None:
            return
        platform = get_platform(prepared.request.channel.platform)
        assert platform is not None
        ctx = PlatformContext(db=self.db)
        outcome: Published | PublishFailure | None = None
        unknown_reason: str | None = None
        if prepared.reconcile:
            outcome, unknown_reason = await _lookup(platform, ctx, prepared)
        else:
            try:
                outcome = await asyncio.wait_for(
                    platform.publish(ctx, prepared.request),
                    self.config.call_timeout.total_seconds(),
                )
            except PublishFailure as failure:
                outcome = failure
            except Exception as exc:
                outcome = PublishFailure(
                    ErrorKind.TRANSIENT,
                    "CALL_FAILED",
                    f"{type(exc).__name__}: {exc}",
                    outcome_unknown=True,
                )
            if isinstance(outcome, PublishFailure) and outcome.outcome_unknown:
                found, unknown_reason = await _lookup(platform, ctx, prepared)
                if isinstance(found, Published):
                    outcome = found
        await self._record(task, prepared, outcome, unknown_reason)

    async def _prepare(self, task: Claimed) -> "Prepared | None":
        now = utcnow()
        async with self.db.transaction() as session:
            post, target = await self._load_target(session, task)
            if (
                post is None
                or target is None
                or post.deleted_at is not None
                or post.status not in _LIVE_POST
                or target.status not in (TargetStatus.PENDING, TargetStatus.PUBLISHING)
            ):
                await self._finish(session, task.id, TaskStatus.CANCELED)
                return None
            reconcile = target.status is TargetStatus.PUBLISHING
            if not reconcile:
                target.status = TargetStatus.PUBLISHING
                target.attempt_count += 1
                due = post.scheduled_for if target.attempt_count == 1 else task.run_at
                if self.metrics is not None and due is not None:
                    self.metrics.dispatch_lag.observe(max(0.0, (now - due).total_seconds()))
            target.idempotency_key = target.idempotency_key or f"{post.id}:{target.channel_id}"
            attempt = PublishAttempt(
                id=new_id("att"),
                post_id=post.id,
                channel_id=target.channel_id,
                operation="lookup" if reconcile else "publish",
                number=target.attempt_count,
                worker=self.name,
                started_at=now,
                outcome=AttemptOutcome.IN_FLIGHT,
            )
            session.add(attempt)
            self._settle(post, now)
            content, targets = content_of(post)
            request = PublishRequest(
                post_id=post.id,
                channel=facts(target.channel),
                content=content,
                target=next(t for t in targets if t.channel_id == target.channel_id),
                idempotency_key=target.idempotency_key,
                attempt=target.attempt_count,
            )
            return Prepared(request=request, attempt_id=attempt.id, reconcile=reconcile)

    async def _record(
        self,
        task: Claimed,
        prepared: "Prepared",
        outcome: Published | PublishFailure | None,
        unknown_reason: str | None,
    ) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            post, target = await self._load_target(session, task)
            assert post is not None  # locked, with its targets, since _prepare
            assert target is not None
            attempt = await session.get(PublishAttempt, prepared.attempt_id)
            assert attempt is not None
            attempt.ended_at = now
            retry_at: datetime | None = None
            if isinstance(outcome, Published):
                attempt.outcome = (
                    AttemptOutcome.RECONCILED
                    if prepared.reconcile or attempt.operation == "lookup"
                    else AttemptOutcome.PUBLISHED
                )
                attempt.request_id = outcome.request_id
                mark_published(session, post, target, outcome)
            elif outcome is None and unknown_reason is None:
                # Looked up after a lost answer and not found: it did not go out; try again.
                attempt.outcome = AttemptOutcome.FAILED
                attempt.error_code = "NOT_PUBLISHED"
                target.status = TargetStatus.PENDING
                retry_at = now
            elif outcome is None or (isinstance(outcome, PublishFailure) and unknown_reason):
                attempt.outcome = AttemptOutcome.OUTCOME_UNKNOWN
                target.status = TargetStatus.UNKNOWN
                target.error_code = "OUTCOME_UNKNOWN"
                target.error_message = (
                    "the platform may have published this post but cannot be asked "
                    f"({unknown_reason}); resolve it by hand"
                )
            else:
                retry_at = self._failed(post, target, attempt, outcome, now)
            self._settle(post, now)
            if self.metrics is not None and target.status is TargetStatus.PUBLISHED:
                self.metrics.published.inc()
            if self.metrics is not None and target.status is TargetStatus.FAILED:
                self.metrics.failed.inc()
            if retry_at is not None:
                await self._finish(session, task.id, TaskStatus.PENDING, run_at=retry_at)
            else:
                await self._finish(session, task.id, TaskStatus.DONE)

    def _failed(
        self,
        post: ScheduledPost,
        target: Target,
        attempt: PublishAttempt,
        failure: PublishFailure,
        now: datetime,
    ) -> datetime | None:
        """Apply a classified failure; returns when to retry, or None when it is final."""
        attempt.outcome = AttemptOutcome.FAILED
        attempt.error_kind = failure.kind.value
        attempt.error_code = failure.code
        attempt.error_message = failure.message
        attempt.request_id = failure.request_id
        target.error_code = failure.code
        target.error_message = failure.message
        if failure.kind is ErrorKind.RATE_LIMITED:
            target.rate_limited_count += 1
        decision = after_failure(
            failure.kind,
            attempts=target.attempt_count,
            rate_limited_attempts=target.rate_limited_count,
            refreshed=target.auth_refreshed,
            now=now,
            retry_at=failure.retry_at,
            policy=self.config.retry,
        )
        if decision.next is Next.REFRESH_AND_RETRY:
            # Tokens are refreshed by the platform connectors that have them (issue 4);
            # the sandbox's "expired" token is valid again on the next call.
            target.auth_refreshed = True
        if decision.next in (Next.RETRY, Next.REFRESH_AND_RETRY):
            target.status = TargetStatus.PENDING
            return decision.at or now
        target.status = TargetStatus.FAILED
        if decision.next is Next.NEEDS_RECONNECT:
            target.channel.status = ChannelStatus.NEEDS_RECONNECT
        if decision.reason and failure.kind is not ErrorKind.PERMANENT:
            target.error_message = f"{failure.message} ({decision.reason})"
        return None

    async def _comment_attempts(self, session: AsyncSession, post_id: str, channel_id: str) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(PublishAttempt)
            .where(
                PublishAttempt.post_id == post_id,
                PublishAttempt.channel_id == channel_id,
                PublishAttempt.operation == "comment",
            )
        )
        return int(count or 0)

    async def _first_comment(self, task: Claimed) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            post, target = await self._load_target(session, task)
            if (
                post is None
                or target is None
                or target.status is not TargetStatus.PUBLISHED
                or target.first_comment_status != "PENDING"
                or not target.external_post_id
                or not target.first_comment
            ):
                await self._finish(session, task.id, TaskStatus.CANCELED)
                return
            channel = facts(target.channel)
            external_id, text = target.external_post_id, target.first_comment
            number = 1 + await self._comment_attempts(session, post.id, target.channel_id)
            attempt = PublishAttempt(
                id=new_id("att"),
                post_id=post.id,
                channel_id=target.channel_id,
                operation="comment",
                number=number,
                worker=self.name,
                started_at=now,
                outcome=AttemptOutcome.IN_FLIGHT,
            )
            session.add(attempt)
        platform = get_platform(channel.platform)
        assert platform is not None
        comment_id: str | None = None
        failure: PublishFailure | None = None
        try:
            comment_id = await platform.post_comment(
                PlatformContext(db=self.db), channel, external_id, text
            )
        except PublishFailure as exc:
            failure = exc
        except Exception as exc:
            failure = PublishFailure(ErrorKind.TRANSIENT, "CALL_FAILED", str(exc))
        async with self.db.transaction() as session:
            post, target = await self._load_target(session, task)
            assert post is not None
            assert target is not None
            row = await session.get(PublishAttempt, attempt.id)
            assert row is not None
            row.ended_at = utcnow()
            if failure is None:
                row.outcome = AttemptOutcome.PUBLISHED
                target.first_comment_status = "PUBLISHED"
                target.first_comment_id = comment_id
                target.first_comment_error = None
                await self._finish(session, task.id, TaskStatus.DONE)
                return
            row.outcome = AttemptOutcome.FAILED
            row.error_kind, row.error_code = failure.kind.value, failure.code
            row.error_message = failure.message
            target.first_comment_error = f"{failure.code}: {failure.message}"
            decision = after_failure(
                failure.kind,
                attempts=number,
                rate_limited_attempts=0,
                refreshed=True,
                now=utcnow(),
                retry_at=failure.retry_at,
                policy=self.config.retry,
            )
            if decision.next is Next.RETRY:
                await self._finish(
                    session, task.id, TaskStatus.PENDING, run_at=decision.at, error=failure.code
                )
            else:
                target.first_comment_status = "FAILED"
                await self._finish(session, task.id, TaskStatus.FAILED, error=failure.code)


async def _lookup(
    platform: Platform, ctx: PlatformContext, prepared: "Prepared"
) -> tuple[Published | None, str | None]:
    """Ask the platform what an attempt whose answer was lost did: (found, why it can't tell)."""
    try:
        found = await platform.lookup(
            ctx, prepared.request.channel, prepared.request.idempotency_key
        )
    except LookupUnavailable as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"lookup failed: {type(exc).__name__}: {exc}"
    return found, None


async def _wait_any(
    first: asyncio.Event, second: asyncio.Event | None, *, seconds: float | None
) -> None:
    """Until either event is set, or `seconds` pass."""
    waiters = [asyncio.create_task(first.wait())]
    if second is not None:
        waiters.append(asyncio.create_task(second.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@dataclass(frozen=True)
class Prepared:
    request: PublishRequest
    attempt_id: str
    reconcile: bool
