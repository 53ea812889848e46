"""Full publish validation, request shapes and PATCH semantics of /scheduled-posts.

Every publish rule is broken on its own and must come back as a 400 whose message names
the rule and, for a channel's rule, the channel; on every way into WAITING_FOR_APPROVAL
(create, submit, PATCH while waiting) and on the way out of it (approve, publish now).
A refused request changes nothing in the database.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.world import World, future
from tidings.publishing.models import Task
from tidings.scheduled_posts.models import ScheduledPost, Target

WAITING = "WAITING_FOR_APPROVAL"
IMAGE = "https://cdn.example.com/a.jpg"
VIDEO = "https://cdn.example.com/clip.mp4"


# --- helpers ---------------------------------------------------------------------------------


async def snapshot(world: World, post_id: str) -> dict[str, Any]:
    return await world.snapshot(post_id)


async def post_row(world: World, post_id: str) -> ScheduledPost:
    async with world.db.transaction() as session:
        query = select(ScheduledPost).where(ScheduledPost.id == post_id)
        return (await session.execute(query)).scalar_one()


async def targets_of(world: World, post_id: str) -> list[Target]:
    async with world.db.transaction() as session:
        query = select(Target).where(Target.post_id == post_id).order_by(Target.position)
        return list((await session.execute(query)).scalars())


async def post_count(world: World) -> int:
    async with world.db.transaction() as session:
        query = select(func.count()).select_from(ScheduledPost)
        query = query.where(ScheduledPost.workspace_id == world.workspace_id)
        return int((await session.execute(query)).scalar_one())


async def task_count(world: World) -> int:
    async with world.db.transaction() as session:
        query = select(func.count()).select_from(Task)
        return int((await session.execute(query)).scalar_one())


async def create(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def disabled_channel(world: World, name: str = "Disabled") -> str:
    """A channel of the world, disabled the way a client would (PATCH with the API key)."""
    channel_id = await world.add_channel(name)
    r = await world.api().patch(f"/channels/{channel_id}", json={"status": "DISABLED"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "DISABLED"
    return channel_id


def assert_shape_error(r: httpx.Response, path: list[Any]) -> None:
    assert r.status_code == 422, r.text
    errors = r.json()["error"]
    assert errors
    for error in errors:
        assert set(error) == {"message", "path", "type", "context"}
        assert isinstance(error["message"], str)
        assert isinstance(error["type"], str)
        assert isinstance(error["context"], dict)
    assert path in [e["path"] for e in errors], errors


def assert_violations(r: httpx.Response, expected: set[tuple[str | None, str]]) -> None:
    """A 400 reporting exactly `expected` (channel id or None, rule), each named in the message."""
    assert r.status_code == 400, r.text
    body = r.json()
    message = body["message"]
    assert isinstance(message, str)
    problems = body["problems"]
    assert {(p["channelId"], p["rule"]) for p in problems} == expected, problems
    assert len(problems) == len(expected)
    for channel_id, rule in expected:
        assert rule in message, (rule, message)
        if channel_id is not None:
            assert channel_id in message, (channel_id, message)
    for p in problems:
        assert isinstance(p["message"], str)
        if p["channelId"] is not None:
            assert p["channelId"] in p["message"]


# --- one case per publish rule ---------------------------------------------------------------


@dataclass
class Channels:
    """The channels a rule case may use besides the world's own."""

    disabled: str
    image_only: str


@dataclass(frozen=True)
class RuleCase:
    rule: str
    #: Which channel the problem is reported on: "world", "disabled", "image_only" or None.
    on: str | None
    #: Fields that break the rule, for a create body (and for a PATCH unless `patch` is set).
    fields: Callable[[World, Channels], dict[str, Any]]
    patch: Callable[[World, Channels], dict[str, Any]] | None = None

    def patch_fields(self, world: World, ch: Channels) -> dict[str, Any]:
        return (self.patch or self.fields)(world, ch)


def _caption(caption: Any) -> Callable[[World, Channels], dict[str, Any]]:
    return lambda w, ch: {"channels": {w.channel_id: {"caption": caption}}}


