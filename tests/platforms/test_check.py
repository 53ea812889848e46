"""`POST /channels/{id}/check`: the platform's live answer about a channel, through the
app, against the emulators; on both databases."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import Request

from tests.emulators.facebook import FacebookEmulator
from tests.emulators.instagram import InstagramEmulator
from tests.platforms.connectors import account_channel, served
from tests.world import World

IG, IG_TOKEN, PAGE, PAGE_TOKEN = "1784", "IGTOKEN", "104", "PAGETOKEN"


@pytest.fixture
def instagram() -> Iterator[InstagramEmulator]:
    with served(InstagramEmulator(), IG, IG_TOKEN) as emulator:
        yield emulator


@pytest.fixture
def facebook() -> Iterator[FacebookEmulator]:
    with served(FacebookEmulator(), PAGE, PAGE_TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def pointed(
    world: World, instagram: InstagramEmulator, facebook: FacebookEmulator
) -> AsyncIterator[None]:
    """The app's platforms are the emulators."""
    state, settings = world.state, world.state.settings
    urls = {"instagram_api_url": instagram.url, "facebook_api_url": facebook.url}
    state.settings = settings.model_copy(update=urls)
    yield
    state.settings = settings


async def check(world: World, channel: str, **kw: Any) -> dict[str, Any]:
    owner = await world.person("owner")
    r = await owner.post(f"/channels/{channel}/check")
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def rules(result: dict[str, Any]) -> list[str]:
    return [p["rule"] for p in result["problems"]]


@pytest.mark.usefixtures("pointed")
async def test_a_working_channel_and_a_used_quota(
    world: World, instagram: InstagramEmulator
) -> None:
    channel = await account_channel(world, "instagram", IG, IG_TOKEN)
    assert await check(world, channel) == {"ok": True, "status": "ACTIVE", "problems": []}
    instagram.use_quota(IG, 50)
    result = await check(world, channel)
    assert (result["ok"], result["status"], rules(result)) == (
        False,
        "ACTIVE",
        ["instagram.quota_used"],
    )


@pytest.mark.usefixtures("pointed")
async def test_a_refused_token_needs_reconnecting_a_server_error_does_not(
    world: World, instagram: InstagramEmulator
) -> None:
    flaky = await account_channel(world, "instagram", IG, IG_TOKEN)
    instagram.fail("content_publishing_limit", None, status=502, message="bad gateway")
    result = await check(world, flaky)
    assert (result["status"], rules(result)) == ("ACTIVE", ["instagram.unreachable"])
    revoked = await account_channel(world, "instagram", IG, "revoked")
    result = await check(world, revoked)
    assert (result["status"], rules(result)) == ("NEEDS_RECONNECT", ["instagram.token"])
    r = await world.api().get(f"/channels/{revoked}")
    assert r.json()["status"] == "NEEDS_RECONNECT"


@pytest.mark.usefixtures("pointed")
async def test_a_page_is_read_with_its_token(world: World, facebook: FacebookEmulator) -> None:
    page = await account_channel(world, "facebook", PAGE, PAGE_TOKEN)
    assert (await check(world, page))["ok"] is True
    wrong = await account_channel(world, "facebook", PAGE, "other-token")
    assert rules(await check(world, wrong)) == ["facebook.token"]


async def test_the_sandbox_is_always_fine_and_only_managers_may_ask(world: World) -> None:
    assert (await check(world, world.channel_id))["ok"] is True
    viewer = await world.person("viewer")
    assert (await viewer.post(f"/channels/{world.channel_id}/check")).status_code == 403
    owner = await world.person("owner")
    assert (await owner.post("/channels/ch_NOPE/check")).status_code == 404


async def test_the_platform_is_asked_with_no_database_connection_held(world: World) -> None:
    """While the platform answers a check, the request holds no connection of the pool (it
    read the channel and let go): a slow platform cannot exhaust the database."""
    held: list[int] = []
    emulator = InstagramEmulator()

    @emulator.app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        held.append(world.db.engine.pool.checkedout())  # type: ignore[attr-defined]
        return await call_next(request)

    with served(emulator, IG, IG_TOKEN):
        state, settings = world.state, world.state.settings
        state.settings = settings.model_copy(update={"instagram_api_url": emulator.url})
        try:
            channel = await account_channel(world, "instagram", IG, IG_TOKEN)
            owner = await world.person("owner")
            r = await owner.post(f"/channels/{channel}/check")
        finally:
            state.settings = settings
    assert (r.status_code, r.json()) == (200, {"ok": True, "status": "ACTIVE", "problems": []})
    assert held
    assert set(held) == {0}
