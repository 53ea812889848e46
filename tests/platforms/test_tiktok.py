"""The TikTok connector, end to end through the engine against the TikTok emulator (and a
media host for uploads), on both databases; its token renewal; and its rules."""

import asyncio
import itertools
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import Request
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tests.emulators.server import EmulatorServer
from tests.emulators.tiktok import MB, TikTokEmulator, media_app
from tests.platforms.connectors import account_channel, context_for, publish, rules_of
from tests.platforms.test_refresh import refresh_tasks, run_due_refreshes, stored
from tests.scheduled_posts.videos import media_host, mp4_file
from tests.world import World
from tidings.channels.models import Channel
from tidings.fetch import FetchPolicy
from tidings.platforms.base import MediaType, PlatformContext, PostType
from tidings.platforms.store import Credentials
from tidings.platforms.tiktok import TikTokApi, TikTokPlatform, chunk_plan, utf16_length

OPEN_ID, TOKEN = "-000OZJbI6V2DX8MbOqnOSyT5Hc9k8lwmRy7", "act.example-token"
VIDEO = "https://cdn.example.com/clip.mp4"
PUBLIC = {"privacy_level": "PUBLIC_TO_EVERYONE"}


@pytest.fixture
def tiktok() -> Iterator[TikTokEmulator]:
    emulator = TikTokEmulator()
    emulator.account(OPEN_ID, TOKEN, username="brand")
    emulator.register_app("awtiktokkey", "tiktok-secret")
    with EmulatorServer(emulator.app) as server:
        emulator.url = server.url
        yield emulator


@pytest.fixture
def media() -> Iterator[str]:
    files = {
        "small.mp4": ("video/mp4", 3 * MB + 17),
        "big.mp4": ("video/mp4", 12 * MB + 5),
        "huge.mov": ("video/quicktime", 30 * MB + 1),
    }
    with EmulatorServer(media_app(files)) as server:
        yield server.url


@pytest.fixture
async def context(world: World, tiktok: TikTokEmulator) -> AsyncIterator[PlatformContext]:
    async with context_for(world, tiktok=tiktok.url) as ctx:
        yield ctx


async def tiktok_channel(world: World, **creds: Any) -> str:
    return await account_channel(world, "tiktok", OPEN_ID, TOKEN, **creds)


def target(doc: dict[str, Any], channel: str) -> dict[str, Any]:
    entry: dict[str, Any] = doc["mediumsData"][channel]
    return entry