RULE_CASES = {
    "scheduledFor-missing": RuleCase(
        "scheduledFor.required", None, lambda w, ch: {"scheduledFor": None}
    ),
    "scheduledFor-past": RuleCase(
        "scheduledFor.future", None, lambda w, ch: {"scheduledFor": future(-1)}
    ),
    "media-missing": RuleCase("media.required", None, lambda w, ch: {"media": None}),
    "media-empty-list": RuleCase("media.required", None, lambda w, ch: {"media": []}),
    "no-channel": RuleCase(
        "channels.required",
        None,
        lambda w, ch: {"channels": {}},
        patch=lambda w, ch: {"channels": {w.channel_id: None}},
    ),
    "caption-empty": RuleCase("caption.required", "world", _caption("")),
    "caption-blank": RuleCase("caption.required", "world", _caption(" \n\t ")),
    "caption-missing": RuleCase(
        "caption.required",
        "world",
        lambda w, ch: {"channels": {w.channel_id: {"firstComment": "only a comment"}}},
        patch=_caption(None),
    ),
    "channel-disabled": RuleCase(
        "channel.active",
        "disabled",
        lambda w, ch: {"channels": {ch.disabled: {"caption": "Hello"}}},
    ),
    "caption-too-long": RuleCase("sandbox.caption_too_long", "world", _caption("x" * 2201)),
    "media-type-unsupported": RuleCase(
        "sandbox.media_type_unsupported",
        "image_only",
        lambda w, ch: {
            "mediaType": "VIDEO",
            "media": VIDEO,
            "channels": {ch.image_only: {"caption": "Hello"}},
        },
    ),
    "inferred-video-unsupported": RuleCase(
        "sandbox.media_type_unsupported",
        "image_only",
        lambda w, ch: {
            "mediaType": None,
            "media": VIDEO,
            "channels": {ch.image_only: {"caption": "Hello"}},
        },
    ),
    "carousel-of-one": RuleCase(
        "sandbox.carousel_size",
        "world",
        lambda w, ch: {"mediaType": "CAROUSEL", "media": [IMAGE]},
    ),
    "carousel-of-eleven": RuleCase(
        "sandbox.carousel_size",
        "world",
        lambda w, ch: {
            "mediaType": "CAROUSEL",
            "media": [f"https://cdn.example.com/{i}.jpg" for i in range(11)],
        },
    ),
    "image-with-two-items": RuleCase(
        "sandbox.single_media",
        "world",
        lambda w, ch: {"mediaType": "IMAGE", "media": [IMAGE, {"url": IMAGE, "altText": "b"}]},
    ),
    "reel-without-video": RuleCase(
        "sandbox.reel_needs_video", "world", lambda w, ch: {"type": "REEL"}
    ),
    "carousel-post-of-image": RuleCase(
        "sandbox.carousel_type", "world", lambda w, ch: {"type": "CAROUSEL"}
    ),
}


@pytest.fixture
async def channels(world: World) -> Channels:
    return Channels(
        disabled=await disabled_channel(world),
        image_only=await world.add_channel("Photos", allowed_media_types="IMAGE"),
    )


def expected_problem(case: RuleCase, world: World, ch: Channels) -> set[tuple[str | None, str]]:
    on = {
        None: None,
        "world": world.channel_id,
        "disabled": ch.disabled,
        "image_only": ch.image_only,
    }[case.on]
    return {(on, case.rule)}


@pytest.mark.parametrize("way", ["create", "submit", "patch-while-waiting"])
@pytest.mark.parametrize("case_id", list(RULE_CASES))
async def test_each_rule_is_a_400_naming_channel_and_rule(
    world: World, channels: Channels, case_id: str, way: str
) -> None:
    case = RULE_CASES[case_id]
    api = world.api()
    expected = expected_problem(case, world, channels)

    if way == "create":
        body = world.post_body(status=WAITING, **case.fields(world, channels))
        r = await api.post("/scheduled-posts", json=body)
        assert_violations(r, expected)
        assert await post_count(world) == 0
        return

    if way == "submit":
        # DRAFT takes the incomplete post; submitting it runs the checks.
        post = await create(api, world.post_body(**case.fields(world, channels)))
        assert post["status"] == "DRAFT"
        before = await snapshot(world, post["id"])
        r = await api.post(f"/scheduled-posts/{post['id']}/submit-for-approval")
    else:
        post = await create(api, world.post_body(status=WAITING))
        before = await snapshot(world, post["id"])
        r = await api.patch(
            f"/scheduled-posts/{post['id']}", json=case.patch_fields(world, channels)
        )
    assert_violations(r, expected)
    assert await snapshot(world, post["id"]) == before


