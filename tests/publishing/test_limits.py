"""Concurrency limits per channel (`max_concurrency`) and per platform, on both databases.

The sandbox keeps, for every post, when the call arrived (`receivedAt`) and when it was
stored (`publishedAt`, after its latency): with a limit of one, no two calls to the limited
channels may overlap; without, they do (which shows the check can fail).
"""

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.publishing.test_engine import FAST, document, feed, publish_now, worker
from tests.world import World
from tidings.publishing.limits import Limits, channel_limit
from tidings.publishing.models import PublishAttempt
from tidings.publishing.worker import EngineConfig


def intervals(posts: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return sorted(
        (datetime.fromisoformat(p["receivedAt"]), datetime.fromisoformat(p["publishedAt"]))
        for p in posts
    )


def overlapping(spans: list[tuple[datetime, datetime]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


async def publish_several(world: World, channels: list[str], posts: int) -> list[str]:
    return [
        await publish_now(world, {c: {"caption": f"post {n}"} for c in channels})
        for n in range(posts)
    ]


async def test_a_channel_limit_keeps_its_calls_one_at_a_time(world: World) -> None:
    limited = await world.add_channel("One at a time", latency_ms=60, max_concurrency=1)
    free = await world.add_channel("Free", latency_ms=60)
    post_ids = await publish_several(world, [limited, free], 4)
    await worker(world, concurrency=16).run_until_idle()
    for post_id in post_ids:
        assert (await document(world, post_id))["status"] == "PUBLISHED"
    assert not overlapping(intervals(await feed(world, limited)))
    assert overlapping(intervals(await feed(world, free)))


async def test_a_platform_limit_bounds_all_its_channels_together(world: World) -> None:
    first = await world.add_channel("First", latency_ms=60)
    second = await world.add_channel("Second", latency_ms=60)
    post_ids = await publish_several(world, [first, second], 3)
    config = EngineConfig(retry=FAST.retry, platform_limits={"sandbox": 1})
    await worker(world, config=config, concurrency=16).run_until_idle()
    for post_id in post_ids:
        assert (await document(world, post_id))["status"] == "PUBLISHED"
    both = intervals(await feed(world, first) + await feed(world, second))
    assert len(both) == 6
    assert not overlapping(both)


async def test_limits_do_not_hold_up_other_channels(world: World) -> None:
    """A channel at its limit is left out of the next claim, so a worker whose claims are
    small (here two at a time) still reaches the other channels' work behind it."""
    slow = await world.add_channel("Slow", latency_ms=1500, max_concurrency=1)
    quick = await world.add_channel("Quick")
    await publish_several(world, [slow], 2)
    config = EngineConfig(retry=FAST.retry, poll_interval=timedelta(milliseconds=20))
    w = worker(world, config=config, concurrency=2)
    stop = asyncio.Event()
    running = asyncio.create_task(w.run(stop))
    try:
        for _ in range(500):  # the first slow call is under way, the other waits
            if await feed(world, slow) or await calls_received(world, slow):
                break
            await asyncio.sleep(0.01)
        quick_post = await publish_now(world, {quick: {"caption": "not held up"}})
        for _ in range(500):
            if len(await feed(world, slow)) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    [live] = await feed(world, quick)
    slow_arrivals = sorted(datetime.fromisoformat(p["receivedAt"]) for p in await feed(world, slow))
    assert len(slow_arrivals) == 2
    assert datetime.fromisoformat(live["receivedAt"]) < slow_arrivals[1]
    assert (await document(world, quick_post))["status"] == "PUBLISHED"


async def calls_received(world: World, channel_id: str) -> int:
    async with world.db.transaction(write=False) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PublishAttempt)
            .where(PublishAttempt.channel_id == channel_id)
        )
    return int(count or 0)


def test_channel_limit_reads_positive_whole_numbers_only() -> None:
    assert channel_limit({"max_concurrency": 3}) == 3
    assert channel_limit({"max_concurrency": "2"}) == 2
    for bad in (0, -1, "x", None, 1.5, "1.5"):
        assert channel_limit({"max_concurrency": bad}) is None
    assert channel_limit({}) is None


def test_limits_count_calls_per_channel_and_platform() -> None:
    limits = Limits({"sandbox": 3})
    limits.learn("a", "sandbox", {"max_concurrency": 2})
    limits.learn("b", "sandbox", {})
    limits.learn("c", "other", {})
    limits.take("a")
    limits.take("a")
    assert not limits.has_room("a")
    assert limits.saturated() == ["a"]
    assert limits.has_room("b")
    limits.take("b")
    assert not limits.has_room("b")  # the platform's three are in use
    assert set(limits.saturated()) == {"a", "b"}
    assert limits.has_room("c")
    assert limits.has_room(None)
    limits.give("a")
    assert limits.has_room("a")
    assert limits.has_room("b")
    assert limits.saturated() == []


def test_limits_taken_in_a_failed_block_are_given_back() -> None:
    limits = Limits({})
    limits.learn("a", "sandbox", {"max_concurrency": 1})
    limits.take("a")  # a call already running, outside the block
    limits.learn("b", "sandbox", {"max_concurrency": 1})

    def failing_block() -> None:
        with limits.undone_on_error():
            limits.take("b")
            raise RuntimeError("the transaction rolled back")

    with pytest.raises(RuntimeError):
        failing_block()
    assert limits.has_room("b")
    assert not limits.has_room("a")
    with limits.undone_on_error():
        limits.take("b")
    assert not limits.has_room("b")
