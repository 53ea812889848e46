"""Chaos on PostgreSQL: workers killed with SIGKILL mid-publish never lose or double a post.

Three `tidings worker` processes share one PostgreSQL database and publish more than 2,000
targets, created, submitted and released through the real API, some of them while the
workers run. Every sandbox channel loses the answer of the call that publishes
(`accept_then_timeout`), most answer slowly so that kills land mid-call, and one refuses a
first call as well (a retry). Every 3 to 6 s, one of the workers that are working, chosen at
random, is killed with `kill -9` and a new one is started at once (a kill waits until two
are working), until all the work is done; the last posts are released only after the
eighth kill, so the work cannot be over before the chaos has been real.

The test then reads the sandbox network's own record (`sandbox_posts`), not the engine's
opinion of itself: exactly one post per target (same channel, same idempotency key), every
target PUBLISHED with the id of that very post, every post PUBLISHED, no task left pending
or running. None lost, none duplicated. It also shows the chaos was real: how many workers
were killed holding how many running tasks, and how many lost answers and orphaned calls
were settled by looking them up on the network.

The random choices (when and which worker dies, when posts are released) come from one seed,
printed with each run; set TIDINGS_CHAOS_SEED to reuse one.
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import and_, func, select

import tidings
from tests.conftest import TEST_SECRET_KEY, _empty_postgres
from tests.world import World
from tidings.db.engine import Database
from tidings.publishing.models import (
    AttemptOutcome,
    PublishAttempt,
    Task,
    TaskStatus,
    WorkerHeartbeat,
)
from tidings.publishing.states import TargetStatus
from tidings.sandbox.models import SandboxCall, SandboxPost
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target

pytestmark = pytest.mark.slow

SEED_ENV = "TIDINGS_CHAOS_SEED"
WORKERS = 3
CONCURRENCY = 16
LEASE_SECONDS = 4
CALL_TIMEOUT_SECONDS = 2
# Every channel loses the answer of the call that publishes; the slow ones make kills land
# mid-call; the last one refuses its first call (503), so the answer it loses is call 2's.
CHANNELS: list[dict[str, int]] = [
    {"accept_then_timeout": 1},
    {"accept_then_timeout": 1},
    {"accept_then_timeout": 1},
    {"accept_then_timeout": 1, "latency_ms": 20},
    {"accept_then_timeout": 1, "latency_ms": 50},
    {"accept_then_timeout": 1, "latency_ms": 80},
    {"accept_then_timeout": 1, "latency_ms": 120},
    {"accept_then_timeout": 1, "latency_ms": 160},
    {"accept_then_timeout": 1, "latency_ms": 200},
    {"fail_first": 1, "accept_then_timeout": 2, "latency_ms": 50},
]
POSTS = 205  # each to all 10 channels: 2,050 targets
RELEASED_BEFORE_START = 80  # published now before any worker runs: a backlog at once
CREATE_BATCH = 15
RELEASE_BATCH = 10
# Seconds between two kills. A new worker takes seconds to start (imports, migration check)
# on a busy 2-core machine: killing much faster would leave hardly any worker working.
KILL_EVERY = (3.0, 6.0)
MIN_KILLS = 8
HELD_BACK_POSTS = 20  # released only after MIN_KILLS kills (see feed_posts)
POLL_SECONDS = 0.25
DEADLINE_SECONDS = 240.0
STOP_SECONDS = 20.0
FINAL_POST = frozenset({PostStatus.PUBLISHED, PostStatus.PARTIALLY_PUBLISHED, PostStatus.FAILED})
OPEN_TASK = (TaskStatus.PENDING, TaskStatus.RUNNING)


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: this test is about several processes sharing one database."""
    _empty_postgres(postgres_url)
    return postgres_url


# --- worker processes ----------------------------------------------------------------------


