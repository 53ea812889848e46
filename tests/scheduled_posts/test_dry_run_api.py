"""The dry run: `POST /scheduled-posts/validate` and `GET /scheduled-posts/{id}/validation`
list every problem at once (rules, the media as their server describes them, and with
`?live=true` the platform's own state), and store nothing; on both databases."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from tests.emulators.instagram import InstagramEmulator
from tests.emulators.server import EmulatorServer
from tests.platforms.connectors import account_channel, served
from tests.world import World
from tidings.scheduled_posts.models import ScheduledPost

MB = 1024 * 1024


def media_host() -> FastAPI:
    """Files with the types and sizes their names say; one host refuses HEAD."""
    app = FastAPI()
    files = {
        "a.jpg": ("image/jpeg", 2_000),
        "big.jpg": ("image/jpeg", 9 * MB),
        "b.png": ("image/png", 2_000),
        "clip.mp4": ("video/mp4", 50_000),
        "nohead.jpg": ("image/jpeg", 3_000),
        "slow.jpg": ("image/jpeg", 1_000),
    }

    @app.api_route("/{name}", methods=["GET", "HEAD"])
    async def serve(name: str, request: Request) -> Response:
        if name not in files:
            return Response(status_code=404)
        content_type, size = files[name]
        if name.startswith("slow"):
            await asyncio.sleep(1.5)
        if name.startswith("nohead"):
            if request.method == "HEAD":
                return Response(status_code=405)
            headers = {"Content-Range": f"bytes 0-0/{size}"}
            return Response(b"x", status_code=206, media_type=content_type, headers=headers)
        return Response(b"x" * size, media_type=content_type)

    return app


@pytest.fixture
def media() -> Iterator[str]:
    with EmulatorServer(media_host()) as server:
        yield server.url


@pytest.fixture
def instagram() -> Iterator[InstagramEmulator]:
    with served(InstagramEmulator(), "1784", "IGTOKEN") as emulator:
        yield emulator


@pytest.fixture
async def ig_channel(world: World, instagram: InstagramEmulator) -> AsyncIterator[str]:
    # The app's platforms: the emulator, for `?live=true`.
    state = world.state
    settings = state.settings
    state.settings = settings.model_copy(update={"instagram_api_url": instagram.url})
    yield await account_channel(world, "instagram", "1784", "IGTOKEN")
    state.settings = settings


async def dry_run(world: World, body: dict[str, Any], live: bool = False) -> dict[str, Any]:
    r = await world.api().post(
        "/scheduled-posts/validate", params={"live": "true"} if live else None, json=body
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def rules(result: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["channelId"] or "", p["rule"]) for p in result["problems"])


async def count_posts(world: World) -> int:
    async with world.db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(ScheduledPost)) or 0)


async def test_a_publishable_post_is_valid_and_nothing_is_stored(world: World, media: str) -> None:
    before = await count_posts(world)
    result = await dry_run(world, world.post_body(media=f"{media}/a.jpg"))
    assert result == {"valid": True, "problems": []}
    assert await count_posts(world) == before


async def test_every_problem_at_once_with_the_media_as_served(
    world: World, media: str, ig_channel: str
) -> None:
    body = world.post_body(
        media=[f"{media}/big.jpg", f"{media}/b.png", f"{media}/gone.jpg"],
        mediaType="CAROUSEL",
        type="CAROUSEL",
        channels={ig_channel: {"caption": "#a " * 31}, world.channel_id: {"caption": "ok"}},
    )
    result = await dry_run(world, body)
    assert result["valid"] is False
    assert rules(result) == sorted(
        [
            ("", "media.unreachable"),
            (ig_channel, "instagram.image_format"),  # .png by its name (the pure rule)
            (ig_channel, "instagram.media_content_type"),  # image/png as served
            (ig_channel, "instagram.media_too_large"),  # 9 MB as served
            (ig_channel, "instagram.too_many_hashtags"),
        ]
    )
    by_rule = {p["rule"]: p["message"] for p in result["problems"]}
    assert "9.0 MB" in by_rule["instagram.media_too_large"]
    assert "gone.jpg" in by_rule["media.unreachable"]


async def test_a_host_that_refuses_head_is_asked_for_one_byte(
    world: World, media: str, ig_channel: str
) -> None:
    body = world.post_body(media=f"{media}/nohead.jpg", channels={ig_channel: {"caption": "x"}})
    assert await dry_run(world, body) == {"valid": True, "problems": []}


async def test_live_asks_the_platform_for_its_quota(
    world: World, media: str, ig_channel: str, instagram: InstagramEmulator
) -> None:
    body = world.post_body(media=f"{media}/a.jpg", channels={ig_channel: {"caption": "x"}})
    assert (await dry_run(world, body, live=True))["valid"] is True
    instagram.use_quota("1784", 50)
    assert (await dry_run(world, body))["valid"] is True  # not asked without live
    result = await dry_run(world, body, live=True)
    assert rules(result) == [(ig_channel, "instagram.quota_used")]
    assert "50 of its 50" in result["problems"][0]["message"]


async def test_a_stored_post_has_its_own_dry_run(world: World, media: str) -> None:
    body = world.post_body(media=f"{media}/clip.mp4", mediaType="IMAGE")
    r = await world.api().post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    r = await world.api().get(f"/scheduled-posts/{post_id}/validation")
    assert r.status_code == 200, r.text
    assert r.json() == {"valid": True, "problems": []}
    r = await world.api().patch(
        f"/scheduled-posts/{post_id}", json={"scheduledFor": "2020-01-01T00:00:00Z"}
    )
    assert r.status_code == 200, r.text
    r = await world.api().get(f"/scheduled-posts/{post_id}/validation")
    assert [p["rule"] for p in r.json()["problems"]] == ["scheduledFor.future"]


async def test_refusals(world: World) -> None:
    async with World.build(world.app, name="Other") as other:
        r = await other.api().post("/scheduled-posts", json=other.post_body())
        theirs = r.json()["id"]
    assert (await world.api().get(f"/scheduled-posts/{theirs}/validation")).status_code == 404
    r = await world.api().post("/scheduled-posts/validate", json={"channels": [], "bogus": 1})
    assert r.status_code == 422
    unknown = await dry_run(world, replace_channels(world.post_body(), "ch_NOPE"))
    # (cdn.example.com cannot be reached from here: that is a problem too)
    assert rules(unknown) == [("", "media.unreachable"), ("ch_NOPE", "channel.exists")]


def replace_channels(body: dict[str, Any], channel_id: str) -> dict[str, Any]:
    return body | {"channels": {channel_id: {"caption": "x"}}}


async def test_a_dry_run_waiting_on_the_network_holds_up_no_writer(
    world: World, media: str
) -> None:
    """On SQLite a write transaction holds the database's one write lock: the dry run reads,
    so a post created meanwhile does not wait for its media to answer."""
    finished: dict[str, float] = {}

    async def timed(name: str, work: Any) -> None:
        await work
        finished[name] = time.monotonic()

    await asyncio.gather(
        timed("dry run", dry_run(world, world.post_body(media=f"{media}/slow.jpg"))),
        timed("create", world.api().post("/scheduled-posts", json=world.post_body())),
    )
    assert finished["create"] < finished["dry run"] - 1.0
