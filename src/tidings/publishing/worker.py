"""The worker: claims due tasks from the database and publishes, never twice.

Each target is published in three steps so that nothing irreversible happens inside a
database transaction and nothing is forgotten if the process dies:

1. *prepare*: check the post still wants publishing, mark the target PUBLISHING and write an
   IN_FLIGHT attempt to the ledger, with the target's stable idempotency key already stored;
2. *call* the platform, outside any transaction;
3. *record*: close the attempt and apply the outcome (published, retry later, failed, or
   unknown) to the target and, through `post_status`, to the post.

Steps 1 and 3 are batched: one transaction claims every due task it can take, fans due posts
out into one task per target, and prepares all of them; a recorder writes the outcomes of
the calls that finished meanwhile, many per transaction. So ten thousand targets due at the
same instant cost a few dozen transactions, not tens of thousands.

A live worker renews its leases with every heartbeat, so only a dead (or frozen) worker's
tasks are ever taken over. One that dies between 1 and 3 leaves the task RUNNING with a
lease that runs out and the target PUBLISHING: whoever claims it next reconciles through
the connector's lookup before anything is sent again, and a target the platform cannot
look up becomes UNKNOWN, for a person to resolve. Once a target has started, its post is
PUBLISHING and can no longer be reverted or cancelled (the lifecycle refuses with 409), so
no revert can race a call.
"""

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tidings.channels.models import Channel, ChannelStatus
from tidings.channels.service import facts
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.bulk import write_changes
from tidings.db.engine import NOTIFY_WORKERS, TASKS_CHANNEL, Database
from tidings.ids import new_id
from tidings.platforms import get_platform
from tidings.platforms.base import (
    ChannelFacts,
    Endpoints,
    LookupUnavailable,
    Platform,
    PlatformContext,
    PostContent,
    Published,
    PublishFailure,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.store import credentials, next_refresh
from tidings.publishing.gcpause import GcPause
from tidings.publishing.limits import Limits
from tidings.publishing.metrics import EngineMetrics
from tidings.publishing.models import (
    AttemptOutcome,
    PublishAttempt,
    Task,
    TaskKind,
    TaskStatus,
    WorkerHeartbeat,
)
from tidings.publishing.service import derived_post_status, enqueue_refresh, mark_published
from tidings.publishing.states import (
    DELIVERED,
    ErrorKind,
    Next,
    RetryPolicy,
    TargetStatus,
    after_failure,
)
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.scheduled_posts.rows import ChannelRow, PostRow, TargetRow, load_rows, write_rows
from tidings.scheduled_posts.service import content_of
from tidings.timefmt import utcnow

log = logging.getLogger("tidings.worker")

_FIRST_CLAIM = 32
_FIRST_WEIGHT = 10
_FORGET_AFTER = timedelta(days=1)
_REFRESH_RETRY = timedelta(hours=1)
_TASKS = cast(Table, Task.__table__)
_ATTEMPTS = cast(Table, PublishAttempt.__table__)
_ENDED = ("ended_at", "outcome", "error_kind", "error_code", "error_message", "request_id")
_LIVE_POST = frozenset({PostStatus.SCHEDULED, PostStatus.PUBLISHING})


@dataclass(frozen=True)
class EngineConfig:
    lease: timedelta = timedelta(seconds=120)
    call_timeout: timedelta = timedelta(seconds=60)
    missed_after: timedelta = timedelta(hours=24)
    poll_interval: timedelta = timedelta(seconds=1)
    heartbeat_every: timedelta = timedelta(seconds=5)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Tasks claimed, fanned out and prepared in one transaction, at most.
    batch_size: int = 500
    #: While due work is still being claimed, finished calls wait up to this long to be
    #: recorded: starting calls on time comes first, bookkeeping second.
    record_defer: timedelta = timedelta(seconds=5)
    #: Calls at once to all channels of a platform, per worker (see `limits`).
    platform_limits: Mapping[str, int] = field(default_factory=dict)
    #: Pause the cyclic garbage collector during a burst of due work, at most this long
    #: (see `gcpause`); None leaves it alone. The `tidings` processes set it.
    gc_pause: timedelta | None = None


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        lease=timedelta(seconds=settings.worker_lease_seconds),
        call_timeout=timedelta(seconds=settings.worker_call_timeout_seconds),
        missed_after=timedelta(hours=settings.missed_after_hours),
        batch_size=settings.worker_batch_size,
        platform_limits=settings.platform_concurrency,
        gc_pause=timedelta(seconds=10),
    )


