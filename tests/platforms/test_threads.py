"""The Threads connector, end to end through the engine against the Threads emulator, on
both databases; and its validation rules."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.emulators.instagram import ThreadsEmulator
from tests.platforms.connectors import account_channel, context_for, publish, rules_of, served
from tests.world import World
from tidings.platforms.base import (
    PlatformContext,
    PostType,
)
from tidings.platforms.threads import ThreadsPlatform, text_length

ACCOUNT, TOKEN = "27000000000000001", "THQVJ-test-token"
IMAGE = "https://cdn.example.com/a.png"
VIDEO = "https://cdn.example.com/clip.mp4"


@pytest.fixture
def emulator() -> Iterator[ThreadsEmulator]:
    with served(ThreadsEmulator(), ACCOUNT, TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def context(world: World, emulator: ThreadsEmulator) -> AsyncIterator[PlatformContext]:
    async with context_for(world, threads=emulator.url) as ctx:
        yield ctx


async def threads_channel(world: World) -> str:
    return await account_channel(world, "threads", ACCOUNT, TOKEN)


async def test_a_text_post_needs_no_media_and_its_first_comment_is_a_reply(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    channel = await threads_channel(world)
    body = {
        "caption": "Shipping today 🚀 https://example.com",
        "firstComment": "Changelog in the link",
        "options": {"reply_control": "accounts_you_follow"},
    }
    doc = await publish(world, context, channel, body, media=None, mediaType=None)
    assert doc["status"] == "PUBLISHED", doc
    [post] = emulator.posts_of(ACCOUNT)
    params = emulator.containers[post.container].params
    assert params["media_type"] == "TEXT"
    assert params["reply_control"] == "accounts_you_follow"
    assert post.caption == "Shipping today 🚀 https://example.com"
    assert doc["mediumsData"][channel]["externalUrl"] == post.permalink
    [reply] = post.comments
    assert reply["text"] == "Changelog in the link"


async def test_a_reply_whose_answer_is_lost_is_found_not_posted_again(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    emulator.publish_delay = 2.5  # every publish answers after the connector's 1 s timeout
    channel = await threads_channel(world)
    doc = await publish(world, context, channel, {"caption": "Post", "firstComment": "Reply"})
    assert doc["status"] == "PUBLISHED", doc
    [post] = emulator.posts_of(ACCOUNT)
    [reply] = post.comments
    target = doc["mediumsData"][channel]
    assert target["firstCommentStatus"] == "PUBLISHED", target
    assert target["firstCommentId"] == reply["id"]


async def test_a_mixed_carousel_and_a_video(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    channel = await threads_channel(world)
    media = [IMAGE, VIDEO, "https://cdn.example.com/b.jpg"]
    carousel = await publish(
        world,
        context,
        channel,
        {"caption": "Three"},
        type="CAROUSEL",
        media=media,
        mediaType="CAROUSEL",
    )
    assert carousel["status"] == "PUBLISHED", carousel
    video = await publish(
        world, context, channel, {"caption": "Clip"}, media=VIDEO, mediaType="VIDEO"
    )
    assert video["status"] == "PUBLISHED", video
    by_text = {p.caption: emulator.containers[p.container] for p in emulator.posts_of(ACCOUNT)}
    parent = by_text["Three"]
    children = [emulator.containers[c].params for c in parent.params["children"].split(",")]
    assert [c["media_type"] for c in children] == ["IMAGE", "VIDEO", "IMAGE"]
    assert by_text["Clip"].params["video_url"] == VIDEO


async def test_text_over_the_limit_is_refused_by_the_platform_too(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    """Validation stops it at submit; were it to get through, the platform's 100 is a
    permanent failure, not a retry."""
    emulator.fail("threads", 100, message="Param text must be at most 500 characters long.")
    channel = await threads_channel(world)
    doc = await publish(world, context, channel, {"caption": "fine here"})
    target = doc["mediumsData"][channel]
    assert (target["status"], target["errorCode"]) == ("FAILED", "THREADS_INVALID_PARAMETER")
    r = await world.api().post(
        "/scheduled-posts",
        json=world.post_body(
            status="WAITING_FOR_APPROVAL", channels={channel: {"caption": "🚀" * 126}}
        ),
    )
    assert r.status_code == 400
    assert [p["rule"] for p in r.json()["problems"]] == ["threads.text_too_long"]


async def test_a_lost_answer_is_reconciled_from_the_container(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    emulator.publish_delay = 2.5
    channel = await threads_channel(world)
    doc = await publish(world, context, channel, {"caption": "Once only"})
    assert doc["status"] == "PUBLISHED", doc
    assert len(emulator.posts_of(ACCOUNT)) == 1


async def test_the_quota_defers(
    world: World, context: PlatformContext, emulator: ThreadsEmulator
) -> None:
    emulator.use_quota(ACCOUNT, 250)
    channel = await threads_channel(world)
    doc = await publish(world, context, channel, {"caption": "Later"})
    assert doc["mediumsData"][channel]["errorCode"] == "THREADS_QUOTA_EXCEEDED"
    assert doc["mediumsData"][channel]["status"] == "PENDING"


def rules(text: str = "Hi", media: list[str] | None = None, **kw: Any) -> list[str]:
    media = media if media is not None else []
    return rules_of(ThreadsPlatform(), text, media, **kw)


def test_emoji_count_as_their_bytes() -> None:
    assert text_length("abc") == 3
    assert text_length("🚀") == 4
    assert text_length("héllo") == 5  # accents are characters, not bytes
    assert rules("a" * 500) == []
    assert rules("a" * 497 + "🚀") == ["threads.text_too_long"]


def test_threads_rules() -> None:
    assert rules(media=[IMAGE] * 21, type=PostType.CAROUSEL) == ["threads.carousel_size"]
    assert rules(media=[IMAGE] * 20, type=PostType.CAROUSEL) == []
    assert rules(media=["https://cdn.example.com/a.gif"]) == ["threads.image_format"]
    assert rules(type=PostType.STORY, media=[IMAGE]) == ["threads.post_type"]
    links = " ".join(f"https://e.com/{n}" for n in range(6))
    assert rules(links) == ["threads.too_many_links"]
    assert rules(options={"reply_control": "nobody"}) == ["threads.reply_control"]
    assert rules(media=[IMAGE], options={"link_attachment": "https://e.com"}) == [
        "threads.link_attachment"
    ]
