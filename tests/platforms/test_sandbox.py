"""The sandbox connector against the sandbox network's own record, on both databases."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.world import World
from tidings.channels.models import Channel
from tidings.channels.service import facts
from tidings.platforms.base import (
    ChannelFacts,
    LookupUnavailable,
    MediaItem,
    MediaType,
    PlatformContext,
    PostContent,
    PostType,
    PublishFailure,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.sandbox import SandboxPlatform
from tidings.publishing.states import ErrorKind

SANDBOX = SandboxPlatform()


async def channel_with(world: World, **options: Any) -> ChannelFacts:
    channel_id = await world.add_channel("Faulty", **options)
    async with world.db.transaction() as session:
        channel = await session.get(Channel, channel_id)
        assert channel is not None
        return facts(channel)


def request(
    channel: ChannelFacts, key: str = "post_1:ch", caption: str = "Hello"
) -> PublishRequest:
    return PublishRequest(
        post_id="post_1",
        channel=channel,
        content=PostContent(
            type=PostType.POST,
            media=[MediaItem("https://cdn.example.com/a.jpg", "A cat")],
            media_type=MediaType.IMAGE,
            scheduled_for=None,
        ),
        target=TargetContent(channel_id=channel.id, caption=caption, first_comment=None),
        idempotency_key=key,
        attempt=1,
    )


async def feed(world: World, channel_id: str) -> list[dict[str, Any]]:
    r = await world.api().get(f"/sandbox/channels/{channel_id}/posts")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


@pytest.fixture
def ctx(world: World) -> PlatformContext:
    return PlatformContext(db=world.db)


async def test_publish_is_recorded_on_the_network(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world)
    published = await SANDBOX.publish(ctx, request(channel))
    [post] = await feed(world, channel.id)
    assert post["id"] == published.external_post_id
    assert (post["caption"], post["idempotencyKey"], post["mediaType"]) == (
        "Hello",
        "post_1:ch",
        "IMAGE",
    )
    assert post["media"] == [{"url": "https://cdn.example.com/a.jpg", "altText": "A cat"}]
    assert published.external_url == f"/sandbox/channels/{channel.id}/posts#{post['id']}"
    assert abs(published.published_at - datetime.now(UTC)) < timedelta(seconds=10)


async def test_fail_first_gives_transient_errors_then_publishes(
    world: World, ctx: PlatformContext
) -> None:
    channel = await channel_with(world, fail_first=2)
    for _ in range(2):
        with pytest.raises(PublishFailure) as failure:
            await SANDBOX.publish(ctx, request(channel))
        assert (failure.value.kind, failure.value.code) == (
            ErrorKind.TRANSIENT,
            "SANDBOX_UNAVAILABLE",
        )
        assert not failure.value.outcome_unknown
    assert await feed(world, channel.id) == []
    await SANDBOX.publish(ctx, request(channel))
    assert len(await feed(world, channel.id)) == 1


async def test_faults_count_per_target(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world, fail_first=1)
    for key in ("post_1:a", "post_2:a"):
        with pytest.raises(PublishFailure):
            await SANDBOX.publish(ctx, request(channel, key))
        await SANDBOX.publish(ctx, request(channel, key))
    assert [p["idempotencyKey"] for p in await feed(world, channel.id)] == ["post_1:a", "post_2:a"]


async def test_rate_limit_names_when_to_retry(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world, rate_limit_first=1, retry_after_s=30)
    before = datetime.now(UTC)
    with pytest.raises(PublishFailure) as failure:
        await SANDBOX.publish(ctx, request(channel))
    assert failure.value.kind is ErrorKind.RATE_LIMITED
    assert failure.value.retry_at is not None
    assert before + timedelta(seconds=30) <= failure.value.retry_at
    assert failure.value.retry_at <= datetime.now(UTC) + timedelta(seconds=30)


async def test_expired_auth_is_an_auth_error(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world, auth_expired_first=1)
    with pytest.raises(PublishFailure) as failure:
        await SANDBOX.publish(ctx, request(channel))
    assert (failure.value.kind, failure.value.code) == (ErrorKind.AUTH, "SANDBOX_AUTH_EXPIRED")


async def test_permanent_error_publishes_nothing(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world, permanent_error="ACCOUNT_BANNED")
    for _ in range(2):
        with pytest.raises(PublishFailure) as failure:
            await SANDBOX.publish(ctx, request(channel))
        assert (failure.value.kind, failure.value.code) == (ErrorKind.PERMANENT, "ACCOUNT_BANNED")
    assert await feed(world, channel.id) == []


async def test_the_network_enforces_its_own_caption_limit(
    world: World, ctx: PlatformContext
) -> None:
    channel = await channel_with(world)
    with pytest.raises(PublishFailure) as failure:
        await SANDBOX.publish(ctx, request(channel, caption="x" * 2201))
    assert (failure.value.kind, failure.value.code) == (
        ErrorKind.PERMANENT,
        "SANDBOX_CAPTION_TOO_LONG",
    )
    assert await feed(world, channel.id) == []


async def test_accept_then_timeout_keeps_the_post_and_loses_the_answer(
    world: World, ctx: PlatformContext
) -> None:
    channel = await channel_with(world, accept_then_timeout=1)
    with pytest.raises(PublishFailure) as failure:
        await SANDBOX.publish(ctx, request(channel))
    assert failure.value.outcome_unknown
    [stored] = await feed(world, channel.id)
    found = await SANDBOX.lookup(ctx, request(channel))
    assert found is not None
    assert found.external_post_id == stored["id"]
    # The trap: a blind retry publishes the same post a second time.
    await SANDBOX.publish(ctx, request(channel))
    assert len(await feed(world, channel.id)) == 2


async def test_lookup_of_an_unknown_key_is_none(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world)
    assert await SANDBOX.lookup(ctx, request(channel, key="never-sent")) is None


async def test_no_lookup_means_the_network_cannot_tell(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world, no_lookup=1)
    with pytest.raises(LookupUnavailable):
        await SANDBOX.lookup(ctx, request(channel))


async def test_first_comment_is_attached_to_the_post(world: World, ctx: PlatformContext) -> None:
    channel = await channel_with(world)
    published = await SANDBOX.publish(ctx, request(channel))
    comment_id = await SANDBOX.post_comment(ctx, channel, published.external_post_id, "#launch")
    assert comment_id.startswith(published.external_post_id)
    [post] = await feed(world, channel.id)
    assert post["firstComment"] == "#launch"
    assert post["firstCommentAt"] is not None
    with pytest.raises(PublishFailure) as failure:
        await SANDBOX.post_comment(ctx, channel, "sbx_missing", "hi")
    assert failure.value.code == "SANDBOX_POST_NOT_FOUND"


async def test_feed_is_scoped_to_the_workspace(world: World, ctx: PlatformContext) -> None:
    async with World.build(world.app, name="Other") as other:
        r = await other.api().get(f"/sandbox/channels/{world.channel_id}/posts")
        assert r.status_code == 404
    r = await world.anonymous().get(f"/sandbox/channels/{world.channel_id}/posts")
    assert r.status_code == 401