def platform_context(settings: Settings, db: Database) -> PlatformContext:
    """What the connectors of a `tidings` process work with, from its settings."""
    return PlatformContext(
        db,
        endpoints=Endpoints(
            instagram=settings.instagram_api_url,
            facebook=settings.facebook_api_url,
            threads=settings.threads_api_url,
            tiktok=settings.tiktok_api_url,
            graph_version=settings.graph_api_version,
            http_timeout=settings.platform_http_timeout_seconds,
            tiktok_chunk_bytes=settings.tiktok_chunk_bytes,
        ),
        box=SecretBox(settings.resolved_secret_key),
        fetch=settings.fetch_policy,
    )


@dataclass(frozen=True)
class Claimed:
    id: str
    kind: TaskKind
    post_id: str | None
    channel_id: str | None
    run_at: datetime


@dataclass(frozen=True)
class Prepared:
    task: Claimed
    request: PublishRequest
    attempt_id: str
    reconcile: bool


@dataclass(frozen=True)
class Outcome:
    """What a call (or a lookup) came back with."""

    prepared: Prepared
    result: Published | PublishFailure | None
    # The result came from asking the platform what an earlier call did.
    looked_up: bool = False
    # The platform cannot be asked what happened: the target goes to UNKNOWN.
    unknown_reason: str | None = None
    # Asking failed this time (a timeout, a 5xx): ask again later.
    lookup_error: str | None = None


