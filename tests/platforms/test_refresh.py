"""Tokens are renewed by tasks ahead of their expiry (Instagram's and Threads' 60-day
tokens), through the engine against the emulators, on both databases."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.emulators.instagram import InstagramEmulator, ThreadsEmulator
from tests.platforms.connectors import context_for, publish, served
from tests.publishing.test_engine import FAST
from tests.world import World
from tidings.channels import service as channel_service
from tidings.channels.models import Channel
from tidings.platforms.base import PlatformContext
from tidings.platforms.store import Credentials
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.publishing.worker import Worker

ACCOUNT, TOKEN = "1784", "IGLONG"


@pytest.fixture
def instagram() -> Iterator[InstagramEmulator]:
    with served(InstagramEmulator(), ACCOUNT, TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def context(world: World, instagram: InstagramEmulator) -> AsyncIterator[PlatformContext]:
    async with context_for(world, instagram=instagram.url) as ctx:
        yield ctx


async def add(world: World, platform: str, token: str, **creds: object) -> str:
    async with world.db.transaction() as session:
        channel = await channel_service.add_channel(
            session,
            workspace_id=world.workspace_id,
            platform=platform,
            name="Renewed",
            options={},
            now=datetime.now(UTC),
            credentials=replace(Credentials(ACCOUNT, token), **creds),
            box=world.state.box,
        )
        return channel.id


async def refresh_tasks(world: World, channel_id: str) -> list[Task]:
    async with world.db.transaction(write=False) as session:
        found = await session.execute(
            select(Task)
            .where(Task.channel_id == channel_id, Task.kind == TaskKind.REFRESH_TOKEN)
            .order_by(Task.id)
        )
        return list(found.scalars())


async def run_due_refreshes(world: World, context: PlatformContext, channel_id: str) -> None:
    """Make the channel's pending renewal due now, and run the engine until idle."""
    async with world.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.channel_id == channel_id, Task.status == TaskStatus.PENDING)
            .values(run_at=datetime.now(UTC))
        )
    await Worker(world.db, config=FAST, name="w-refresh", context=context).run_until_idle()


async def stored(world: World, channel_id: str) -> tuple[str, Credentials]:
    async with world.db.transaction(write=False) as session:
        channel = await session.get(Channel, channel_id)
        assert channel is not None
        assert channel.credentials is not None
        creds = Credentials.open(world.state.box, channel.credentials)
        assert creds is not None
        return channel.status.value, creds


async def test_a_token_is_renewed_ahead_of_expiry_and_the_next_renewal_planned(
    world: World, context: PlatformContext, instagram: InstagramEmulator
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    channel = await add(world, "instagram", TOKEN, refresh_token=None, expires_at=expires)
    [planned] = await refresh_tasks(world, channel)
    assert planned.status is TaskStatus.PENDING
    assert abs(planned.run_at - (expires - timedelta(days=7))) < timedelta(seconds=5)
    await run_due_refreshes(world, context, channel)
    [new_token] = instagram.refreshed
    status, creds = await stored(world, channel)
    assert (status, creds.access_token) == ("ACTIVE", new_token)
    assert creds.expires_at is not None
    assert creds.expires_at > datetime.now(UTC) + timedelta(days=59)
    done, following = await refresh_tasks(world, channel)
    assert done.status is TaskStatus.DONE
    assert following.status is TaskStatus.PENDING
    assert abs(following.run_at - (creds.expires_at - timedelta(days=7))) < timedelta(seconds=5)
    # The renewed token is the one used to publish (the old one no longer works).
    doc = await publish(world, context, channel, {"caption": "After renewal"})
    assert doc["status"] == "PUBLISHED", doc


async def test_a_refused_token_needs_reconnecting_a_server_error_is_retried(
    world: World, context: PlatformContext, instagram: InstagramEmulator
) -> None:
    flaky = await add(world, "instagram", TOKEN)
    instagram.fail("refresh", None, status=503, message="try later")
    await run_due_refreshes(world, context, flaky)
    status, creds = await stored(world, flaky)
    assert (status, creds.access_token) == ("ACTIVE", TOKEN)
    [task] = await refresh_tasks(world, flaky)
    assert task.status is TaskStatus.PENDING
    assert task.run_at > datetime.now(UTC) + timedelta(minutes=50)
    revoked = await add(world, "instagram", "revoked")
    await run_due_refreshes(world, context, revoked)
    status, _ = await stored(world, revoked)
    assert status == "NEEDS_RECONNECT"
    assert [t.status for t in await refresh_tasks(world, revoked)] == [TaskStatus.FAILED]


async def test_threads_renews_with_its_own_grant(world: World) -> None:
    with served(ThreadsEmulator(), ACCOUNT, TOKEN) as threads:
        async with context_for(world, threads=threads.url) as ctx:
            channel = await add(world, "threads", TOKEN)
            await run_due_refreshes(world, ctx, channel)
    [new_token] = threads.refreshed
    assert (await stored(world, channel))[1].access_token == new_token


async def test_tokens_that_do_not_expire_are_not_renewed(world: World) -> None:
    page = await add(world, "facebook", "PAGE")
    via_facebook = await add(world, "instagram", TOKEN, extra={"login": "facebook"})
    assert await refresh_tasks(world, page) == []
    assert await refresh_tasks(world, via_facebook) == []
