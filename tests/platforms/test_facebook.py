"""The Facebook Pages connector, end to end through the engine against the Pages emulator,
on both databases; and its validation rules."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.emulators.facebook import FacebookEmulator
from tests.platforms.connectors import account_channel, context_for, publish, rules_of, served
from tests.world import World
from tidings.platforms.base import (
    PlatformContext,
    PostType,
)
from tidings.platforms.facebook import FacebookPlatform

PAGE, TOKEN = "104000000000001", "EAAB-page-token"
PHOTO = "https://cdn.example.com/a.jpg"
VIDEO = "https://cdn.example.com/clip.mp4"


@pytest.fixture
def emulator() -> Iterator[FacebookEmulator]:
    with served(FacebookEmulator(), PAGE, TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def context(world: World, emulator: FacebookEmulator) -> AsyncIterator[PlatformContext]:
    async with context_for(world, facebook=emulator.url) as ctx:
        yield ctx


async def page_channel(world: World) -> str:
    return await account_channel(world, "facebook", PAGE, TOKEN)


async def test_a_link_post_with_its_first_comment(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    body = {
        "caption": "Read the launch notes",
        "firstComment": "Questions welcome",
        "options": {"link": "https://example.com/notes"},
    }
    doc = await publish(world, context, channel, body, media=None, mediaType=None)
    assert doc["status"] == "PUBLISHED", doc
    [post] = emulator.posts_of(PAGE)
    assert (post.kind, post.message, post.link) == (
        "feed",
        "Read the launch notes",
        body["options"]["link"],
    )
    target = doc["mediumsData"][channel]
    assert (target["externalPostId"], target["externalUrl"]) == (post.id, post.permalink)
    assert [c["message"] for c in post.comments] == ["Questions welcome"]


async def test_one_photo_several_photos_and_a_video(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    photos = [PHOTO, "https://cdn.example.com/b.png", "https://cdn.example.com/c.gif"]
    docs = [
        await publish(world, context, channel, {"caption": "One"}),
        await publish(
            world, context, channel, {"caption": "Three"}, media=photos, mediaType="CAROUSEL"
        ),
        await publish(world, context, channel, {"caption": "Clip"}, media=VIDEO, mediaType="VIDEO"),
    ]
    assert [d["status"] for d in docs] == ["PUBLISHED"] * 3
    by_message = {p.message: p for p in emulator.posts_of(PAGE)}
    assert (by_message["One"].kind, by_message["One"].media) == ("photo", [PHOTO])
    assert (by_message["Three"].kind, by_message["Three"].media) == ("photos", photos)
    assert (by_message["Clip"].kind, by_message["Clip"].media) == ("video", [VIDEO])
    assert all(photo["published"] for photo in emulator.photos.values())


async def test_a_reel_is_started_uploaded_by_url_finished_and_waited_for(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    doc = await publish(
        world,
        context,
        channel,
        {"caption": "Reel #new"},
        type="REEL",
        media=VIDEO,
        mediaType="VIDEO",
    )
    assert doc["status"] == "PUBLISHED", doc
    [video] = emulator.videos.values()
    assert (video.reel, video.uploaded_from, video.description) == (True, VIDEO, "Reel #new")
    target = doc["mediumsData"][channel]
    assert target["externalPostId"] == video.id
    assert emulator.count("status") >= 3  # processing, processing, then complete


async def test_a_lost_answer_is_found_on_the_page_not_posted_again(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    emulator.publish_delay = 2.5  # longer than the connector's 1 s HTTP timeout
    channel = await page_channel(world)
    doc = await publish(
        world, context, channel, {"caption": "Exactly once"}, media=None, mediaType=None
    )
    assert doc["status"] == "PUBLISHED", doc
    [post] = emulator.posts_of(PAGE)
    assert doc["mediumsData"][channel]["externalPostId"] == post.id


async def test_a_duplicate_is_refused_for_good(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    first = await publish(
        world, context, channel, {"caption": "Same words"}, media=None, mediaType=None
    )
    second = await publish(
        world, context, channel, {"caption": "Same words"}, media=None, mediaType=None
    )
    assert first["status"] == "PUBLISHED"
    target = second["mediumsData"][channel]
    assert (target["status"], target["errorCode"]) == ("FAILED", "FB_DUPLICATE_POST")
    assert len(emulator.posts_of(PAGE)) == 1


async def test_throttling_and_upload_errors_are_retried(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    emulator.fail("photos", 6000, message="There was a problem uploading your video")
    emulator.fail("photos", 1, message="An unknown error occurred")
    channel = await page_channel(world)
    doc = await publish(world, context, channel, {"caption": "Third time"})
    assert doc["status"] == "PUBLISHED", doc
    assert doc["mediumsData"][channel]["attemptCount"] == 3


async def test_a_missing_permission_fails_at_once(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    emulator.fail("feed", 200, message="Requires pages_manage_posts permission")
    channel = await page_channel(world)
    doc = await publish(world, context, channel, {"caption": "Nope"}, media=None, mediaType=None)
    target = doc["mediumsData"][channel]
    assert (target["status"], target["errorCode"]) == ("FAILED", "FB_PERMISSION_MISSING")
    assert target["attemptCount"] == 1


def rules(text: str = "Hi", media: list[str] | None = None, **kw: Any) -> list[str]:
    media = media if media is not None else []
    return rules_of(FacebookPlatform(), text, media, **kw)


def test_facebook_rules() -> None:
    assert rules() == []
    assert rules("") == ["facebook.message_required"]
    assert rules("", options={"link": "https://e.com"}) == []
    assert rules(media=[PHOTO] * 11) == ["facebook.too_many_photos"]
    assert rules(media=[PHOTO, VIDEO]) == ["facebook.mixed_media"]
    assert rules(media=["https://cdn.example.com/a.webp"]) == ["facebook.photo_format"]
    assert rules(media=[PHOTO], type=PostType.REEL) == ["facebook.reel_needs_video"]
    assert rules(media=[PHOTO], type=PostType.STORY) == ["facebook.post_type"]
    assert rules(media=[PHOTO], options={"link": "https://e.com"}) == ["facebook.link"]