@pytest.mark.parametrize("action", ["approve", "publish"])
@pytest.mark.parametrize("change", ["channel-disabled", "channel-narrowed"])
async def test_approving_revalidates(world: World, action: str, change: str) -> None:
    """The world can change while a post waits: approving (or publishing) checks again."""
    api = world.api()
    other = await world.add_channel("Second")
    post = await create(
        api,
        world.post_body(
            status=WAITING,
            channels={world.channel_id: {"caption": "Hi"}, other: {"caption": "Hi"}},
        ),
    )
    if change == "channel-disabled":
        r = await api.patch(f"/channels/{other}", json={"status": "DISABLED"})
        rule = "channel.active"
    else:
        r = await api.patch(
            f"/channels/{other}", json={"options": {"allowed_media_types": "VIDEO"}}
        )
        rule = "sandbox.media_type_unsupported"
    assert r.status_code == 200, r.text
    before = await snapshot(world, post["id"])

    r = await (await world.person("reviewer")).post(f"/scheduled-posts/{post['id']}/{action}")

    assert_violations(r, {(other, rule)})
    assert await snapshot(world, post["id"]) == before
    assert await task_count(world) == 0


@pytest.mark.parametrize("way", ["create", "submit"])
async def test_every_violation_is_reported_at_once(world: World, way: str) -> None:
    api = world.api()
    disabled = await disabled_channel(world)
    body = world.post_body(
        scheduledFor=future(-2),
        media=None,
        mediaType=None,
        channels={world.channel_id: {"caption": "  "}, disabled: {"caption": "y" * 2300}},
    )
    expected: set[tuple[str | None, str]] = {
        (None, "scheduledFor.future"),
        (None, "media.required"),
        (world.channel_id, "caption.required"),
        (disabled, "channel.active"),
        (disabled, "sandbox.caption_too_long"),
    }
    if way == "create":
        r = await api.post("/scheduled-posts", json={**body, "status": WAITING})
        assert_violations(r, expected)
        assert await post_count(world) == 0
    else:
        post = await create(api, body)
        r = await api.post(f"/scheduled-posts/{post['id']}/submit-for-approval")
        assert_violations(r, expected)
        assert (await post_row(world, post["id"])).status == "DRAFT"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"channels": {"@world": {"caption": "x" * 2200}}}, id="caption-2200"),
        pytest.param(
            {"mediaType": "CAROUSEL", "media": [IMAGE, {"url": IMAGE, "altText": "2nd"}]},
            id="carousel-of-two",
        ),
        pytest.param(
            {
                "type": "CAROUSEL",
                "mediaType": None,
                "media": [f"https://cdn.example.com/{i}.png" for i in range(10)],
            },
            id="carousel-of-ten-inferred",
        ),
        pytest.param({"type": "REEL", "mediaType": "VIDEO", "media": VIDEO}, id="reel"),
        pytest.param(
            {"mediaType": None, "media": IMAGE, "channels": {"@photos": {"caption": "ok"}}},
            id="inferred-image-on-image-only",
        ),
    ],
)
async def test_limits_are_inclusive(world: World, fields: dict[str, Any]) -> None:
    photos = await world.add_channel("Photos", allowed_media_types="IMAGE")
    if "channels" in fields:
        names = {"@world": world.channel_id, "@photos": photos}
        fields = {**fields, "channels": {names[k]: v for k, v in fields["channels"].items()}}
    post = await create(world.api(), world.post_body(status=WAITING, **fields))
    assert post["status"] == WAITING


# --- DRAFT is permissive -------------------------------------------------------------------


async def test_draft_accepts_an_empty_post(world: World) -> None:
    api = world.api()
    r = await api.post("/scheduled-posts", json={})

    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status"] == "DRAFT"
    assert doc["type"] == "POST"
    for name in ("media", "mediaType", "scheduledFor", "timezone", "taskId", "notes"):
        assert doc[name] is None, name
    assert doc["mediumsData"] == {}
    row = await post_row(world, doc["id"])
    assert (row.status, row.media, row.scheduled_for) == ("DRAFT", None, None)

    r = await api.post(f"/scheduled-posts/{doc['id']}/submit-for-approval")
    assert_violations(
        r,
        {
            (None, "scheduledFor.required"),
            (None, "media.required"),
            (None, "channels.required"),
        },
    )