@dataclass
class WorkerProcess:
    number: int
    process: "subprocess.Popen[bytes]"
    log: Path
    spawned: float = field(default_factory=time.monotonic)
    startup: float | None = None  # seconds from spawn to its first heartbeat, once seen

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Fleet:
    """The worker processes; every one ever started is kept, with its log."""

    database_url: str
    logs: Path
    started: list[WorkerProcess] = field(default_factory=list)
    running: list[WorkerProcess] = field(default_factory=list)
    killed: list[WorkerProcess] = field(default_factory=list)
    crashed: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        # The workers run the very code this test imported.
        source = str(Path(tidings.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
        env.update(
            {
                "TIDINGS_DATABASE_URL": self.database_url,
                "TIDINGS_SECRET_KEY": TEST_SECRET_KEY,
                "TIDINGS_DATA_DIR": str(self.logs / "data"),
                "TIDINGS_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
                "TIDINGS_WORKER_CALL_TIMEOUT_SECONDS": str(CALL_TIMEOUT_SECONDS),
            }
        )
        return env

    def start(self) -> WorkerProcess:
        number = len(self.started) + 1
        log = self.logs / f"worker-{number:03d}.log"
        command = [sys.executable, "-m", "tidings.cli", "worker", "--concurrency", str(CONCURRENCY)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env()
            )
        worker = WorkerProcess(number, process, log)
        self.started.append(worker)
        self.running.append(worker)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        self.running.remove(worker)
        self.killed.append(worker)

    def reap_crashed(self) -> list[WorkerProcess]:
        """Workers that exited without being killed (each one fails the test)."""
        gone = [w for w in self.running if not w.alive()]
        for worker in gone:
            self.running.remove(worker)
            self.crashed.append(worker)
        return gone

    def stop(self) -> list[tuple[WorkerProcess, int | None]]:
        """SIGTERM to every running worker, then wait; exit codes (None: had to be killed)."""
        for worker in self.running:
            worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        codes: list[tuple[WorkerProcess, int | None]] = []
        for worker in self.running:
            try:
                code: int | None = worker.process.wait(
                    timeout=max(0.1, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                code = None
                worker.process.kill()
                worker.process.wait()
            codes.append((worker, code))
        self.running.clear()
        return codes

    def kill_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.process.kill()
                worker.process.wait()

    def report(self, lines: int = 40) -> str:
        """Log tails worth reading: crashed workers, any with an error, the last ones."""
        chosen = {w.number: w for w in self.crashed + self.started[-WORKERS:]}
        for worker in self.started:
            text = worker.log.read_text(errors="replace")
            if "Traceback" in text or "ERROR" in text or "error" in text:
                chosen.setdefault(worker.number, worker)
        parts = [f"worker logs in {self.logs}"]
        for number in sorted(chosen)[:12]:
            worker = chosen[number]
            parts.append(f"--- worker {number} (pid {worker.pid}) ---\n{worker.tail(lines)}")
        return "\n".join(parts)


# --- the API side --------------------------------------------------------------------------


def instant(seconds_ahead: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds_ahead)
    return when.isoformat().replace("+00:00", "Z")


async def create_posts(world: World, channels: list[str]) -> list[str]:
    """POSTS posts waiting for approval, each to every channel, through the API."""
    api = world.api()

    async def one(number: int) -> str:
        body = world.post_body(
            status="WAITING_FOR_APPROVAL",
            channels={c: {"caption": f"chaos {number} on {i}"} for i, c in enumerate(channels)},
        )
        r = await api.post("/scheduled-posts", json=body)
        assert r.status_code == 201, r.text
        post_id: str = r.json()["id"]
        return post_id

    ids: list[str] = []
    for start in range(0, POSTS, CREATE_BATCH):
        batch = range(start, min(POSTS, start + CREATE_BATCH))
        ids.extend(await asyncio.gather(*(one(n) for n in batch)))
    return ids


async def publish_now(reviewer: httpx.AsyncClient, post_ids: Sequence[str]) -> None:
    answers = await asyncio.gather(
        *(reviewer.post(f"/scheduled-posts/{p}/publish") for p in post_ids)
    )
    for r in answers:
        assert r.status_code == 200, r.text


async def release(reviewer: httpx.AsyncClient, post_id: str, rng: random.Random) -> None:
    """A reviewer publishes the post now, or approves it for a few seconds from now."""
    if rng.random() < 0.5:
        r = await reviewer.post(f"/scheduled-posts/{post_id}/publish")
    else:
        body = {"scheduledFor": instant(rng.uniform(1.0, 20.0))}
        r = await reviewer.post(f"/scheduled-posts/{post_id}/approve", json=body)
    assert r.status_code == 200, r.text


async def feed_posts(
    reviewer: httpx.AsyncClient,
    post_ids: list[str],
    rng: random.Random,
    enough_kills: asyncio.Event,
) -> None:
    """Release posts in batches while the workers run and die: work keeps arriving.

    The last ones wait for MIN_KILLS kills, so however fast the workers are, the work
    cannot be over before the chaos has been real; the killing goes on after that.
    """
    held_back = len(post_ids) - HELD_BACK_POSTS
    for start in range(0, len(post_ids), RELEASE_BATCH):
        if start >= held_back:
            await enough_kills.wait()
        batch = post_ids[start : start + RELEASE_BATCH]
        await asyncio.gather(*(release(reviewer, p, rng) for p in batch))
        await asyncio.sleep(rng.uniform(0.2, 0.8))


# --- reading the database ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    final_posts: int
    open_tasks: int
    targets: dict[str, int]

    def line(self) -> str:
        return (
            f"final posts {self.final_posts}/{POSTS}, open tasks {self.open_tasks}, "
            f"targets {dict(sorted(self.targets.items()))}"
        )


async def progress(db: Database) -> Progress:
    async with db.transaction(write=False) as session:
        final = await session.scalar(
            select(func.count())
            .select_from(ScheduledPost)
            .where(ScheduledPost.status.in_(FINAL_POST))
        )
        open_tasks = await session.scalar(
            select(func.count()).select_from(Task).where(Task.status.in_(OPEN_TASK))
        )
        rows = await session.execute(select(Target.status, func.count()).group_by(Target.status))
        targets = {str(s.value if s is not None else None): int(n) for s, n in rows.all()}
    return Progress(int(final or 0), int(open_tasks or 0), targets)


def pid_of(worker_name: str) -> int | None:
    """A worker's name is host:pid:suffix."""
    parts = worker_name.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


async def working_pids(db: Database) -> set[int]:
    """Workers that have reached their loop: they have a heartbeat."""
    async with db.transaction(write=False) as session:
        names = (await session.execute(select(WorkerHeartbeat.name))).scalars().all()
    return {pid for pid in map(pid_of, names) if pid is not None}


async def tasks_held_by(db: Database, pid: int) -> int:
    """Running tasks a (dead) worker holds: they come back only when its lease runs out."""
    async with db.transaction(write=False) as session:
        held = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.status == TaskStatus.RUNNING, Task.locked_by.like(f"%:{pid}:%"))
        )
    return int(held or 0)


# --- chaos ---------------------------------------------------------------------------------


@dataclass
class Chaos:
    seconds: float = 0.0
    held_at_kill: list[int] = field(default_factory=list)
    final: Progress | None = None
    timed_out: bool = False


async def run_chaos(
    world: World,
    fleet: Fleet,
    feeder: "asyncio.Task[None]",
    enough_kills: asyncio.Event,
    rng: random.Random,
) -> Chaos:
    """Kill a working worker and start another, again and again, until the work is done.

    Kills come every KILL_EVERY seconds, each once at least two workers are working (a kill
    then leaves one at work): on a busy machine a new worker needs seconds to reach its
    loop, and killing faster than that would soon leave none working at all.
    """
    chaos = Chaos()
    loop = asyncio.get_running_loop()
    begun = last_report = loop.time()
    next_kill = begun + rng.uniform(*KILL_EVERY)
    while True:
        if feeder.done():
            await feeder  # re-raise a refused request
        current = await progress(world.db)
        chaos.final = current
        if feeder.done() and (current.final_posts == POSTS or current.open_tasks == 0):
            break
        if loop.time() - begun > DEADLINE_SECONDS:
            chaos.timed_out = True
            print(f"deadline of {DEADLINE_SECONDS:.0f} s passed with work left")
            break
        for worker in fleet.reap_crashed():
            print(f"worker {worker.number} exited by itself ({worker.process.returncode})")
            fleet.start()
        working = await working_pids(world.db)
        for worker in fleet.running:
            if worker.startup is None and worker.pid in working:
                worker.startup = time.monotonic() - worker.spawned
        candidates = [w for w in fleet.running if w.startup is not None]
        if loop.time() >= next_kill and len(candidates) >= 2:
            victim = rng.choice(candidates)
            fleet.kill(victim)
            chaos.held_at_kill.append(await tasks_held_by(world.db, victim.pid))
            fleet.start()
            next_kill = loop.time() + rng.uniform(*KILL_EVERY)
            if len(fleet.killed) >= MIN_KILLS:
                enough_kills.set()
        if loop.time() - last_report >= 10:
            print(f"{loop.time() - begun:5.1f} s: {current.line()}")
            last_report = loop.time()
        await asyncio.sleep(POLL_SECONDS)
    chaos.seconds = loop.time() - begun
    return chaos


# --- the test ------------------------------------------------------------------------------


async def test_killed_workers_never_lose_or_double_a_post(
    world: World, database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed} (rerun with {SEED_ENV}={seed})")
    kills_rng, feeder_rng = random.Random(seed), random.Random(seed + 1)
    begun = time.monotonic()

    channels = [
        await world.add_channel(f"Chaos {i}", **options) for i, options in enumerate(CHANNELS)
    ]
    post_ids = await create_posts(world, channels)
    targets = len(post_ids) * len(channels)
    assert targets >= 2_000
    reviewer = await world.person("reviewer")
    await publish_now(reviewer, post_ids[:RELEASED_BEFORE_START])
    print(f"{targets} targets on {len(post_ids)} posts created in {time.monotonic() - begun:.1f} s")

    logs = tmp_path / "workers"
    logs.mkdir()
    fleet = Fleet(database_url, logs)
    later = post_ids[RELEASED_BEFORE_START:]
    enough_kills = asyncio.Event()
    feeder = asyncio.create_task(feed_posts(reviewer, later, feeder_rng, enough_kills))
    try:
        for _ in range(WORKERS):
            fleet.start()
        chaos = await run_chaos(world, fleet, feeder, enough_kills, kills_rng)
        stopped = await asyncio.to_thread(fleet.stop)
    except BaseException:
        print(fleet.report())
        raise
    finally:
        feeder.cancel()
        fleet.kill_all()

    killed_pids = {w.pid for w in fleet.killed}
    figures = await read_figures(world.db, killed_pids)
    print(
        f"chaos ran {chaos.seconds:.1f} s (whole test {time.monotonic() - begun:.1f} s): "
        f"{len(fleet.started)} workers started, {len(fleet.killed)} killed with SIGKILL "
        f"holding {sum(chaos.held_at_kill)} running tasks between them {chaos.held_at_kill}"
    )
    startups = sorted(w.startup for w in fleet.started if w.startup is not None)
    if startups:
        print(
            f"worker start-up to first heartbeat: median {startups[len(startups) // 2]:.1f} s, "
            f"max {startups[-1]:.1f} s"
        )
    assert chaos.final is not None
    print(f"final: {chaos.final.line()}")
    for name, value in figures.items():
        print(f"  {name}: {value}")

    try:
        await check_exactly_once(world.db, targets)
        assert not chaos.timed_out
        crashed = [(w.number, w.process.returncode) for w in fleet.crashed]
        assert crashed == [], f"workers that exited by themselves (number, code): {crashed}"
        # A worker stopped before it installed its signal handlers dies of the signal; one
        # that had begun working must stop cleanly.
        unclean = [
            (w.number, code)
            for w, code in stopped
            if code != 0 and not (code == -signal.SIGTERM and w.startup is None)
        ]
        assert unclean == [], f"workers that did not stop cleanly (number, code): {unclean}"
        assert len(fleet.killed) >= MIN_KILLS, f"only {len(fleet.killed)} kills: no real chaos"
        assert sum(chaos.held_at_kill) > 0, "no kill interrupted a running task"
        assert figures["takeover lookups (target found PUBLISHING)"] > 0
        assert figures["attempts RECONCILED (found on the sandbox by key)"] > 0
    except AssertionError:
        print(fleet.report())
        raise


async def read_figures(db: Database, killed_pids: set[int]) -> dict[str, Any]:
    """What happened, from the engine's ledger and the sandbox's call counts."""
    async with db.transaction(write=False) as session:
        attempts = (
            await session.execute(
                select(
                    PublishAttempt.post_id,
                    PublishAttempt.channel_id,
                    PublishAttempt.operation,
                    PublishAttempt.outcome,
                    PublishAttempt.worker,
                    PublishAttempt.request_id,
                ).order_by(
                    PublishAttempt.post_id, PublishAttempt.channel_id, PublishAttempt.started_at
                )
            )
        ).all()
        calls = await session.execute(
            select(SandboxCall.count, func.count())
            .where(SandboxCall.operation == "publish")
            .group_by(SandboxCall.count)
        )
        calls_per_key = {int(c): int(n) for c, n in sorted(calls.all())}
        max_attempts = await session.scalar(select(func.max(Target.attempt_count)))

    by_kind: dict[str, int] = {}
    lookups = from_live = lost_found = reconciled = 0
    previous: Any = None
    for row in attempts:
        kind = f"{row.operation}/{row.outcome.value}"
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if row.operation == "lookup":
            lookups += 1
            # The attempt this lookup settles was started by a worker that was not killed:
            # that worker lost its lease while alive.
            same = previous is not None and (previous.post_id, previous.channel_id) == (
                row.post_id,
                row.channel_id,
            )
            if same and pid_of(previous.worker) not in killed_pids:
                from_live += 1
        if row.outcome is AttemptOutcome.RECONCILED:
            reconciled += 1
        # A lost answer found again by the call's own lookup, when it is not recorded as
        # RECONCILED, shows as PUBLISHED with no request id (the lookup has none).
        if (
            row.operation == "publish"
            and row.outcome is AttemptOutcome.PUBLISHED
            and row.request_id is None
        ):
            lost_found += 1
        previous = row
    return {
        "attempts by operation/outcome": dict(sorted(by_kind.items())),
        "takeover lookups (target found PUBLISHING)": lookups,
        "of which settle an attempt of a worker never killed": from_live,
        "attempts RECONCILED (found on the sandbox by key)": reconciled,
        "publish attempts PUBLISHED without a request id": lost_found,
        "sandbox publish calls per key (calls: keys)": calls_per_key,
        "highest target attempt_count": max_attempts,
    }


async def check_exactly_once(db: Database, targets: int) -> None:
    """The sandbox's record against the engine's: one post per target, and it is that one."""
    async with db.transaction(write=False) as session:
        doubled = (
            await session.execute(
                select(SandboxPost.channel_id, SandboxPost.idempotency_key, func.count())
                .group_by(SandboxPost.channel_id, SandboxPost.idempotency_key)
                .having(func.count() > 1)
            )
        ).all()
        doubled_attempts = []
        for channel_id, key, _ in doubled[:5]:
            post_id = str(key).split(":")[0]
            found = await session.execute(
                select(
                    PublishAttempt.operation,
                    PublishAttempt.number,
                    PublishAttempt.outcome,
                    PublishAttempt.error_code,
                    PublishAttempt.worker,
                    PublishAttempt.started_at,
                    PublishAttempt.ended_at,
                )
                .where(PublishAttempt.post_id == post_id, PublishAttempt.channel_id == channel_id)
                .order_by(PublishAttempt.started_at)
            )
            doubled_attempts.append((key, found.all()))
        sandbox_rows = await session.scalar(select(func.count()).select_from(SandboxPost))
        rows = (
            await session.execute(
                select(
                    Target.post_id,
                    Target.channel_id,
                    Target.status,
                    Target.idempotency_key,
                    Target.external_post_id,
                    Target.attempt_count,
                    Target.error_code,
                    SandboxPost.id.label("sandbox_id"),
                )
                .outerjoin(
                    SandboxPost,
                    and_(
                        SandboxPost.channel_id == Target.channel_id,
                        SandboxPost.idempotency_key == Target.idempotency_key,
                    ),
                )
                .order_by(Target.post_id, Target.channel_id)
            )
        ).all()
        posts = (
            await session.execute(
                select(ScheduledPost.status, func.count()).group_by(ScheduledPost.status)
            )
        ).all()
        open_tasks = (
            await session.execute(
                select(Task.id, Task.kind, Task.status, Task.post_id, Task.locked_by)
                .where(Task.status.in_(OPEN_TASK))
                .limit(20)
            )
        ).all()

    assert doubled == [], (
        f"{len(doubled)} targets published more than once (channel, key, times): "
        f"{doubled[:20]}; their attempts: {doubled_attempts}"
    )
    assert len(rows) == targets
    lost = [r for r in rows if r.sandbox_id is None]
    assert lost == [], f"{len(lost)} targets have no post on the sandbox: {lost[:20]}"
    assert sandbox_rows == targets, f"{sandbox_rows} sandbox posts for {targets} targets"
    not_published = [r for r in rows if r.status is not TargetStatus.PUBLISHED]
    assert not_published == [], f"{len(not_published)} targets not PUBLISHED: {not_published[:20]}"
    mismatched = [r for r in rows if r.external_post_id != r.sandbox_id]
    assert mismatched == [], f"external ids differ from the sandbox's: {mismatched[:20]}"
    assert {status: int(n) for status, n in posts} == {PostStatus.PUBLISHED: POSTS}
    assert open_tasks == [], f"tasks left open: {open_tasks}"
