"""The Instagram connector, end to end through the engine against the Graph emulator, on
both databases; and its validation rules."""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.emulators.instagram import InstagramEmulator
from tests.platforms.connectors import account_channel, context_for, publish, rules_of, served
from tests.world import World
from tidings.channels.models import Channel
from tidings.platforms.base import (
    MediaType,
    PlatformContext,
    PostType,
)
from tidings.platforms.instagram import InstagramPlatform
from tidings.publishing.models import PublishAttempt
from tidings.scheduled_posts.models import Target

ACCOUNT, TOKEN = "17841400000000001", "IGQVJ-test-token"
IMAGE = "https://cdn.example.com/a.jpg"
VIDEO = "https://cdn.example.com/clip.mp4"


@pytest.fixture
def emulator() -> Iterator[InstagramEmulator]:
    with served(InstagramEmulator(), ACCOUNT, TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def context(world: World, emulator: InstagramEmulator) -> AsyncIterator[PlatformContext]:
    async with context_for(world, instagram=emulator.url, facebook=emulator.url) as ctx:
        yield ctx


async def instagram_channel(world: World, token: str = TOKEN, **extra: Any) -> str:
    return await account_channel(world, "instagram", ACCOUNT, token, **extra)


async def test_an_image_is_published_with_its_first_comment(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    channel = await instagram_channel(world)
    doc = await publish(
        world,
        context,
        channel,
        {
            "caption": "Hello #launch",
            "firstComment": "More at example.com",
            "options": {"alt_text": "A cat"},
        },
    )
    assert doc["status"] == "PUBLISHED", doc
    target = doc["mediumsData"][channel]
    [media] = emulator.posts_of(ACCOUNT)
    assert target["externalPostId"] == media.id
    assert target["externalUrl"] == media.permalink
    assert media.caption == "Hello #launch"
    container = emulator.containers[media.container]
    assert container.params["image_url"] == IMAGE
    assert container.params["alt_text"] == "A cat"
    assert media.comments == [{"id": media.comments[0]["id"], "text": "More at example.com"}]
    assert emulator.count("content_publishing_limit") >= 1  # the quota was read first


async def test_a_carousel_publishes_its_children_under_one_parent(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    channel = await instagram_channel(world)
    media = [IMAGE, "https://cdn.example.com/b.jpg", VIDEO]
    doc = await publish(
        world,
        context,
        channel,
        {"caption": "Three"},
        type="CAROUSEL",
        media=media,
        mediaType="CAROUSEL",
    )
    assert doc["status"] == "PUBLISHED", doc
    [published] = emulator.posts_of(ACCOUNT)
    parent = emulator.containers[published.container]
    assert parent.params["media_type"] == "CAROUSEL"
    children = [emulator.containers[c] for c in parent.params["children"].split(",")]
    assert [c.params.get("image_url") or c.params.get("video_url") for c in children] == media
    assert all(c.params["is_carousel_item"] == "true" for c in children)
    assert children[2].params["media_type"] == "VIDEO"


async def test_a_reel_waits_for_processing_and_takes_its_options(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.processing_polls = 3
    channel = await instagram_channel(world)
    options = {"share_to_feed": False, "thumb_offset": 1500, "collaborators": "friend1,friend2"}
    doc = await publish(
        world,
        context,
        channel,
        {"caption": "Reel", "options": options},
        type="REEL",
        media=VIDEO,
        mediaType="VIDEO",
    )
    assert doc["status"] == "PUBLISHED", doc
    [published] = emulator.posts_of(ACCOUNT)
    params = emulator.containers[published.container].params
    assert params["media_type"] == "REELS"
    assert params["video_url"] == VIDEO
    assert (params["share_to_feed"], params["thumb_offset"]) == ("false", "1500")
    assert params["collaborators"] == '["friend1", "friend2"]'
    assert emulator.count("status") >= 3  # polled until FINISHED


async def test_a_story_takes_no_caption(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Story"}, type="STORY")
    assert doc["status"] == "PUBLISHED", doc
    [published] = emulator.posts_of(ACCOUNT)
    params = emulator.containers[published.container].params
    assert params == {"media_type": "STORIES", "image_url": IMAGE}


async def test_a_used_quota_defers_the_target_without_creating_anything(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.use_quota(ACCOUNT, 50)
    channel = await instagram_channel(world)
    before = datetime.now(UTC)
    doc = await publish(world, context, channel, {"caption": "Later"})
    target = doc["mediumsData"][channel]
    assert doc["status"] == "PUBLISHING"
    assert (target["status"], target["errorCode"]) == ("PENDING", "IG_QUOTA_EXCEEDED")
    assert emulator.containers == {}
    async with world.db.transaction(write=False) as session:
        from tidings.publishing.models import Task, TaskKind, TaskStatus

        task = (
            await session.execute(
                select(Task).where(Task.post_id == doc["id"], Task.kind == TaskKind.PUBLISH_TARGET)
            )
        ).scalar_one()
    assert task.status is TaskStatus.PENDING
    assert task.run_at >= before + timedelta(minutes=59)  # deferred by the hour, not failed


async def test_transient_errors_are_retried_and_publish_once(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.fail("media", 2, message="Service temporarily unavailable")
    emulator.fail("media", -1, 2207001, message="Instagram server error")
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Eventually"})
    assert doc["status"] == "PUBLISHED", doc
    assert doc["mediumsData"][channel]["attemptCount"] == 3
    assert len(emulator.posts_of(ACCOUNT)) == 1


async def test_a_permanent_error_fails_at_once_with_its_code(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.fail("media", 36003, 2207009, message="The aspect ratio is not supported")
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Too wide"})
    target = doc["mediumsData"][channel]
    assert doc["status"] == "FAILED"
    assert (target["status"], target["errorCode"]) == ("FAILED", "IG_ASPECT_RATIO")
    assert "aspect ratio" in target["errorMessage"]
    assert target["attemptCount"] == 1


async def test_an_invalid_token_needs_reconnecting(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    channel = await instagram_channel(world, token="revoked")
    doc = await publish(world, context, channel, {"caption": "No access"})
    target = doc["mediumsData"][channel]
    assert (target["status"], target["errorCode"]) == ("FAILED", "IG_TOKEN_INVALID")
    assert target["attemptCount"] == 2  # retried once after a refresh
    async with world.db.transaction(write=False) as session:
        stored = await session.get(Channel, channel)
        assert stored is not None
        assert stored.status.value == "NEEDS_RECONNECT"


async def test_throttling_waits_as_long_as_the_usage_header_says(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.regain_minutes = 7
    emulator.fail(
        "media", 80002, message="There have been too many calls to this Instagram account"
    )
    channel = await instagram_channel(world)
    before = datetime.now(UTC)
    doc = await publish(world, context, channel, {"caption": "Slow down"})
    assert doc["mediumsData"][channel]["errorCode"] == "IG_THROTTLED"
    async with world.db.transaction(write=False) as session:
        from tidings.publishing.models import Task, TaskKind

        task = (
            await session.execute(
                select(Task).where(Task.post_id == doc["id"], Task.kind == TaskKind.PUBLISH_TARGET)
            )
        ).scalar_one()
    assert before + timedelta(minutes=6) < task.run_at < before + timedelta(minutes=8)


async def test_an_answer_lost_after_publishing_is_reconciled_not_posted_twice(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.publish_delay = 2.5  # longer than the connector's 1 s HTTP timeout
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Exactly once"})
    assert doc["status"] == "PUBLISHED", doc
    [media] = emulator.posts_of(ACCOUNT)
    assert doc["mediumsData"][channel]["externalPostId"] == media.id
    async with world.db.transaction(write=False) as session:
        outcomes = (
            (
                await session.execute(
                    select(PublishAttempt.outcome).where(PublishAttempt.post_id == doc["id"])
                )
            )
            .scalars()
            .all()
        )
    assert [o.value for o in outcomes] == ["RECONCILED"]


async def test_a_failed_publish_call_reuses_its_container(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    """A 5xx to media_publish leaves the outcome unknown: the container says it did not go
    out (FINISHED), so the next attempt publishes that same container."""
    emulator.fail("media_publish", None, status=503, message="upstream unavailable")
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Same container"})
    assert doc["status"] == "PUBLISHED", doc
    assert len(emulator.containers) == 1
    assert len(emulator.posts_of(ACCOUNT)) == 1
    async with world.db.transaction(write=False) as session:
        state = await session.scalar(
            select(Target.platform_state).where(Target.post_id == doc["id"])
        )
    assert state is not None
    assert state["container_id"] in emulator.containers


# --- validation ------------------------------------------------------------------------------


def rules(caption: str = "Hi", media: list[str] | None = None, **kw: Any) -> list[str]:
    media = media if media is not None else [IMAGE]
    return rules_of(InstagramPlatform(), caption, media, **kw)


def test_captions_are_counted_as_instagram_counts_them() -> None:
    assert rules("x" * 2200) == []
    assert rules("x" * 2201) == ["instagram.caption_too_long"]
    assert rules(" ".join(f"#t{n}" for n in range(30))) == []
    assert rules(" ".join(f"#t{n}" for n in range(31))) == ["instagram.too_many_hashtags"]
    assert rules(" ".join(f"@u{n}" for n in range(21))) == ["instagram.too_many_mentions"]
    assert rules("mail me at a@b.example") == []  # an address is not a mention


def test_media_rules() -> None:
    assert rules(media=[]) == ["instagram.media_required"]
    assert rules(media=[IMAGE] * 11, media_type=MediaType.CAROUSEL) == ["instagram.carousel_size"]
    assert rules(media=[IMAGE], type=PostType.CAROUSEL) == ["instagram.carousel_size"]
    assert rules(media=[IMAGE], type=PostType.REEL) == ["instagram.reel_needs_video"]
    assert rules(media=["https://cdn.example.com/a.png"]) == ["instagram.image_format"]
    assert rules(media=[VIDEO], type=PostType.REEL) == []


def test_option_rules() -> None:
    assert rules(options={"collaborators": "a,b,c,d"}) == ["instagram.collaborators"]
    assert rules(options={"share_to_feed": True}) == ["instagram.reel_option"]
    assert rules(media=[VIDEO], type=PostType.REEL, options={"thumb_offset": -1}) == [
        "instagram.thumb_offset"
    ]
    assert rules(options={"user_tags": [{"username": "a", "x": 1.5, "y": 0}]}) == [
        "instagram.user_tags"
    ]
    assert rules(options={"alt_text": "x" * 1001}) == ["instagram.alt_text_too_long"]


async def test_usage_headers_at_their_limit_stop_the_calls_before_a_refusal(
    world: World, context: PlatformContext, emulator: InstagramEmulator
) -> None:
    emulator.usage_percent, emulator.regain_minutes = 100, 3
    channel = await instagram_channel(world)
    doc = await publish(world, context, channel, {"caption": "Not now"})
    target = doc["mediumsData"][channel]
    assert (target["status"], target["errorCode"]) == ("PENDING", "IG_THROTTLED")
    assert emulator.containers == {}  # stopped after reading the quota, before creating
