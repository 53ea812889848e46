"""Group commit (`Database.grouped`) and bulk writes (`write_changes`, post rows), on both
databases."""

import asyncio
from collections.abc import Awaitable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.world import World
from tidings.db.bulk import write_changes
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.publishing.states import TargetStatus
from tidings.sandbox import service as network
from tidings.sandbox.models import SandboxCall, SandboxPost
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.scheduled_posts.rows import load_rows, write_rows
from tidings.timefmt import utcnow


async def test_concurrent_grouped_writes_all_commit_in_order(world: World) -> None:
    db, channel = world.db, world.channel_id
    counts = await asyncio.gather(
        *(network.count_call(db, channel, f"k{n % 5}", "publish", utcnow()) for n in range(60))
    )
    # Five keys called twelve times each: every call saw its own number, none lost.
    assert sorted(counts) == sorted(list(range(1, 13)) * 5)
    async with db.transaction(write=False) as session:
        rows = (await session.execute(select(SandboxCall.key, SandboxCall.count))).all()
    stored = {key: count for key, count in rows}
    assert stored == {f"k{n}": 12 for n in range(5)}


async def test_one_failing_operation_fails_only_its_caller(world: World) -> None:
    db, channel = world.db, world.channel_id

    async def broken(session: AsyncSession) -> None:
        raise RuntimeError("this one is wrong")

    def accept(key: str, caption: str) -> Awaitable[network.Accepted]:
        return network.accept_post(
            db,
            channel_id=channel,
            idempotency_key=key,
            post_type="POST",
            caption=caption,
            media=[],
            media_type=None,
            now=utcnow(),
        )

    results = await asyncio.gather(
        accept("a", "first"),
        db.grouped(broken),
        accept("b", "second"),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    async with db.transaction(write=False) as session:
        captions = set((await session.execute(select(SandboxPost.caption))).scalars())
    assert captions == {"first", "second"}


async def test_a_caller_that_stops_waiting_does_not_undo_the_write(world: World) -> None:
    db, channel = world.db, world.channel_id
    write = asyncio.create_task(network.count_call(db, channel, "gone", "publish", utcnow()))
    await asyncio.sleep(0)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    for _ in range(100):
        async with db.transaction(write=False) as session:
            if await session.scalar(select(func.count()).select_from(SandboxCall)):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the write was lost when its caller stopped waiting")


async def test_write_changes_inserts_and_updates_in_bulk(world: World) -> None:
    r = await world.api().post("/scheduled-posts", json=world.post_body())
    assert r.status_code == 201
    post_id = r.json()["id"]
    now = utcnow()
    async with world.db.transaction() as session:
        post = await session.get(ScheduledPost, post_id)
        assert post is not None
        post.notes = "changed in bulk"
        post.touch(now)
        revision = post.revision
        session.add(
            Task(
                id="task_bulk",
                workspace_id=world.workspace_id,
                kind=TaskKind.PUBLISH_POST,
                post_id=post_id,
                run_at=now,
                status=TaskStatus.PENDING,
            )
        )
        await write_changes(session)
        assert not session.sync_session.identity_map  # nothing left for the commit to flush
    async with world.db.transaction(write=False) as session:
        stored = await session.get(ScheduledPost, post_id)
        task = await session.get(Task, "task_bulk")
    assert stored is not None
    assert (stored.notes, stored.revision) == ("changed in bulk", revision)
    assert task is not None
    assert (task.attempts, task.payload, task.status) == (0, {}, TaskStatus.PENDING)


async def test_post_rows_load_with_targets_and_write_back_only_what_changed(world: World) -> None:
    second = await world.add_channel("Second", latency_ms=5)
    body = world.post_body(
        channels={second: {"caption": "two"}, world.channel_id: {"caption": "one"}}
    )
    r = await world.api().post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    async with world.db.transaction() as session:
        rows = await load_rows(session, [post_id, "post_missing"], lock=not world.db.is_sqlite)
        assert list(rows) == [post_id]
        post = rows[post_id]
        assert [t.caption for t in post.targets] == ["two", "one"]  # in position order
        assert post.targets[0].channel.options == {"latency_ms": 5}
        changed = post.targets[1]
        changed.status, changed.attempt_count, changed.changed = TargetStatus.PUBLISHING, 1, True
        post.targets[0].status = TargetStatus.FAILED  # not marked changed: not written
        post.status = PostStatus.PUBLISHING
        post.touch(utcnow())
        await write_rows(session, rows.values())
    async with world.db.transaction(write=False) as session:
        stored = await session.get(ScheduledPost, post_id)
        assert stored is not None
        assert (stored.status, stored.revision) == (PostStatus.PUBLISHING, post.revision)
        targets = (
            await session.execute(
                select(
                    Target.channel_id, Target.caption, Target.status, Target.attempt_count
                ).where(Target.post_id == post_id)
            )
        ).all()
    assert set(targets) == {
        (second, "two", None, 0),
        (world.channel_id, "one", TargetStatus.PUBLISHING, 1),
    }
