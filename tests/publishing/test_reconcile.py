"""Reconciliation when asking the platform fails, and the ledger after a worker's death,
on both databases."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from tests.publishing.test_engine import FAST, document, feed, publish_now, worker
from tests.world import World
from tidings.publishing.models import AttemptOutcome, PublishAttempt, Task
from tidings.publishing.states import RetryPolicy
from tidings.publishing.worker import EngineConfig


async def ledger(world: World, post_id: str) -> list[tuple[str, str, str | None]]:
    async with world.db.transaction(write=False) as session:
        rows = (
            await session.execute(
                select(PublishAttempt)
                .where(PublishAttempt.post_id == post_id)
                .order_by(PublishAttempt.started_at, PublishAttempt.id)
            )
        ).scalars()
        return [(a.operation, a.outcome.value, a.error_code) for a in rows]


async def test_a_failed_lookup_is_asked_again_not_posted_again(world: World) -> None:
    shaky = await world.add_channel("Shaky", accept_then_timeout=1, lookup_fail_first=2)
    post_id = await publish_now(world, {shaky: {"caption": "asked three times"}})
    await worker(world).run_until_idle()
    [live] = await feed(world, shaky)
    doc = await document(world, post_id)
    assert doc["status"] == "PUBLISHED"
    assert doc["mediumsData"][shaky]["externalPostId"] == live["id"]
    assert doc["mediumsData"][shaky]["attemptCount"] == 1  # one publish call, ever
    assert await ledger(world, post_id) == [
        ("publish", "FAILED", "LOOKUP_FAILED"),
        ("lookup", "FAILED", "LOOKUP_FAILED"),
        ("lookup", "RECONCILED", None),
    ]


async def test_a_lookup_that_keeps_failing_ends_unknown(world: World) -> None:
    mute = await world.add_channel("Mute", accept_then_timeout=1, lookup_fail_first=99)
    post_id = await publish_now(world, {mute: {"caption": "cannot tell"}})
    config = EngineConfig(retry=RetryPolicy(**{**FAST.retry.__dict__, "max_attempts": 3}))
    await worker(world, config=config).run_until_idle()
    assert len(await feed(world, mute)) == 1  # it went out once and was never re-sent
    medium = (await document(world, post_id))["mediumsData"][mute]
    assert medium["status"] == "UNKNOWN"
    assert "asking it failed 3 times" in medium["errorMessage"]
    assert [row[2] for row in await ledger(world, post_id)] == ["LOOKUP_FAILED"] * 3


async def test_the_attempt_of_a_dead_worker_is_marked_abandoned(world: World) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "orphan"}})
    dying = worker(world, name="w-dies")
    [prepared] = (await dying._dispatch(10)).calls  # prepared, then the process "dies"
    async with world.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.id == prepared.task.id)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    await worker(world, name="w-next").run_until_idle()
    # Nothing had gone out: the lookup finds nothing and the post is published once.
    assert len(await feed(world, world.channel_id)) == 1
    assert (await document(world, post_id))["status"] == "PUBLISHED"
    outcomes = [(op, outcome) for op, outcome, _ in await ledger(world, post_id)]
    assert outcomes == [
        ("publish", AttemptOutcome.ABANDONED.value),
        ("lookup", "FAILED"),  # not found: it never went out
        ("publish", "PUBLISHED"),
    ]


async def test_a_live_worker_keeps_its_lease_through_a_long_call(world: World) -> None:
    """The lease (1 s here) is shorter than the call (2 s): the worker's beats renew it, so a
    second worker does not take the task over and publish it again mid-call."""
    slow = await world.add_channel("Slow", latency_ms=2000)
    post_id = await publish_now(world, {slow: {"caption": "only once"}})
    config = EngineConfig(
        retry=FAST.retry,
        lease=timedelta(seconds=1),
        call_timeout=timedelta(seconds=5),
        poll_interval=timedelta(milliseconds=50),
    )
    first = worker(world, name="w-first", config=config)
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    try:
        for _ in range(200):
            if await ledger(world, post_id):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)  # past the first lease, with the call still under way
        await worker(world, name="w-second", config=config).run_until_idle(within=1)
        for _ in range(300):
            if (await document(world, post_id))["status"] == "PUBLISHED":
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    assert len(await feed(world, slow)) == 1
    assert await ledger(world, post_id) == [("publish", "PUBLISHED", None)]