async def test_draft_accepts_an_invalid_post_and_edits_to_it(world: World) -> None:
    api = world.api()
    disabled = await disabled_channel(world)
    post = await create(
        api,
        world.post_body(
            scheduledFor=future(-24),
            channels={world.channel_id: {"caption": ""}, disabled: {"caption": "z" * 5000}},
        ),
    )
    assert post["status"] == "DRAFT"

    r = await api.patch(
        f"/scheduled-posts/{post['id']}",
        json={"media": None, "type": "REEL", "scheduledFor": None},
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "DRAFT"
    assert r.json()["media"] is None
    assert set(r.json()["mediumsData"]) == {world.channel_id, disabled}


# --- instants and time zones ---------------------------------------------------------------


@pytest.mark.parametrize("way", ["create-draft", "create-waiting", "patch", "approve"])
async def test_offset_instants_are_stored_and_returned_in_utc(world: World, way: str) -> None:
    api = world.api()
    sent, utc_text = "2031-03-04T10:00:00+05:30", "2031-03-04T04:30:00Z"
    utc = datetime(2031, 3, 4, 4, 30, tzinfo=UTC)
    if way.startswith("create"):
        status = WAITING if way == "create-waiting" else "DRAFT"
        body = world.post_body(status=status, scheduledFor=sent, timezone="Asia/Kolkata")
        r = await api.post("/scheduled-posts", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["timezone"] == "Asia/Kolkata"
    else:
        post = await create(api, world.post_body(status=WAITING))
        if way == "patch":
            r = await api.patch(f"/scheduled-posts/{post['id']}", json={"scheduledFor": sent})
        else:
            reviewer = await world.person("reviewer")
            r = await reviewer.post(
                f"/scheduled-posts/{post['id']}/approve", json={"scheduledFor": sent}
            )
        assert r.status_code == 200, r.text
    doc = r.json()

    assert doc["scheduledFor"] == utc_text
    row = await post_row(world, doc["id"])
    assert row.scheduled_for == utc
    assert row.scheduled_for.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    r = await api.get(f"/scheduled-posts/{doc['id']}")
    assert r.json()["scheduledFor"] == utc_text
    for name in ("createdAt", "updatedAt"):
        assert r.json()[name].endswith("Z")


_SHAPE_ERRORS = {
    "naive-scheduledFor": ({"scheduledFor": "2031-03-04T10:00:00"}, ["scheduledFor"]),
    "date-only-scheduledFor": ({"scheduledFor": "2031-03-04"}, ["scheduledFor"]),
    "numeric-scheduledFor": ({"scheduledFor": 1_900_000_000}, ["scheduledFor"]),
    "garbage-scheduledFor": ({"scheduledFor": "next tuesday"}, ["scheduledFor"]),
    "invalid-timezone": ({"timezone": "Mars/Olympus_Mons"}, ["timezone"]),
    "unknown-field": ({"hashtags": ["#a"]}, ["hashtags"]),
    "unknown-channel-field": (
        {"channels": {"@world": {"caption": "x", "pin": True}}},
        ["channels", "@world", "pin"],
    ),
    "bad-media-type": ({"mediaType": "GIF"}, ["mediaType"]),
    "bad-type": ({"type": "TWEET"}, ["type"]),
    "caption-not-text": (
        {"channels": {"@world": {"caption": 42}}},
        ["channels", "@world", "caption"],
    ),
}


def _resolve(world: World, value: Any) -> Any:
    """Replace the placeholder "@world" with the world's channel id, anywhere in `value`."""
    if value == "@world":
        return world.channel_id
    if isinstance(value, dict):
        return {_resolve(world, k): _resolve(world, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(world, v) for v in value]
    return value


@pytest.mark.parametrize("case_id", list(_SHAPE_ERRORS))
async def test_create_shape_errors_are_422(world: World, case_id: str) -> None:
    fields, path = (_resolve(world, part) for part in _SHAPE_ERRORS[case_id])
    body = world.post_body(status=WAITING, **fields)
    r = await world.api().post("/scheduled-posts", json=body)

    assert_shape_error(r, path)
    assert await post_count(world) == 0


_PATCH_SHAPE_ERRORS = {
    **_SHAPE_ERRORS,
    "status-waiting": ({"status": WAITING}, ["status"]),
    "status-scheduled": ({"status": "SCHEDULED"}, ["status"]),
    "null-status": ({"status": None}, ["status"]),
    "null-type": ({"type": None}, ["type"]),
    "null-channels": ({"channels": None}, ["channels"]),
}


@pytest.mark.parametrize("case_id", list(_PATCH_SHAPE_ERRORS))
async def test_patch_shape_errors_are_422(world: World, case_id: str) -> None:
    api = world.api()
    post = await create(api, world.post_body())
    before = await snapshot(world, post["id"])
    fields, path = (_resolve(world, part) for part in _PATCH_SHAPE_ERRORS[case_id])

    r = await api.patch(f"/scheduled-posts/{post['id']}", json=fields)

    assert_shape_error(r, path)
    assert await snapshot(world, post["id"]) == before


# --- channels that do not exist ------------------------------------------------------------


async def _foreign_channel(world: World) -> str:
    async with World.build(world.app, name="Rival") as rival:
        return rival.channel_id


@pytest.mark.parametrize("whose", ["unknown", "other-workspace"])
@pytest.mark.parametrize("way", ["create-draft", "create-waiting", "patch-draft", "patch-waiting"])
async def test_unknown_channel_is_a_400_naming_it(world: World, way: str, whose: str) -> None:
    api = world.api()
    missing = "ch_DOESNOTEXIST000000000000" if whose == "unknown" else await _foreign_channel(world)
    channels = {world.channel_id: {"caption": "Hi"}, missing: {"caption": "Hi"}}
    if way.startswith("create"):
        status = WAITING if way == "create-waiting" else "DRAFT"
        r = await api.post(
            "/scheduled-posts", json=world.post_body(status=status, channels=channels)
        )
        assert r.status_code == 400, r.text
        assert missing in r.json()["message"]
        assert await post_count(world) == 0
        return
    status = WAITING if way == "patch-waiting" else "DRAFT"
    post = await create(api, world.post_body(status=status))
    before = await snapshot(world, post["id"])

    r = await api.patch(f"/scheduled-posts/{post['id']}", json={"channels": channels})

    assert r.status_code == 400, r.text
    assert missing in r.json()["message"]
    assert await snapshot(world, post["id"]) == before


# --- PATCH semantics -----------------------------------------------------------------------


async def _two_channel_post(world: World, status: str = "DRAFT") -> tuple[dict[str, Any], str]:
    other = await world.add_channel("Second", tone="casual")
    post = await create(
        world.api(),
        world.post_body(
            status=status,
            timezone="Europe/Paris",
            notes="draft one",
            channels={
                world.channel_id: {
                    "caption": "Main caption",
                    "firstComment": "Link in bio",
                    "options": {"pin": True, "tags": ["a", "b"]},
                },
                other: {"caption": "Other caption"},
            },
        ),
    )
    return post, other


@pytest.mark.parametrize("status", ["DRAFT", WAITING])
async def test_patch_channel_null_removes_it(world: World, status: str) -> None:
    post, other = await _two_channel_post(world, status)

    r = await world.api().patch(f"/scheduled-posts/{post['id']}", json={"channels": {other: None}})

    assert r.status_code == 200, r.text
    assert r.json()["status"] == status
    assert list(r.json()["mediumsData"]) == [world.channel_id]
    assert r.json()["mediumsData"][world.channel_id] == post["mediumsData"][world.channel_id]
    assert [t.channel_id for t in await targets_of(world, post["id"])] == [world.channel_id]


async def test_patch_merges_each_channel_field_by_field(world: World) -> None:
    api = world.api()
    post, other = await _two_channel_post(world)
    url = f"/scheduled-posts/{post['id']}"
    main = post["mediumsData"][world.channel_id]

    r = await api.patch(url, json={"channels": {world.channel_id: {"caption": "New caption"}}})

    assert r.status_code == 200, r.text
    medium = r.json()["mediumsData"][world.channel_id]
    assert medium == {**main, "caption": "New caption"}
    assert r.json()["mediumsData"][other] == post["mediumsData"][other]
    (target, other_target) = await targets_of(world, post["id"])
    assert (target.caption, target.first_comment, target.options) == (
        "New caption",
        "Link in bio",
        {"pin": True, "tags": ["a", "b"]},
    )
    assert other_target.caption == "Other caption"

    r = await api.patch(url, json={"channels": {world.channel_id: {"firstComment": None}}})
    medium = r.json()["mediumsData"][world.channel_id]
    assert (medium["caption"], medium["firstComment"], medium["options"]) == (
        "New caption",
        None,
        {"pin": True, "tags": ["a", "b"]},
    )

    r = await api.patch(url, json={"channels": {world.channel_id: {"options": {"pin": False}}}})
    medium = r.json()["mediumsData"][world.channel_id]
    assert (medium["caption"], medium["options"]) == ("New caption", {"pin": False})
    (target, _) = await targets_of(world, post["id"])
    assert (target.caption, target.first_comment, target.options) == (
        "New caption",
        None,
        {"pin": False},
    )


async def test_patch_adds_a_channel_after_the_others(world: World) -> None:
    post, other = await _two_channel_post(world)
    third = await world.add_channel("Third")

    r = await world.api().patch(
        f"/scheduled-posts/{post['id']}", json={"channels": {third: {"caption": "Third"}}}
    )

    assert r.status_code == 200, r.text
    assert list(r.json()["mediumsData"]) == [world.channel_id, other, third]
    assert r.json()["mediumsData"][third]["mediumName"] == "Third"


async def test_patch_leaves_omitted_fields_alone(world: World) -> None:
    post, _ = await _two_channel_post(world)

    r = await world.api().patch(f"/scheduled-posts/{post['id']}", json={"notes": "second go"})

    assert r.status_code == 200, r.text
    doc = r.json()
    changed = {"notes", "updatedAt", "revision"}
    assert {k: v for k, v in doc.items() if k not in changed} == {
        k: v for k, v in post.items() if k not in changed
    }
    assert doc["notes"] == "second go"
    assert doc["revision"] == post["revision"] + 1


@pytest.mark.parametrize("name", ["media", "mediaType", "scheduledFor", "timezone", "notes"])
async def test_patch_explicit_null_clears_a_field(world: World, name: str) -> None:
    post, _ = await _two_channel_post(world)
    assert post[name] is not None

    r = await world.api().patch(f"/scheduled-posts/{post['id']}", json={name: None})

    assert r.status_code == 200, r.text
    assert r.json()[name] is None
    untouched = {"media", "mediaType", "scheduledFor", "timezone", "notes"} - {name}
    for other in untouched:
        assert r.json()[other] == post[other], other
    row = await post_row(world, post["id"])
    column = {
        "media": "media",
        "mediaType": "media_type",
        "scheduledFor": "scheduled_for",
        "timezone": "timezone",
        "notes": "notes",
    }[name]
    assert getattr(row, column) is None


async def test_valid_patch_while_waiting_stays_waiting(world: World) -> None:
    post, _ = await _two_channel_post(world, WAITING)
    new_time = future(72)

    r = await world.api().patch(
        f"/scheduled-posts/{post['id']}",
        json={"scheduledFor": new_time, "channels": {world.channel_id: {"caption": "v2"}}},
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == WAITING
    assert r.json()["revision"] == post["revision"] + 1
    row = await post_row(world, post["id"])
    assert row.status == WAITING
    assert row.scheduled_for == datetime.fromisoformat(new_time)
    assert (await targets_of(world, post["id"]))[0].caption == "v2"


async def test_failing_patch_while_waiting_changes_nothing(world: World) -> None:
    """One violation in a PATCH that also makes valid changes: nothing at all is applied."""
    api = world.api()
    post, other = await _two_channel_post(world, WAITING)
    third = await world.add_channel("Third")
    before = await snapshot(world, post["id"])

    r = await api.patch(
        f"/scheduled-posts/{post['id']}",
        json={
            "notes": "changed",
            "timezone": "Asia/Tokyo",
            "scheduledFor": future(5),
            "channels": {
                world.channel_id: {"caption": "Changed", "firstComment": None},
                other: None,
                third: {"caption": "x" * 2201},
            },
        },
    )

    assert_violations(r, {(third, "sandbox.caption_too_long")})
    assert await snapshot(world, post["id"]) == before
    r = await api.get(f"/scheduled-posts/{post['id']}")
    assert r.json() == post


# --- If-Match ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["{}", '"{}"', 'W/"{}"', " {} "])
async def test_patch_with_current_if_match(world: World, form: str) -> None:
    api = world.api()
    post = await create(api, world.post_body())

    r = await api.patch(
        f"/scheduled-posts/{post['id']}",
        json={"notes": "ok"},
        headers={"If-Match": form.format(post["revision"])},
    )

    assert r.status_code == 200, r.text
    assert r.json()["revision"] == post["revision"] + 1


async def test_patch_with_stale_if_match_is_409(world: World) -> None:
    api = world.api()
    post = await create(api, world.post_body())
    url = f"/scheduled-posts/{post['id']}"
    assert (await api.patch(url, json={"notes": "first"})).status_code == 200
    before = await snapshot(world, post["id"])

    r = await api.patch(url, json={"notes": "second"}, headers={"If-Match": str(post["revision"])})

    assert r.status_code == 409, r.text
    assert "revision" in r.json()["message"]
    assert await snapshot(world, post["id"]) == before


@pytest.mark.parametrize("value", ["abc", '"1', '1"', "W/1", "1e3", "-1", "1" * 19, "*, 1"])
async def test_if_match_must_be_a_revision_number(world: World, value: str) -> None:
    api = world.api()
    post = await create(api, world.post_body())
    before = await snapshot(world, post["id"])

    r = await api.patch(
        f"/scheduled-posts/{post['id']}", json={"notes": "x"}, headers={"If-Match": value}
    )

    assert r.status_code == 422, r.text
    [error] = r.json()["error"]
    assert (error["path"], error["type"]) == (["header", "If-Match"], "string_pattern_mismatch")
    assert await snapshot(world, post["id"]) == before


async def test_if_match_star_is_any_revision(world: World) -> None:
    api = world.api()
    post = await create(api, world.post_body())
    assert (await api.patch(f"/scheduled-posts/{post['id']}", json={"notes": "1"})).is_success

    r = await api.patch(
        f"/scheduled-posts/{post['id']}", json={"notes": "2"}, headers={"If-Match": "*"}
    )

    assert r.status_code == 200, r.text
    assert (r.json()["notes"], r.json()["revision"]) == ("2", post["revision"] + 2)


async def test_the_schema_gives_the_shape_of_if_match(world: World) -> None:
    spec = (await world.anonymous().get("/openapi.json")).json()
    [header] = [
        p for p in spec["paths"]["/scheduled-posts/{post_id}"]["patch"]["parameters"]
        if p["name"] == "If-Match"
    ]  # fmt: skip
    [shape] = [s for s in header["schema"]["anyOf"] if s.get("type") == "string"]
    pattern = re.compile(shape["pattern"])
    assert [v for v in ("7", '"7"', 'W/"7"', "*") if pattern.match(v)] == ["7", '"7"', 'W/"7"', "*"]
    assert not any(pattern.match(v) for v in ("abc", '"7', "W/7", "7,8"))


ActionCall = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[httpx.Response]]


def _post_action(name: str, body: dict[str, Any] | None = None) -> ActionCall:
    async def call(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
        return await client.post(f"{url}/{name}", json=body, headers=headers)

    return call


async def _delete(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    return await client.delete(url, headers=headers)


#: action → (status it starts from, actor, call, success status code)
_IF_MATCH_ACTIONS: dict[str, tuple[str, str, ActionCall, int]] = {
    "submit": ("DRAFT", "api_key", _post_action("submit-for-approval"), 200),
    "reject": (WAITING, "reviewer", _post_action("reject", {"notes": "no"}), 200),
    "approve": (WAITING, "reviewer", _post_action("approve"), 200),
    "publish": (WAITING, "reviewer", _post_action("publish"), 200),
    "revert": ("SCHEDULED", "api_key", _post_action("revert"), 200),
    "cancel": ("SCHEDULED", "api_key", _post_action("cancel"), 200),
    "delete": ("DRAFT", "api_key", _delete, 204),
}


@pytest.mark.parametrize("action", list(_IF_MATCH_ACTIONS))
async def test_actions_honour_if_match(world: World, action: str) -> None:
    start, actor, call, success = _IF_MATCH_ACTIONS[action]
    api = world.api()
    reviewer = await world.person("reviewer")
    post = await create(api, world.post_body(status="DRAFT" if start == "DRAFT" else WAITING))
    url = f"/scheduled-posts/{post['id']}"
    if start == "SCHEDULED":
        post = (await reviewer.post(f"{url}/approve")).json()
        assert post["status"] == "SCHEDULED"
    client = api if actor == "api_key" else reviewer
    before = await snapshot(world, post["id"])

    for stale in (post["revision"] - 1, post["revision"] + 1):
        r = await call(client, url, {"If-Match": str(stale)})
        assert r.status_code == 409, r.text
        assert "revision" in r.json()["message"]
        assert await snapshot(world, post["id"]) == before

    r = await call(client, url, {"If-Match": str(post["revision"])})
    assert r.status_code == success, r.text