async def test_a_video_is_pulled_from_its_url_with_the_creators_options(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    tiktok.creators[OPEN_ID].comment_disabled = True
    channel = await tiktok_channel(world)
    body = {
        "caption": "Launch day 🚀 #tidings",
        "options": PUBLIC | {"disable_duet": True, "thumbnail_offset": 1500, "is_aigc": True},
    }
    doc = await publish(world, context, channel, body, media=VIDEO, mediaType="VIDEO")
    assert doc["status"] == "PUBLISHED", [
        (t["errorCode"], t["errorMessage"]) for t in doc["mediumsData"].values()
    ]
    [post] = tiktok.posts_of(OPEN_ID)
    assert post.source_info == {"source": "PULL_FROM_URL", "video_url": VIDEO}
    assert post.post_info == {
        "privacy_level": "PUBLIC_TO_EVERYONE",
        "title": "Launch day 🚀 #tidings",
        "disable_comment": True,  # the creator has comments off
        "disable_duet": True,
        "disable_stitch": False,
        "video_cover_timestamp_ms": 1500,
        "is_aigc": True,
    }
    assert tiktok.calls.index("creator_info") < tiktok.calls.index("video_init")
    entry = target(doc, channel)
    assert entry["status"] == "PUBLISHED"
    assert entry["externalPostId"] == post.post_id
    assert entry["externalUrl"] == f"https://www.tiktok.com/@brand/video/{post.post_id}"


@pytest.mark.parametrize(("name", "parts"), [("small.mp4", 1), ("big.mp4", 2)])
async def test_a_video_is_uploaded_in_parts_streamed_from_its_url(
    world: World,
    context: PlatformContext,
    tiktok: TikTokEmulator,
    media: str,
    name: str,
    parts: int,
) -> None:
    context.endpoints = replace(context.endpoints, tiktok_chunk_bytes=5 * MB)
    channel = await tiktok_channel(world)
    body = {"caption": "Uploaded", "options": PUBLIC | {"source": "FILE_UPLOAD"}}
    doc = await publish(world, context, channel, body, media=f"{media}/{name}", mediaType="VIDEO")
    assert doc["status"] == "PUBLISHED", [
        (t["errorCode"], t["errorMessage"]) for t in doc["mediumsData"].values()
    ]
    [post] = tiktok.posts_of(OPEN_ID)
    size = post.source_info["video_size"]
    assert post.source_info["total_chunk_count"] == len(post.parts) == parts
    assert post.parts[-1][1] == size - 1
    assert post.received == size


async def test_an_upload_from_a_forbidden_address_fails_for_good_before_tiktok_is_asked(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    """Tidings itself fetches a FILE_UPLOAD's video: from a loopback address it does not,
    whatever listens there (here a real host of the file), and TikTok is not asked at all."""
    received: list[str] = []
    host = media_app({"small.mp4": ("video/mp4", 3 * MB + 17)})

    @host.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        received.append(request.url.path)
        return await call_next(request)

    context.fetch = FetchPolicy()  # the guard as in production: nothing local opened
    channel = await tiktok_channel(world)
    body = {"caption": "x", "options": PUBLIC | {"source": "FILE_UPLOAD"}}
    with EmulatorServer(host) as server:
        url = f"{server.url}/small.mp4"
        doc = await publish(world, context, channel, body, media=url, mediaType="VIDEO")
    entry = target(doc, channel)
    assert (entry["status"], entry["errorCode"], entry["errorMessage"]) == (
        "FAILED",
        "MEDIA_FORBIDDEN",
        f"{url} is not fetched: its host is a loopback address",
    )
    assert entry["attemptCount"] == 1
    assert tiktok.count("video_init") == 0
    assert tiktok.posts_of(OPEN_ID) == []
    assert received == []


async def test_an_upload_never_holds_the_video_in_memory(
    world: World, context: PlatformContext, tiktok: TikTokEmulator, media: str
) -> None:
    """30 MiB in parts of 5 MiB (the last 10 MiB) while far less is allocated at a time."""
    context.endpoints = replace(context.endpoints, tiktok_chunk_bytes=5 * MB)
    channel = await tiktok_channel(world)
    body = {"caption": "Big one", "options": PUBLIC | {"source": "FILE_UPLOAD"}}
    tracemalloc.start()
    try:
        doc = await publish(
            world, context, channel, body, media=f"{media}/huge.mov", mediaType="VIDEO"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert doc["status"] == "PUBLISHED", [
        (t["errorCode"], t["errorMessage"]) for t in doc["mediumsData"].values()
    ]
    [post] = tiktok.posts_of(OPEN_ID)
    assert len(post.parts) == 6
    assert post.received == 30 * MB + 1
    assert peak < 4 * MB, f"{peak / MB:.1f} MiB allocated at the peak"


async def test_photos_are_a_photo_post_with_a_title(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    channel = await tiktok_channel(world)
    photos = [f"https://cdn.example.com/p{i}.jpg" for i in range(3)]
    body = {
        "caption": "Behind the scenes",
        "options": {"privacy_level": "SELF_ONLY", "title": "BTS", "photo_cover_index": 1},
    }
    doc = await publish(
        world, context, channel, body, type="CAROUSEL", media=photos, mediaType="CAROUSEL"
    )
    assert doc["status"] == "PUBLISHED", [
        (t["errorCode"], t["errorMessage"]) for t in doc["mediumsData"].values()
    ]
    [post] = tiktok.posts_of(OPEN_ID)
    assert post.kind == "photo"
    assert post.source_info["photo_images"] == photos
    assert post.source_info["photo_cover_index"] == 1
    assert post.post_info["title"] == "BTS"
    assert post.post_info["description"] == "Behind the scenes"


async def test_auto_publish_false_sends_to_the_inbox_a_distinct_outcome(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    channel = await tiktok_channel(world)
    body = {"caption": "For you to finish", "options": {"auto_publish": False}}
    doc = await publish(world, context, channel, body, media=VIDEO, mediaType="VIDEO")
    entry = target(doc, channel)
    assert entry["status"] == "SENT_TO_INBOX", entry
    assert doc["status"] == "PUBLISHED"
    [upload] = tiktok.posts_of(OPEN_ID)
    assert upload.status == "SEND_TO_USER_INBOX"
    assert upload.post_info == {}  # an inbox upload carries no caption
    assert entry["externalPostId"] == upload.id
    assert entry["externalUrl"] is None


async def test_a_privacy_level_the_creator_does_not_offer_is_refused_before_init(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    tiktok.creators[OPEN_ID].privacy_level_options = ["SELF_ONLY"]
    channel = await tiktok_channel(world)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    entry = target(doc, channel)
    assert (entry["status"], entry["errorCode"]) == (
        "FAILED",
        "TIKTOK_PRIVACY_LEVEL_OPTION_MISMATCH",
    )
    assert "SELF_ONLY" in entry["errorMessage"]
    assert tiktok.count("video_init") == 0


@pytest.mark.parametrize(
    ("status", "code", "expected", "ends"),
    [
        (403, "spam_risk_too_many_posts", "TIKTOK_SPAM_RISK_TOO_MANY_POSTS", "PENDING"),
        (429, "rate_limit_exceeded", "TIKTOK_RATE_LIMIT_EXCEEDED", "PENDING"),
        (403, "url_ownership_unverified", "TIKTOK_URL_OWNERSHIP_UNVERIFIED", "FAILED"),
        (400, "invalid_param", "TIKTOK_INVALID_PARAM", "FAILED"),
        (
            403,
            "spam_risk_user_banned_from_posting",
            "TIKTOK_SPAM_RISK_USER_BANNED_FROM_POSTING",
            "FAILED",
        ),
    ],
)
async def test_each_error_class(
    world: World,
    context: PlatformContext,
    tiktok: TikTokEmulator,
    status: int,
    code: str,
    expected: str,
    ends: str,
) -> None:
    tiktok.fail("video_init", status, code, times=10)
    channel = await tiktok_channel(world)
    before = datetime.now(UTC)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    entry = target(doc, channel)
    assert (entry["status"], entry["errorCode"]) == (ends, expected), entry
    if ends == "PENDING":  # deferred until the platform's window passes
        tasks = await publish_tasks(world, channel)
        wait = timedelta(hours=23) if code.startswith("spam") else timedelta(seconds=50)
        assert tasks[-1] > before + wait
    else:
        assert tiktok.count("video_init") == 1
    assert tiktok.posts_of(OPEN_ID) == []


async def publish_tasks(world: World, channel: str) -> list[datetime]:
    from tidings.publishing.models import Task, TaskKind, TaskStatus

    async with world.db.transaction(write=False) as session:
        found = await session.scalars(
            select(Task.run_at).where(
                Task.channel_id == channel,
                Task.kind == TaskKind.PUBLISH_TARGET,
                Task.status == TaskStatus.PENDING,
            )
        )
        return [t if t.tzinfo else t.replace(tzinfo=UTC) for t in found]


async def test_an_internal_error_is_retried_and_a_failed_pull_starts_over(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    tiktok.fail("video_init", 500, "internal_error")
    tiktok.fail_next_publish("video_pull_failed")
    channel = await tiktok_channel(world)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    assert target(doc, channel)["status"] == "PUBLISHED", doc
    assert tiktok.count("video_init") == 3  # refused, pulled and failed, published
    assert len(tiktok.posts_of(OPEN_ID)) == 1


async def test_a_failed_moderation_check_is_permanent(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    tiktok.fail_next_publish("duration_check_failed")
    channel = await tiktok_channel(world)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    entry = target(doc, channel)
    assert (entry["status"], entry["errorCode"]) == ("FAILED", "TIKTOK_DURATION_CHECK_FAILED")
    assert tiktok.count("video_init") == 1


async def test_a_lost_answer_to_the_last_part_is_reconciled_from_the_publish_id(
    world: World, context: PlatformContext, tiktok: TikTokEmulator, media: str
) -> None:
    tiktok.upload_delay = 1.5  # past the connector's 1 s timeout, after accepting the part
    channel = await tiktok_channel(world)
    body = {"caption": "Once", "options": PUBLIC | {"source": "FILE_UPLOAD"}}
    doc = await publish(
        world, context, channel, body, media=f"{media}/small.mp4", mediaType="VIDEO"
    )
    assert target(doc, channel)["status"] == "PUBLISHED", doc
    assert tiktok.count("video_init") == 1
    assert len(tiktok.posts_of(OPEN_ID)) == 1


async def test_a_long_processing_is_asked_about_again_not_posted_again(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    """The attempt polls for 2 s here (8 reads) and gives up; the engine then asks about
    the publish_id (a 9th read: still processing; a 10th: done) instead of posting again."""
    tiktok.processing_polls = 9
    channel = await tiktok_channel(world)
    doc = await publish(
        world,
        context,
        channel,
        {"caption": "Slow", "options": PUBLIC},
        media=VIDEO,
        mediaType="VIDEO",
    )
    assert target(doc, channel)["status"] == "PUBLISHED", doc
    assert tiktok.count("video_init") == 1
    assert tiktok.count("status") >= 10


async def test_a_lost_init_answer_is_left_to_a_person(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    """Without its publish_id TikTok cannot be asked; publishing again might post twice."""
    tiktok.init_delay = 1.5
    channel = await tiktok_channel(world)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    entry = target(doc, channel)
    assert (entry["status"], entry["errorCode"]) == ("UNKNOWN", "OUTCOME_UNKNOWN"), entry
    assert tiktok.count("video_init") == 1


async def set_app(world: World) -> None:
    owner = await world.person("owner")
    r = await owner.put(
        "/platform-apps/tiktok", json={"clientId": "awtiktokkey", "clientSecret": "tiktok-secret"}
    )
    assert r.status_code == 200, r.text


def issue_refresh_token(tiktok: TikTokEmulator) -> str:
    token = "rft.original"
    tiktok.refresh_tokens[token] = ("awtiktokkey", OPEN_ID)
    return token


async def test_an_expired_token_is_renewed_and_the_rotated_refresh_token_kept(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    await set_app(world)
    tiktok.expire(TOKEN)
    refresh = issue_refresh_token(tiktok)
    channel = await tiktok_channel(world)
    async with world.db.transaction() as session:  # as TikTok said: expired an hour ago
        row = await session.get(Channel, channel)
        assert row is not None
        creds = Credentials(
            OPEN_ID, TOKEN, refresh, expires_at=datetime.now(UTC) - timedelta(hours=1)
        )
        row.credentials = creds.seal(world.state.box)
    doc = await publish(
        world, context, channel, {"caption": "x", "options": PUBLIC}, media=VIDEO, mediaType="VIDEO"
    )
    assert target(doc, channel)["status"] == "PUBLISHED", doc
    status, renewed = await stored(world, channel)
    assert status == "ACTIVE"
    assert renewed.refresh_token != refresh
    assert renewed.refresh_token in tiktok.refresh_tokens
    assert refresh in tiktok.spent_refresh_tokens
    assert renewed.expires_at is not None
    assert renewed.expires_at > datetime.now(UTC) + timedelta(hours=1)


async def test_a_refused_token_is_renewed_once_for_concurrent_calls(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    """TikTok's refresh tokens work once: two calls that find the token refused must not
    both renew it (the second renewal would be refused and the channel lost)."""
    await set_app(world)
    refresh = issue_refresh_token(tiktok)
    channel = await tiktok_channel(world)
    async with world.db.transaction() as session:
        row = await session.get(Channel, channel)
        assert row is not None
        row.credentials = Credentials(OPEN_ID, TOKEN, refresh).seal(world.state.box)
    tiktok.expire(TOKEN)
    stale = Credentials(OPEN_ID, TOKEN, refresh)
    apis = [TikTokApi(context, channel, stale) for _ in range(3)]
    creators = await asyncio.gather(*(api.creator() for api in apis))
    assert {c.username for c in creators} == {"brand"}
    assert tiktok.count("token") == 1
    assert len({api.creds.access_token for api in apis}) == 1


async def test_a_renewal_task_rotates_the_tokens_and_a_refused_one_needs_reconnecting(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    await set_app(world)
    refresh = issue_refresh_token(tiktok)
    channel = await tiktok_channel(world)
    async with world.db.transaction() as session:
        row = await session.get(Channel, channel)
        assert row is not None
        creds = Credentials(
            OPEN_ID, TOKEN, refresh, expires_at=datetime.now(UTC) + timedelta(hours=2)
        )
        row.credentials = creds.seal(world.state.box)
    from tidings.publishing.service import enqueue_refresh

    async with world.db.transaction() as session:
        enqueue_refresh(
            session, workspace_id=world.workspace_id, channel_id=channel, run_at=datetime.now(UTC)
        )
    await run_due_refreshes(world, context, channel)
    status, renewed = await stored(world, channel)
    assert (status, refresh in tiktok.spent_refresh_tokens) == ("ACTIVE", True)
    assert renewed.refresh_token in tiktok.refresh_tokens
    tasks = await refresh_tasks(world, channel)
    assert [t.status.value for t in tasks] == ["DONE", "PENDING"]
    # Revoked at TikTok: the next renewal is refused, and the channel must be reconnected.
    tiktok.refresh_tokens.clear()
    await run_due_refreshes(world, context, channel)
    status, _ = await stored(world, channel)
    assert status == "NEEDS_RECONNECT"


async def test_a_renewal_planned_for_a_token_that_cannot_be_renewed_is_dropped(
    world: World, context: PlatformContext, tiktok: TikTokEmulator
) -> None:
    """Without a refresh token there is nothing to renew: the channel is not marked
    NEEDS_RECONNECT for it (its access token may well still work)."""
    channel = await tiktok_channel(world)
    from tidings.publishing.service import enqueue_refresh

    async with world.db.transaction() as session:
        enqueue_refresh(
            session, workspace_id=world.workspace_id, channel_id=channel, run_at=datetime.now(UTC)
        )
    await run_due_refreshes(world, context, channel)
    status, _ = await stored(world, channel)
    assert status == "ACTIVE"
    assert [t.status.value for t in await refresh_tasks(world, channel)] == ["CANCELED"]
    assert tiktok.count("token") == 0


async def test_a_dry_run_asks_the_creator_live(world: World, tiktok: TikTokEmulator) -> None:
    creator = tiktok.creators[OPEN_ID]
    creator.privacy_level_options = ["FOLLOWER_OF_CREATOR", "SELF_ONLY"]
    creator.stitch_disabled = True
    creator.max_video_post_duration_sec = 180
    channel = await tiktok_channel(world)
    state = world.state
    settings = state.settings
    state.settings = settings.model_copy(update={"tiktok_api_url": tiktok.url})
    app, _ = media_host({"long.mp4": ("video/mp4", mp4_file(240, moov_first=False, media=MB))})
    with EmulatorServer(app) as host:
        body = world.post_body(
            media=f"{host.url}/long.mp4",
            mediaType="VIDEO",
            channels={channel: {"caption": "x", "options": PUBLIC | {"disable_stitch": False}}},
        )
        r = await world.api().post("/scheduled-posts/validate", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is True  # the rules alone are met
        r = await world.api().post("/scheduled-posts/validate?live=true", json=body)
    state.settings = settings
    problems = r.json()["problems"]
    assert [p["rule"] for p in problems] == [
        "tiktok.privacy_level_not_offered",
        "tiktok.interaction_disabled",
        "tiktok.video_too_long_for_creator",
    ], problems
    assert "FOLLOWER_OF_CREATOR, SELF_ONLY" in problems[0]["message"]
    assert "240 s long" in problems[2]["message"]


# --- rules ---------------------------------------------------------------------------------


def rules(caption: str = "Hi", media: list[str] | None = None, **kw: Any) -> list[str]:
    options = kw.pop("options", PUBLIC)
    return rules_of(
        TikTokPlatform(), caption, [VIDEO] if media is None else media, options=options, **kw
    )


def test_captions_count_utf16_units() -> None:
    assert utf16_length("🚀") == 2
    assert utf16_length("é") == 1
    assert rules("a" * 2200) == []
    assert rules("a" * 2199 + "🚀") == ["tiktok.caption_too_long"]
    photos = ["https://cdn.example.com/a.jpg"]
    assert rules("a" * 4000, photos, media_type=MediaType.IMAGE) == []
    assert rules("a" * 4001, photos, media_type=MediaType.IMAGE) == ["tiktok.description_too_long"]


def test_tiktok_rules() -> None:
    assert rules(options={}) == ["tiktok.privacy_level_required"]
    assert rules(options={"auto_publish": False}) == []  # the creator chooses in the app
    assert rules(options={"privacy_level": "FRIENDS"}) == ["tiktok.privacy_level"]
    assert rules(options=PUBLIC | {"source": "FTP"}) == ["tiktok.source"]
    assert rules(options=PUBLIC | {"disable_comment": "yes"}) == ["tiktok.disable_comment"]
    assert rules(options=PUBLIC | {"video_cover_timestamp_ms": -1}) == [
        "tiktok.video_cover_timestamp_ms"
    ]
    assert rules(options={"privacy_level": "SELF_ONLY", "brand_content_toggle": True}) == [
        "tiktok.branded_content_private"
    ]
    assert rules(options=PUBLIC | {"title": "T"}) == ["tiktok.title"]
    assert rules(media=[]) == ["tiktok.media_required"]
    assert rules(media=[VIDEO, VIDEO]) == ["tiktok.single_video"]
    assert rules(media=["https://cdn.example.com/a.png"], type=PostType.CAROUSEL) == [
        "tiktok.photo_format"
    ]
    assert rules(media=["https://cdn.example.com/a.jpg"] * 36, type=PostType.CAROUSEL) == [
        "tiktok.too_many_photos"
    ]
    assert rules(type=PostType.STORY) == ["tiktok.post_type"]


@given(size=st.integers(1, 4 * 1024 * MB), chunk=st.integers(0, 200 * MB))
def test_chunk_plans_follow_tiktoks_arithmetic(size: int, chunk: int) -> None:
    parts = chunk_plan(size, chunk)
    assert parts[0][0] == 0
    assert parts[-1][1] == size - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(parts))
    if size < 5 * MB:
        assert parts == [(0, size - 1)]
        return
    first = parts[0][1] + 1
    assert first >= 5 * MB
    assert len(parts) == size // first <= 1000
    if size > 64 * MB:
        assert len(parts) >= 2
        assert first <= 64 * MB
    assert parts[-1][1] - parts[-1][0] + 1 <= 128 * MB
