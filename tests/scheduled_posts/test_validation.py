"""Full publish validation as a pure function: every rule, and every problem at once."""

from datetime import UTC, datetime, timedelta

import pytest

from tidings.platforms.base import (
    ChannelFacts,
    MediaItem,
    MediaType,
    PostContent,
    PostType,
    TargetContent,
    media_items,
)
from tidings.scheduled_posts.validation import summarize, validate_for_publish

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CH = ChannelFacts(id="ch_1", platform="sandbox", name="Demo", status="ACTIVE")


def post(**overrides: object) -> PostContent:
    values: dict[str, object] = {
        "type": PostType.POST,
        "media": [MediaItem("https://cdn.example.com/a.jpg")],
        "media_type": MediaType.IMAGE,
        "scheduled_for": NOW + timedelta(hours=1),
    }
    values.update(overrides)
    return PostContent(**values)  # type: ignore[arg-type]


def target(caption: str | None = "Hello", channel_id: str = "ch_1") -> TargetContent:
    return TargetContent(channel_id=channel_id, caption=caption, first_comment=None)


def rules(problems: list) -> list[tuple[str | None, str]]:  # type: ignore[type-arg]
    return [(p.channel_id, p.rule) for p in problems]


def test_a_complete_post_has_no_problems() -> None:
    assert validate_for_publish(post(), [target()], {"ch_1": CH}, NOW) == []


@pytest.mark.parametrize(
    ("scheduled_for", "rule"),
    [
        (None, "scheduledFor.required"),
        (NOW, "scheduledFor.future"),
        (NOW - timedelta(seconds=1), "scheduledFor.future"),
    ],
)
def test_scheduled_for_must_be_in_the_future(scheduled_for: datetime | None, rule: str) -> None:
    problems = validate_for_publish(
        post(scheduled_for=scheduled_for), [target()], {"ch_1": CH}, NOW
    )
    assert rules(problems) == [(None, rule)]


def test_publish_now_does_not_need_a_future_time() -> None:
    problems = validate_for_publish(
        post(scheduled_for=None), [target()], {"ch_1": CH}, NOW, require_future=False
    )
    assert problems == []


def test_every_problem_is_reported_at_once() -> None:
    other = ChannelFacts(id="ch_2", platform="sandbox", name="Off", status="DISABLED")
    problems = validate_for_publish(
        post(media=[], media_type=None, scheduled_for=NOW - timedelta(days=1)),
        [target(caption="  "), target(channel_id="ch_2"), target(channel_id="ch_gone")],
        {"ch_1": CH, "ch_2": other},
        NOW,
    )
    assert rules(problems) == [
        (None, "scheduledFor.future"),
        (None, "media.required"),
        ("ch_1", "caption.required"),
        ("ch_2", "channel.active"),
        ("ch_gone", "channel.exists"),
    ]
    message = summarize(problems)
    assert "ch_gone" in message
    assert "[channel.active]" in message


def test_no_channels_is_a_problem() -> None:
    assert rules(validate_for_publish(post(), [], {}, NOW)) == [(None, "channels.required")]


def test_unknown_platform_is_a_problem() -> None:
    odd = ChannelFacts(id="ch_1", platform="myspace", name="Odd", status="ACTIVE")
    assert rules(validate_for_publish(post(), [target()], {"ch_1": odd}, NOW)) == [
        ("ch_1", "channel.platform")
    ]


def test_sandbox_caption_limit_is_2200_characters() -> None:
    assert validate_for_publish(post(), [target("x" * 2200)], {"ch_1": CH}, NOW) == []
    problems = validate_for_publish(post(), [target("x" * 2201)], {"ch_1": CH}, NOW)
    assert rules(problems) == [("ch_1", "sandbox.caption_too_long")]
    assert "2201" in problems[0].message
    assert "ch_1" in problems[0].message


def test_sandbox_channel_can_narrow_media_types() -> None:
    images_only = ChannelFacts(
        id="ch_1",
        platform="sandbox",
        name="Pics",
        status="ACTIVE",
        options={"allowed_media_types": "IMAGE"},
    )
    video = post(media=[MediaItem("https://cdn.example.com/v.mp4")], media_type=MediaType.VIDEO)
    problems = validate_for_publish(video, [target()], {"ch_1": images_only}, NOW)
    assert rules(problems) == [("ch_1", "sandbox.media_type_unsupported")]
    assert "supported: IMAGE" in problems[0].message


@pytest.mark.parametrize(("count", "ok"), [(1, False), (2, True), (10, True), (11, False)])
def test_sandbox_carousel_takes_2_to_10_items(count: int, ok: bool) -> None:
    items = [MediaItem(f"https://cdn.example.com/{i}.jpg") for i in range(count)]
    carousel = post(type=PostType.CAROUSEL, media=items, media_type=MediaType.CAROUSEL)
    problems = validate_for_publish(carousel, [target()], {"ch_1": CH}, NOW)
    assert rules(problems) == ([] if ok else [("ch_1", "sandbox.carousel_size")])


def test_sandbox_reel_needs_a_video() -> None:
    problems = validate_for_publish(post(type=PostType.REEL), [target()], {"ch_1": CH}, NOW)
    assert rules(problems) == [("ch_1", "sandbox.reel_needs_video")]


def test_single_media_types_take_one_item() -> None:
    two = [MediaItem("https://a.example/1.jpg"), MediaItem("https://a.example/2.jpg")]
    problems = validate_for_publish(post(media=two), [target()], {"ch_1": CH}, NOW)
    assert rules(problems) == [("ch_1", "sandbox.single_media")]


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ("https://a.example/x.jpg", MediaType.IMAGE),
        ("https://a.example/x.MP4?sig=1", MediaType.VIDEO),
        (["https://a.example/1.jpg", {"url": "https://a.example/2.mov"}], MediaType.CAROUSEL),
        (None, None),
    ],
)
def test_media_type_is_inferred_when_not_given(media: object, expected: MediaType | None) -> None:
    assert post(media=media_items(media), media_type=None).effective_media_type is expected


def test_media_items_accepts_every_documented_shape() -> None:
    assert media_items("https://a.example/1.jpg") == [MediaItem("https://a.example/1.jpg")]
    assert media_items(
        ["https://a.example/1.jpg", {"url": "https://a.example/2.jpg", "altText": "A"}]
    ) == [
        MediaItem("https://a.example/1.jpg"),
        MediaItem("https://a.example/2.jpg", "A"),
    ]
    assert media_items(None) == []
