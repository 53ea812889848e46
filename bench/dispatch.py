"""Benchmark of the publishing engine: N posts x T channels all due at the same instant.

Sets up a fresh database (SQLite in a temporary directory, or a throwaway PostgreSQL
database), a workspace, T sandbox channels answering after `--latency-ms`, and N posts
approved through the same service code the API uses. It then starts the engine as a user
would: `tidings serve` with its embedded worker (SQLite) or `--workers` separate
`tidings worker` processes (PostgreSQL), waits until they are up, and moves every post's
publish task and `scheduledFor` to one instant T0 a few seconds ahead, in one transaction
(as if all had been approved for that time).

From T0 it waits until every post has a final status, then reads the figures from the
database: the dispatch lag of each target is T0 -> the moment the sandbox network received
the publish call (its own `sandbox_posts.received_at`), so it includes claiming, fan-out and
preparing. Peak memory is the largest VmHWM of the engine processes.

    .venv/bin/python bench/dispatch.py --backend sqlite --posts 100 --channels 10
    .venv/bin/python bench/dispatch.py --backend sqlite --posts 1000 --channels 10
    .venv/bin/python bench/dispatch.py --backend postgresql --workers 3 --posts 100 --channels 10
    .venv/bin/python bench/dispatch.py --backend postgresql --workers 3 --posts 1000 --channels 10
"""

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from tidings.auth.principal import AuthMethod, Principal
from tidings.channels import service as channel_service
from tidings.db.engine import Database
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.sandbox.models import SandboxPost
from tidings.scheduled_posts import service as post_service
from tidings.scheduled_posts.lifecycle import Action, Actor, PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.scheduled_posts.schemas import ScheduledPostCreate
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get(
    "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FINAL = (PostStatus.PUBLISHED, PostStatus.PARTIALLY_PUBLISHED, PostStatus.FAILED)
LEAD = timedelta(seconds=3)


@dataclass
class Figures:
    targets: int
    started: int
    p50: float
    p99: float
    max: float
    final_s: float
    peak_mb: float

    def line(self) -> str:
        return (
            f"{self.targets} targets: lag p50 {self.p50 * 1000:.0f} ms, "
            f"p99 {self.p99 * 1000:.0f} ms, max {self.max * 1000:.0f} ms "
            f"(all {self.started} started within {self.max:.2f} s); "
            f"every post final after {self.final_s:.2f} s "
            f"({self.targets / self.final_s:.0f} targets/s); "
            f"peak memory {self.peak_mb:.0f} MB"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def psql(statement: str) -> None:
    subprocess.run(["psql", ADMIN_URL, "-qc", statement], check=True, capture_output=True)


async def populate(db: Database, posts: int, channels: int, latency_ms: int) -> int:
    """A workspace, its owner, `channels` sandbox channels and `posts` approved posts."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        workspace = await workspace_service.create_workspace(session, "Bench", now)
        user, _ = await workspace_service.add_member(
            session,
            workspace_id=workspace.id,
            email="owner@bench.example",
            password="bench-password",
            role=Role.OWNER,
            now=now,
        )
        channel_ids = []
        for n in range(channels):
            channel = await channel_service.add_channel(
                session,
                workspace_id=workspace.id,
                platform="sandbox",
                name=f"Bench {n}",
                options={"latency_ms": latency_ms},
                now=now,
            )
            channel_ids.append(channel.id)
    owner = Principal(workspace.id, Actor.OWNER, AuthMethod.SESSION, user_id=user.id)
    body = ScheduledPostCreate.model_validate(
        {
            "status": "WAITING_FOR_APPROVAL",
            "media": "https://cdn.example.com/bench.jpg",
            "mediaType": "IMAGE",
            "scheduledFor": (now + timedelta(days=1)).isoformat(),
            "channels": {c: {"caption": "Benchmark post"} for c in channel_ids},
        }
    )
    approve = post_service.ActionRequest(Action.APPROVE)
    for start in range(0, posts, 100):
        async with db.transaction() as session:
            for _ in range(min(100, posts - start)):
                post = await post_service.create_post(session, owner, body, now)
                await post_service.act(session, owner, post.id, approve, now)
    return posts * channels


async def retime(db: Database) -> datetime:
    """Make every publish task (and its post) due at one instant, LEAD from now."""
    t0 = datetime.now(UTC) + LEAD
    async with db.transaction() as session:
        await session.execute(
            update(Task).where(Task.kind == TaskKind.PUBLISH_POST).values(run_at=t0)
        )
        await session.execute(update(ScheduledPost).values(scheduled_for=t0))
    return t0


async def wait_for_workers(
    db: Database, count: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    from tidings.publishing.models import WorkerHeartbeat

    for _ in range(600):
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"an engine process exited with {process.returncode}")
        async with db.transaction(write=False) as session:
            alive = await session.scalar(select(func.count()).select_from(WorkerHeartbeat))
        if (alive or 0) >= count:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the engine processes did not start")


async def wait_until_final(db: Database, posts: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with db.transaction(write=False) as session:
            done = await session.scalar(
                select(func.count())
                .select_from(ScheduledPost)
                .where(ScheduledPost.status.in_(FINAL))
            )
        if done == posts:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"not every post was final after {within:.0f} s")


async def collect(db: Database, t0: datetime, targets: int) -> tuple[list[float], float]:
    async with db.transaction(write=False) as session:
        arrivals = (await session.execute(select(SandboxPost.received_at))).scalars()
        lags = [max(0.0, (a - t0).total_seconds()) for a in arrivals if a is not None]
        last = await session.scalar(select(func.max(ScheduledPost.updated_at)))
        unpublished = await session.scalar(
            select(func.count()).select_from(Target).where(Target.status != "PUBLISHED")
        )
        stuck = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.RUNNING]))
        )
    if unpublished or stuck or len(lags) != targets:
        raise SystemExit(
            f"not all published: {unpublished} targets unpublished, {stuck} tasks left, "
            f"{len(lags)} of {targets} calls received"
        )
    assert last is not None
    return lags, (last - t0).total_seconds()


def peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def measure(args: argparse.Namespace, url: str, env: dict[str, str]) -> Figures:
    db = Database.connect(url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        targets = await populate(db, args.posts, args.channels, args.latency_ms)
        if args.batch_size:
            env = {**env, "TIDINGS_WORKER_BATCH_SIZE": str(args.batch_size)}
        if args.backend == "sqlite":
            command = [str(BIN / "tidings"), "serve", "--port", str(free_port())]
            env = {**env, "TIDINGS_WORKER_CONCURRENCY": str(args.concurrency)}
            processes.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))  # noqa: ASYNC220
        else:
            command = [str(BIN / "tidings"), "worker", "--concurrency", str(args.concurrency)]
            for _ in range(args.workers):
                processes.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))  # noqa: ASYNC220
        await wait_for_workers(db, len(processes), processes)
        t0 = await retime(db)
        await wait_until_final(db, args.posts, args.timeout)
        peak = max(peak_mb(p.pid) for p in processes)
        lags, final_s = await collect(db, t0, targets)
        return Figures(
            targets=targets,
            started=len(lags),
            p50=percentile(lags, 0.50),
            p99=percentile(lags, 0.99),
            max=max(lags),
            final_s=final_s,
            peak_mb=peak,
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=3, help="PostgreSQL: worker processes")
    parser.add_argument("--concurrency", type=int, default=256, help="tasks per worker at once")
    parser.add_argument("--batch-size", type=int, default=0, help="TIDINGS_WORKER_BATCH_SIZE")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tidings-dispatch-"))
    env = {**os.environ, "TIDINGS_DATA_DIR": str(workdir)}
    db_name = None
    if args.backend == "postgresql":
        db_name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
        psql(f'CREATE DATABASE "{db_name}"')
        env["TIDINGS_DATABASE_URL"] = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
        # A shared database needs a key every process knows (none is generated for it).
        env["TIDINGS_SECRET_KEY"] = secrets.token_urlsafe(48)
    url = env.get("TIDINGS_DATABASE_URL") or f"sqlite:///{workdir / 'tidings.db'}"
    try:
        subprocess.run([str(BIN / "tidings"), "migrate"], env=env, check=True, capture_output=True)
        figures = asyncio.run(measure(args, url, env))
        engine = "embedded worker" if args.backend == "sqlite" else f"{args.workers} workers"
        print(
            f"{args.backend} ({engine}, concurrency {args.concurrency}, "
            f"{args.posts} posts x {args.channels} channels, latency {args.latency_ms} ms): "
            + figures.line()
        )
    finally:
        if db_name:
            psql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
