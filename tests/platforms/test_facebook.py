"""The Facebook Pages connector, end to end through the engine against the Pages emulator,
on both databases; and its validation rules."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.emulators.facebook import FacebookEmulator
from tests.platforms.connectors import account_channel, context_for, publish, rules_of, served
from tests.world import World
from tidings.platforms.base import (
    ChannelFacts,
    MediaItem,
    PlatformContext,
    PostContent,
    PostType,
    TargetContent,
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


async def test_a_reel_still_processing_when_its_attempt_ends_is_waited_for_not_redone(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    """The attempt gives up polling (2 s here); the engine's next attempt goes on with the
    recorded reel instead of starting another."""
    emulator.processing_polls = 12
    channel = await page_channel(world)
    doc = await publish(
        world,
        context,
        channel,
        {"caption": "Slow reel"},
        type="REEL",
        media=VIDEO,
        mediaType="VIDEO",
    )
    assert doc["status"] == "PUBLISHED", doc
    [video] = emulator.videos.values()
    assert doc["mediumsData"][channel]["externalPostId"] == video.id
    assert emulator.count("video_reels_start") == 1


async def test_a_photo_story_is_an_unpublished_photo_made_a_story(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    doc = await publish(world, context, channel, {"caption": "Today only"}, type="STORY")
    assert doc["status"] == "PUBLISHED", doc
    [story] = emulator.stories_of(PAGE)
    [(photo_id, photo)] = emulator.photos.items()
    assert (story.media_type, story.media_id, photo["url"]) == ("photo", photo_id, PHOTO)
    target = doc["mediumsData"][channel]
    assert (target["externalPostId"], target["externalUrl"]) == (story.post_id, story.url)
    assert emulator.posts_of(PAGE) == []  # a story, not a post on the Page's feed


async def test_a_video_story_is_started_uploaded_by_url_finished_and_waited_for(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    body = {"caption": "Behind the scenes"}
    doc = await publish(world, context, channel, body, type="STORY", media=VIDEO, mediaType="VIDEO")
    assert doc["status"] == "PUBLISHED", doc
    [video] = emulator.videos.values()
    [story] = emulator.stories_of(PAGE)
    assert (video.uploaded_from, story.media_type, story.media_id) == (VIDEO, "video", video.id)
    assert doc["mediumsData"][channel]["externalPostId"] == story.post_id
    assert emulator.count("status") >= 3  # processing, processing, then complete


@pytest.mark.parametrize("media", [PHOTO, VIDEO])
async def test_a_story_whose_answer_is_lost_is_found_among_the_stories_not_posted_again(
    world: World, context: PlatformContext, emulator: FacebookEmulator, media: str
) -> None:
    emulator.publish_delay = 2.5  # longer than the connector's 1 s HTTP timeout
    channel = await page_channel(world)
    doc = await publish(world, context, channel, {"caption": "Once"}, type="STORY", media=media)
    assert doc["status"] == "PUBLISHED", doc
    [story] = emulator.stories_of(PAGE)
    target = doc["mediumsData"][channel]
    assert (target["externalPostId"], target["attemptCount"]) == (story.post_id, 1)
    if media == PHOTO:
        assert (emulator.count("photos"), emulator.count("photo_stories")) == (1, 1)
    else:
        assert emulator.count("video_stories_start") == 1
        assert emulator.count("video_stories_finish") == 1


async def test_a_refused_story_is_retried_with_the_photo_already_uploaded(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    emulator.fail("photo_stories", 2, message="Service temporarily unavailable")
    emulator.fail("video_stories_finish", 1, message="An unknown error occurred")
    channel = await page_channel(world)
    photo = await publish(world, context, channel, {"caption": "Again"}, type="STORY")
    body = {"caption": "Again"}
    video = await publish(world, context, channel, body, type="STORY", media=VIDEO)
    assert [photo["status"], video["status"]] == ["PUBLISHED", "PUBLISHED"]
    assert photo["mediumsData"][channel]["attemptCount"] == 2
    assert video["mediumsData"][channel]["attemptCount"] == 2
    assert len(emulator.stories_of(PAGE)) == 2
    # One photo uploaded, one video started and uploaded: each retry went on with them.
    assert (emulator.count("photos"), emulator.count("video_stories_start")) == (1, 1)
    assert len(emulator.videos) == 1


async def test_story_media_facebook_cannot_use_fails_for_good(
    world: World, context: PlatformContext, emulator: FacebookEmulator
) -> None:
    channel = await page_channel(world)
    webm = "https://cdn.example.com/clip.webm"
    video = await publish(world, context, channel, {"caption": "x"}, type="STORY", media=webm)
    emulator.fail("photo_stories", 100, message="Invalid parameter")
    photo = await publish(world, context, channel, {"caption": "y"}, type="STORY")
    for doc, code in ((video, "FB_VIDEO_FAILED"), (photo, "FB_INVALID_PARAMETER")):
        target = doc["mediumsData"][channel]
        assert (target["status"], target["errorCode"], target["attemptCount"]) == (
            "FAILED",
            code,
            1,
        )
    assert emulator.stories_of(PAGE) == []


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
    assert rules(media=[PHOTO], type=PostType.STORY) == []
    assert rules(media=[VIDEO], type=PostType.STORY) == []
    assert rules(media=[PHOTO, PHOTO], type=PostType.STORY) == ["facebook.story_media"]
    assert rules(media=[], type=PostType.STORY) == ["facebook.story_media"]
    assert rules(media=["https://cdn.example.com/s.webp"], type=PostType.STORY) == [
        "facebook.photo_format"
    ]
    story = PostContent(PostType.STORY, [MediaItem(PHOTO)], None, scheduled_for=None)
    commented = TargetContent("ch_test", "Hi", "First!")
    channel = ChannelFacts("ch_test", "facebook", "Test", "ACTIVE")
    found = FacebookPlatform().validate(story, commented, channel)
    assert [p.rule for p in found] == ["facebook.first_comment"]
    assert rules(media=[PHOTO], options={"link": "https://e.com"}) == ["facebook.link"]