@dataclass
class _Rows:
    """What one dispatch transaction inserts, as plain rows (no ORM objects to flush), and
    what it computed once per post and per channel."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    contents: dict[str, tuple[PostContent, dict[str, TargetContent]]] = field(default_factory=dict)
    channels: dict[str, ChannelFacts] = field(default_factory=dict)
    targets: dict[str, dict[str, TargetRow]] = field(default_factory=dict)
    learned: set[str] = field(default_factory=set)

    def target(self, post: PostRow, channel_id: str | None) -> TargetRow | None:
        if post.id not in self.targets:
            self.targets[post.id] = {t.channel_id: t for t in post.targets}
        return self.targets[post.id].get(channel_id or "")

    def content(self, post: PostRow, channel_id: str) -> tuple[PostContent, TargetContent]:
        if post.id not in self.contents:
            content, targets = content_of(post)
            self.contents[post.id] = (content, {t.channel_id: t for t in targets})
        content, by_channel = self.contents[post.id]
        return content, by_channel[channel_id]

    def channel(self, channel: ChannelRow) -> ChannelFacts:
        if channel.id not in self.channels:
            self.channels[channel.id] = facts(channel)
        return self.channels[channel.id]


@dataclass
class _AttemptEnd:
    """How an attempt ended, written to the ledger by the recorder."""

    id: str
    ended_at: datetime
    outcome: AttemptOutcome = AttemptOutcome.FAILED
    error_kind: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Dispatched:
    calls: list[Prepared]
    comments: list[Claimed]
    claimed: int
    refreshes: list[Claimed] = field(default_factory=list)


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
        context: PlatformContext | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        # What connectors work with (closed by whoever made it).
        self.context = context or PlatformContext(db)
        self.config = config or EngineConfig()
        self.concurrency = concurrency
        self.name = name or default_worker_name()
        self.limits = Limits(self.config.platform_limits)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self._caught_up = asyncio.Event()  # the last claim found nothing more due
        # Calls per task in the last rows claimed (a due post weighs its pending targets).
        # It starts high: guessing too high costs one more query, too low locks too much.
        self._weight = float(_FIRST_WEIGHT)
        pause = self.config.gc_pause
        self._gc = GcPause(pause.total_seconds() if pause is not None else None)
        # Beating also renews this worker's leases, so it must come well within a lease.
        self._beat_every = min(self.config.heartbeat_every, self.config.lease / 3)

    def wake(self) -> None:
        """Look for due work now (a task was just added in this process)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until `stop` is set; then let running ones finish."""
        started = utcnow()
        last_beat: datetime | None = None
        listener = None if self.db.is_sqlite else asyncio.create_task(self._listen(stop))
        recorder = asyncio.create_task(self._recorder())
        ramp = min(_FIRST_CLAIM, self.config.batch_size)
        while not stop.is_set():
            try:
                now = utcnow()
                if last_beat is None or now - last_beat >= self._beat_every:
                    await self._beat(started, now)
                    last_beat = now
                # The first claim of a burst is small, so its calls start at once; each
                # further one is four times larger, up to `batch_size`, for throughput.
                self._wake.clear()
                free = min(self.concurrency - len(self._running), ramp)
                if free <= 0:
                    # Every slot is taken: wait for a call to end (it wakes us). Due work
                    # may still be waiting, so this is not caught up, and the ramp holds.
                    await _wait_any(
                        self._wake, stop, seconds=self.config.poll_interval.total_seconds()
                    )
                    continue
                dispatched = await self._dispatch(free)
                self._start(dispatched)
                if dispatched.claimed:
                    self._caught_up.clear()
                    self._gc.busy(asyncio.get_running_loop().time())
                    ramp = min(ramp * 4, self.config.batch_size)
                    continue  # more may be due; stop only when a claim comes back empty
                ramp = min(_FIRST_CLAIM, self.config.batch_size)
                self._caught_up.set()
                self._gc.idle()
                await self._sleep(stop)
            except Exception:
                # The database may be restarting: keep the process, try again shortly.
                self._caught_up.set()
                self._gc.idle()
                log.exception("worker loop failed; retrying")
                await _wait_any(stop, None, seconds=self.config.poll_interval.total_seconds())
        # Calls in flight are let finish (each is bounded by `call_timeout`): cancelling
        # one half-way would only leave its target for another worker to reconcile.
        self._caught_up.set()
        self._gc.idle()
        if self._running:
            await asyncio.wait(self._running)
        await self._outcomes.join()
        recorder.cancel()
        if listener is not None:
            await listener
        await self._release()
        await self._beat(started, None)

    def _start(self, dispatched: Dispatched) -> None:
        for prepared in dispatched.calls:
            self._spawn(self._call(prepared), prepared.task.channel_id)
        for comment in dispatched.comments:
            self._spawn(self._first_comment(comment), comment.channel_id)
        for refresh in dispatched.refreshes:
            self._spawn(self._refresh(refresh), None)

    def _spawn(self, work: Coroutine[Any, Any, None], channel_id: str | None) -> None:
        running = asyncio.create_task(work)
        self._running.add(running)
        running.add_done_callback(lambda done: self._finished(done, channel_id))

    def _finished(self, task: asyncio.Task[None], channel_id: str | None) -> None:
        self._running.discard(task)
        self.limits.give(channel_id)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("task handler failed", exc_info=task.exception())

    async def _call(self, prepared: Prepared) -> None:
        self._outcomes.put_nowait(await self._perform(prepared))

    async def _recorder(self) -> None:
        """Write outcomes as they come, as many per transaction as have arrived."""
        while True:
            batch = [await self._outcomes.get()]
            if not self._caught_up.is_set():
                await _wait_any(
                    self._caught_up, None, seconds=self.config.record_defer.total_seconds()
                )
            while not self._outcomes.empty() and len(batch) < self.config.batch_size:
                batch.append(self._outcomes.get_nowait())
            try:
                await self._record(batch)
            except Exception:
                log.exception("recording %d outcomes failed; retrying", len(batch))
                await asyncio.sleep(self.config.poll_interval.total_seconds())
                for outcome in batch:
                    self._outcomes.put_nowait(outcome)
            finally:
                for _ in batch:
                    self._outcomes.task_done()

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
        """Record that this worker is alive (or, with `now` None, that it has stopped), and
        renew the leases of the tasks it is running.

        A live worker never loses a lease to another, however long its calls take: only a
        worker that stopped beating (dead, or frozen) has its tasks taken over, so a lookup
        by the next worker cannot race a call still on its way.
        """
        async with self.db.transaction() as session:
            if now is not None:
                await session.execute(
                    update(Task)
                    .where(Task.locked_by == self.name, Task.status == TaskStatus.RUNNING)
                    .values(locked_until=now + self.config.lease)
                    .execution_options(synchronize_session=False)
                )
                # Beats of workers gone for a day (killed, never stopped cleanly) go.
                await session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at < now - _FORGET_AFTER)
                )
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
            dispatched = await self._dispatch(min(self.concurrency, self.config.batch_size))
            if dispatched.claimed:
                outcomes = await asyncio.gather(*(self._perform(p) for p in dispatched.calls))
                await asyncio.gather(*(self._first_comment(c) for c in dispatched.comments))
                await asyncio.gather(*(self._refresh(r) for r in dispatched.refreshes))
                if outcomes:
                    await self._record(list(outcomes))
                for work in (*(p.task for p in dispatched.calls), *dispatched.comments):
                    self.limits.give(work.channel_id)
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

    async def _claim(self, session: AsyncSession, limit: int, now: datetime) -> list[Claimed]:
        """Take due tasks (and expired leases) worth up to `limit` calls, within the
        concurrency limits. A due post weighs as many calls as it has pending targets, so
        that its fan-out can claim them all at once instead of leaving them for later."""
        pending_targets = (
            select(func.count())
            .select_from(Target)
            .where(Target.post_id == Task.post_id, Target.status == TargetStatus.PENDING)
            .correlate(Task)
            .scalar_subquery()
        )
        weight = case((Task.kind == TaskKind.PUBLISH_POST, pending_targets), else_=1)
        columns = (
            Task.id,
            Task.kind,
            Task.post_id,
            Task.channel_id,
            Task.run_at,
            weight.label("weight"),
        )
        saturated = self.limits.saturated()
        rows: list[Any] = []
        calls = 0
        # Two queries, each served by the (status, run_at) index even when the table holds
        # millions of finished tasks: leases that expired (their worker died), then due work.
        for due in (
            and_(Task.status == TaskStatus.RUNNING, Task.locked_until < now),
            and_(Task.status == TaskStatus.PENDING, Task.run_at <= now),
        ):
            query = select(*columns).where(due)
            if saturated:
                query = query.where(
                    or_(Task.channel_id.is_(None), Task.channel_id.not_in(saturated))
                )
            found, calls = await self._take_rows(session, query, limit, calls)
            rows.extend(found)
            if calls >= limit:
                break
        await self._learn_channels(session, self.limits.unknown(r.channel_id for r in rows))
        claimed: list[Claimed] = []
        calls = 0
        for row in rows:
            cost = max(1, row.weight or 0)
            if claimed and calls + cost > limit:
                break
            if not self.limits.has_room(row.channel_id):
                continue
            self.limits.take(row.channel_id)
            calls += cost
            claimed.append(Claimed(row.id, row.kind, row.post_id, row.channel_id, row.run_at))
        if not claimed:
            return []
        await session.execute(
            update(Task)
            .where(Task.id.in_([c.id for c in claimed]))
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
            self.metrics.claimed.inc(len(claimed))
        return claimed

    async def _take_rows(
        self, session: AsyncSession, query: Select[Any], limit: int, calls: int
    ) -> tuple[list[Any], int]:
        """Rows of `query` (in due order) worth about `limit - calls` calls, with the calls
        they weigh added to `calls`.

        On PostgreSQL every row read is locked until the transaction ends, hidden from the
        other workers (SKIP LOCKED). Reading `limit` rows when a post weighs ten calls would
        lock ten times what this claim can take and starve the others; so rows are read in
        chunks sized by the weight of the rows read lately, each after the last.
        """
        rows: list[Any] = []
        query = query.order_by(Task.status, Task.run_at, Task.id)
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Task)
        while calls < limit:
            want = max(1, math.ceil((limit - calls) / self._weight))
            chunk = query
            if rows:
                last = rows[-1]
                chunk = chunk.where(
                    or_(
                        Task.run_at > last.run_at,
                        and_(Task.run_at == last.run_at, Task.id > last.id),
                    )
                )
            found = (await session.execute(chunk.limit(want))).all()
            if found:
                weight = sum(max(1, row.weight or 0) for row in found)
                self._weight = weight / len(found)
                calls += weight
                rows.extend(found)
            if len(found) < want:
                break
        return rows, calls

    async def _learn_channels(self, session: AsyncSession, channel_ids: set[str]) -> None:
        if not channel_ids:
            return
        rows = await session.execute(
            select(Channel.id, Channel.platform, Channel.options).where(Channel.id.in_(channel_ids))
        )
        for channel_id, platform, options in rows:
            self.limits.learn(channel_id, platform, options or {})

    async def _finish(
        self,
        session: AsyncSession,
        task_ids: Sequence[str],
        status: TaskStatus,
        *,
        run_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        if not task_ids:
            return
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
            .where(Task.id.in_(task_ids), Task.locked_by == self.name)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    # --- dispatching: claim, fan out, prepare -----------------------------------------------

    async def _load_posts(
        self, session: AsyncSession, post_ids: Iterable[str | None]
    ) -> dict[str, ScheduledPost]:
        """Posts with their targets and channels; locked, in id order, on PostgreSQL."""
        ids = sorted({i for i in post_ids if i is not None})
        if not ids:
            return {}
        query = (
            select(ScheduledPost)
            .where(ScheduledPost.id.in_(ids))
            .order_by(ScheduledPost.id)
            .options(selectinload(ScheduledPost.targets).selectinload(Target.channel))
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(of=ScheduledPost)
        return {p.id: p for p in (await session.execute(query)).scalars()}

    async def _dispatch(self, limit: int) -> Dispatched:
        """One transaction: claim due tasks, fan due posts out, prepare every target call."""
        now = utcnow()
        with self.limits.undone_on_error():
            return await self._dispatch_in(limit, now)

    async def _dispatch_in(self, limit: int, now: datetime) -> Dispatched:
        async with self.db.transaction() as session:
            claimed = await self._claim(session, limit, now)
            if not claimed:
                return Dispatched([], [], 0)
            posts = await load_rows(
                session,
                (c.post_id for c in claimed if c.post_id is not None),
                lock=not self.db.is_sqlite,
            )
            rows = _Rows()
            room = limit - sum(1 for c in claimed if c.kind is not TaskKind.PUBLISH_POST)
            targets: list[Claimed] = []
            comments: list[Claimed] = []
            refreshes: list[Claimed] = []
            done: list[str] = []
            canceled: list[str] = []
            touched: set[str] = set()
            for task in claimed:
                if task.kind is TaskKind.PUBLISH_TARGET:
                    targets.append(task)
                elif task.kind is TaskKind.FIRST_COMMENT:
                    comments.append(task)
                elif task.kind is TaskKind.REFRESH_TOKEN:
                    refreshes.append(task)
                else:
                    post = posts.get(task.post_id or "")
                    fanned = self._fan_out(rows, task, post, now, room)
                    if fanned is None:
                        canceled.append(task.id)
                        continue
                    room -= len(fanned)
                    targets.extend(fanned)
                    if self.metrics is not None:
                        self.metrics.claimed.inc(len(fanned))
                    done.append(task.id)
                    touched.add(task.post_id or "")
            calls: list[Prepared] = []
            for task in targets:
                prepared = self._prepare(rows, task, posts.get(task.post_id or ""), now)
                if prepared is None:
                    canceled.append(task.id)
                    self.limits.give(task.channel_id)
                else:
                    calls.append(prepared)
                    touched.add(prepared.request.post_id)
            for post_id in touched:
                if post_id in posts:
                    self._settle(posts[post_id], now)
            await write_rows(session, posts.values())
            connection = await session.connection()
            if rows.tasks:
                await connection.execute(insert(_TASKS), rows.tasks)
                if any(r["status"] is TaskStatus.PENDING for r in rows.tasks):
                    session.info[NOTIFY_WORKERS] = True
            if rows.attempts:
                await connection.execute(insert(_ATTEMPTS), rows.attempts)
            await self._abandon(session, [c for c in calls if c.reconcile])
            await self._finish(session, done, TaskStatus.DONE)
            await self._finish(session, canceled, TaskStatus.CANCELED)
        return Dispatched(calls, comments, len(claimed), refreshes)

    async def _abandon(self, session: AsyncSession, reconciling: list[Prepared]) -> None:
        """Close the attempts left IN_FLIGHT by workers that died during their call."""
        for prepared in reconciling:
            await session.execute(
                update(PublishAttempt)
                .where(
                    PublishAttempt.post_id == prepared.request.post_id,
                    PublishAttempt.channel_id == prepared.task.channel_id,
                    PublishAttempt.outcome == AttemptOutcome.IN_FLIGHT,
                    PublishAttempt.id != prepared.attempt_id,
                )
                .values(outcome=AttemptOutcome.ABANDONED, ended_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def _settle(self, post: ScheduledPost | PostRow, now: datetime) -> None:
        """Derive the post's status from its targets, marking a change."""
        status = derived_post_status(post)
        if status is not post.status:
            post.status = status
            post.touch(now)

    def _fan_out(
        self,
        rows: _Rows,
        task: Claimed,
        post: PostRow | None,
        now: datetime,
        room: int,
    ) -> list[Claimed] | None:
        """The post is due: one publish task per pending target (the first `room` of them
        claimed by this worker at once), or MISSED if far too late. None if not wanted."""
        if (
            post is None
            or post.deleted_at is not None
            or post.status is not PostStatus.SCHEDULED
            or post.task_id != task.id
        ):
            return None
        missed = now - task.run_at > self.config.missed_after
        claimed: list[Claimed] = []
        for target in post.targets:
            if target.status is not TargetStatus.PENDING:
                continue
            target.changed = True
            if missed:
                target.status = TargetStatus.FAILED
                target.error_code = "MISSED"
                target.error_message = (
                    f"not published: due at {task.run_at.isoformat()}, more than "
                    f"{self.config.missed_after} before a worker could start it"
                )
                continue
            _ensure_key(target)
            channel = target.channel
            if channel.id not in rows.learned:
                self.limits.learn(channel.id, channel.platform, channel.options or {})
                rows.learned.add(channel.id)
            task_id = new_id("task")
            new: dict[str, Any] = {
                "id": task_id,
                "workspace_id": post.workspace_id,
                "kind": TaskKind.PUBLISH_TARGET,
                "post_id": post.id,
                "channel_id": channel.id,
                "payload": {},
                "run_at": now,
                "status": TaskStatus.PENDING,
                "attempts": 0,
                "locked_by": None,
                "locked_until": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            if len(claimed) < room and self.limits.has_room(channel.id):
                self.limits.take(channel.id)
                new["status"] = TaskStatus.RUNNING
                new["locked_by"] = self.name
                new["locked_until"] = now + self.config.lease
                new["attempts"] = 1
                claimed.append(
                    Claimed(new["id"], TaskKind.PUBLISH_TARGET, post.id, channel.id, now)
                )
            rows.tasks.append(new)
        return claimed

    def _prepare(
        self, rows: _Rows, task: Claimed, post: PostRow | None, now: datetime
    ) -> Prepared | None:
        """Mark the target PUBLISHING and open its attempt; None if it is no longer wanted."""
        target = None
        if post is not None:
            target = rows.target(post, task.channel_id)
        if (
            post is None
            or target is None
            or post.deleted_at is not None
            or post.status not in _LIVE_POST
            or target.status not in (TargetStatus.PENDING, TargetStatus.PUBLISHING)
        ):
            return None
        reconcile = target.status is TargetStatus.PUBLISHING
        target.changed = True
        if not reconcile:
            target.status = TargetStatus.PUBLISHING
            target.attempt_count += 1
            due = post.scheduled_for if target.attempt_count == 1 else task.run_at
            if self.metrics is not None and due is not None:
                self.metrics.dispatch_lag.observe(max(0.0, (now - due).total_seconds()))
        idempotency_key = _ensure_key(target)
        attempt_id = new_id("att")
        rows.attempts.append(
            {
                "id": attempt_id,
                "post_id": post.id,
                "channel_id": target.channel_id,
                "operation": "lookup" if reconcile else "publish",
                "number": target.attempt_count,
                "worker": self.name,
                "started_at": now,
                "ended_at": None,
                "outcome": AttemptOutcome.IN_FLIGHT,
                "error_kind": None,
                "error_code": None,
                "error_message": None,
                "request_id": None,
            }
        )
        content, target_content = rows.content(post, target.channel_id)
        request = PublishRequest(
            post_id=post.id,
            channel=rows.channel(target.channel),
            content=content,
            target=target_content,
            idempotency_key=idempotency_key,
            attempt=target.attempt_count,
        )
        return Prepared(task=task, request=request, attempt_id=attempt_id, reconcile=reconcile)

    # --- calling ----------------------------------------------------------------------------

    async def _perform(self, prepared: Prepared) -> Outcome:
        """The platform call (or, reconciling, the lookup), bounded by the call timeout."""
        platform = get_platform(prepared.request.channel.platform)
        assert platform is not None
        ctx = self.context
        timeout = self.config.call_timeout.total_seconds()
        if prepared.reconcile:
            return await _lookup(platform, ctx, prepared, timeout, None)
        result: Published | PublishFailure
        try:
            async with asyncio.timeout(timeout):
                result = await platform.publish(ctx, prepared.request)
        except PublishFailure as failure:
            result = failure
        except Exception as exc:
            result = PublishFailure(
                ErrorKind.TRANSIENT, "CALL_FAILED", _describe(exc), outcome_unknown=True
            )
        if isinstance(result, PublishFailure) and result.outcome_unknown:
            return await _lookup(platform, ctx, prepared, timeout, result)
        return Outcome(prepared, result)

    # --- recording --------------------------------------------------------------------------

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Apply finished calls to their targets and posts, all in one transaction."""
        now = utcnow()
        async with self.db.transaction() as session:
            posts = await self._load_posts(session, (o.prepared.request.post_id for o in outcomes))
            ended: list[_AttemptEnd] = []
            finished: dict[tuple[TaskStatus, datetime | None], list[str]] = {}
            for outcome in outcomes:
                prepared = outcome.prepared
                post = posts.get(prepared.request.post_id)
                target = _target_of(post, prepared.task.channel_id)
                if post is None or target is None:
                    continue  # deleted meanwhile, with its tasks and ledger
                attempt = _AttemptEnd(prepared.attempt_id, now)
                ended.append(attempt)
                retry_at = await self._apply(session, post, target, attempt, outcome, now)
                self._settle(post, now)
                if self.metrics is not None and target.status in DELIVERED:
                    self.metrics.published.inc()
                if self.metrics is not None and target.status is TargetStatus.FAILED:
                    self.metrics.failed.inc()
                key = (TaskStatus.PENDING, retry_at) if retry_at else (TaskStatus.DONE, None)
                finished.setdefault(key, []).append(prepared.task.id)
            await write_changes(session)
            if ended:
                await (await session.connection()).execute(
                    update(_ATTEMPTS)
                    .where(_ATTEMPTS.c.id == bindparam("attempt_id"))
                    .values({name: bindparam(name) for name in _ENDED}),
                    [{"attempt_id": e.id, **{n: getattr(e, n) for n in _ENDED}} for e in ended],
                )
            for (status, run_at), task_ids in finished.items():
                await self._finish(session, task_ids, status, run_at=run_at)

    async def _apply(
        self,
        session: AsyncSession,
        post: ScheduledPost,
        target: Target,
        attempt: _AttemptEnd,
        outcome: Outcome,
        now: datetime,
    ) -> datetime | None:
        """Apply one outcome to its target; returns when to try again, or None when done."""
        result = outcome.result
        if isinstance(result, Published):
            attempt.outcome = (
                AttemptOutcome.RECONCILED if outcome.looked_up else AttemptOutcome.PUBLISHED
            )
            attempt.request_id = result.request_id
            mark_published(session, post, target, result)
            return None
        if outcome.lookup_error is not None:
            return await self._lookup_failed(session, target, attempt, outcome, now)
        if outcome.unknown_reason is not None:
            attempt.outcome = AttemptOutcome.OUTCOME_UNKNOWN
            target.status = TargetStatus.UNKNOWN
            target.error_code = "OUTCOME_UNKNOWN"
            target.error_message = (
                "the platform may have published this post but cannot be asked "
                f"({outcome.unknown_reason}); resolve it by hand"
            )
            return None
        if result is None:
            # Reconciling, looked up and not found: it did not go out; try again.
            attempt.outcome = AttemptOutcome.FAILED
            attempt.error_code = "NOT_PUBLISHED"
            target.status = TargetStatus.PENDING
            return now
        return self._failed(target, attempt, result, now)

    async def _lookup_failed(
        self,
        session: AsyncSession,
        target: Target,
        attempt: _AttemptEnd,
        outcome: Outcome,
        now: datetime,
    ) -> datetime | None:
        """Asking the platform failed: ask again later (the target stays PUBLISHING, so the
        next attempt is a lookup too), up to the retry policy's attempts; then UNKNOWN."""
        attempt.outcome = AttemptOutcome.FAILED
        attempt.error_code = "LOOKUP_FAILED"
        attempt.error_message = outcome.lookup_error
        # This one is written with the batch, so it is not counted yet.
        number = 1 + await _count_attempts(
            session, target.post_id, target.channel_id, PublishAttempt.error_code == "LOOKUP_FAILED"
        )
        if number < self.config.retry.max_attempts:
            target.status = TargetStatus.PUBLISHING
            return now + self.config.retry.backoff(number)
        target.status = TargetStatus.UNKNOWN
        target.error_code = "OUTCOME_UNKNOWN"
        target.error_message = (
            f"the platform may have published this post; asking it failed {number} times "
            f"(last: {outcome.lookup_error}); resolve it by hand"
        )
        return None

    def _failed(
        self,
        target: Target,
        attempt: _AttemptEnd,
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

    async def _load_target(
        self, session: AsyncSession, task: Claimed
    ) -> tuple[ScheduledPost | None, Target | None]:
        """The task's post (locked) and the target of the task's channel, if both exist."""
        post = (await self._load_posts(session, [task.post_id])).get(task.post_id or "")
        return post, _target_of(post, task.channel_id)

    async def _refresh(self, task: Claimed) -> None:
        """Renew a channel's token and plan the next renewal; a token the platform refuses
        marks the channel NEEDS_RECONNECT, anything else is tried again in an hour."""
        channel_id = task.channel_id or ""
        async with self.db.transaction(write=False) as session:
            row = (
                await session.execute(
                    select(Channel.platform, Channel.workspace_id).where(Channel.id == channel_id)
                )
            ).one_or_none()
        platform = get_platform(row.platform) if row is not None else None
        renew = getattr(platform, "refresh", None)
        renews = getattr(platform, "refreshes", None)
        if renew is not None and renews is not None:
            # A channel whose token is not renewed this way (any more) has nothing to do; one
            # without a usable token is left to the renewal, which says so.
            with contextlib.suppress(PublishFailure):
                renew = renew if renews(await credentials(self.context, channel_id)) else None
        if row is None or renew is None:
            async with self.db.transaction() as session:
                await self._finish(session, [task.id], TaskStatus.CANCELED)
            return
        now = utcnow()
        try:
            creds = await renew(self.context, channel_id)
        except PublishFailure as failure:
            async with self.db.transaction() as session:
                if failure.kind is ErrorKind.AUTH:
                    await session.execute(
                        update(Channel)
                        .where(Channel.id == channel_id)
                        .values(status=ChannelStatus.NEEDS_RECONNECT, updated_at=now)
                    )
                    await self._finish(session, [task.id], TaskStatus.FAILED, error=failure.code)
                else:
                    later = failure.retry_at or now + _REFRESH_RETRY
                    await self._finish(
                        session, [task.id], TaskStatus.PENDING, run_at=later, error=failure.code
                    )
            log.warning("refreshing the token of %s failed: %s", channel_id, failure)
            return
        async with self.db.transaction() as session:
            await self._finish(session, [task.id], TaskStatus.DONE)
            enqueue_refresh(
                session,
                workspace_id=row.workspace_id,
                channel_id=channel_id,
                run_at=next_refresh(creds, now),
            )

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
                await self._finish(session, [task.id], TaskStatus.CANCELED)
                return
            channel = facts(target.channel)
            external_id, text = target.external_post_id, target.first_comment
            number = 1 + await _count_attempts(
                session, post.id, target.channel_id, PublishAttempt.operation == "comment"
            )
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
            comment_id = await platform.post_comment(self.context, channel, external_id, text)
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
                await self._finish(session, [task.id], TaskStatus.DONE)
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
                    session, [task.id], TaskStatus.PENDING, run_at=decision.at, error=failure.code
                )
            else:
                target.first_comment_status = "FAILED"
                await self._finish(session, [task.id], TaskStatus.FAILED, error=failure.code)


async def _lookup(
    platform: Platform,
    ctx: PlatformContext,
    prepared: Prepared,
    seconds: float,
    failure: PublishFailure | None,
) -> Outcome:
    """Ask the platform what an attempt whose answer was lost did.

    `failure` is the lost answer of the call just made (None when reconciling an attempt
    of a worker that died): if the post is not found, that failure stands.
    """
    try:
        async with asyncio.timeout(seconds):
            found = await platform.lookup(ctx, prepared.request)
    except LookupUnavailable as exc:
        return Outcome(prepared, failure, unknown_reason=str(exc))
    except Exception as exc:
        return Outcome(prepared, failure, lookup_error=_describe(exc))
    return Outcome(prepared, found or failure, looked_up=True)


def _describe(exc: BaseException) -> str:
    """An exception as an error message: its type, and its text when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _ensure_key(target: Target | TargetRow) -> str:
    """The target's idempotency key (stable across attempts), given to it if it has none."""
    key = target.idempotency_key or f"{target.post_id}:{target.channel_id}"
    target.idempotency_key = key
    return key


def _target_of(post: ScheduledPost | None, channel_id: str | None) -> Target | None:
    targets = post.targets if post is not None else []
    return next((t for t in targets if t.channel_id == channel_id), None)


async def _count_attempts(
    session: AsyncSession, post_id: str, channel_id: str, which: ColumnElement[bool]
) -> int:
    """How many ledger rows of one target match `which`."""
    count = await session.scalar(
        select(func.count())
        .select_from(PublishAttempt)
        .where(PublishAttempt.post_id == post_id, PublishAttempt.channel_id == channel_id, which)
    )
    return int(count or 0)


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
