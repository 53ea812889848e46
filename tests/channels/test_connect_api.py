"""Connecting an Instagram account by OAuth, against the emulator, on both databases: the
state is bound to the sign-in and used once, the code becomes a long-lived token, and the
account's channel is created, or reconnected in place."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select, update

from tests.emulators.instagram import InstagramEmulator
from tests.platforms.connectors import served
from tests.world import World
from tidings.channels.models import Channel, ChannelStatus, OAuthState
from tidings.platforms.store import Credentials
from tidings.publishing.models import Task, TaskKind

CLIENT, SECRET, ACCOUNT = "app-1", "app-secret", "17841400000000099"


@pytest.fixture
def instagram() -> Iterator[InstagramEmulator]:
    with served(InstagramEmulator(), "unused", "unused") as emulator:
        emulator.register_app(CLIENT, SECRET)
        yield emulator


@pytest.fixture
async def owner(world: World, instagram: InstagramEmulator) -> AsyncIterator[httpx.AsyncClient]:
    state, settings = world.state, world.state.settings
    state.settings = settings.model_copy(
        update={
            "instagram_api_url": instagram.url,
            "instagram_token_url": f"{instagram.url}/oauth/access_token",
            "instagram_oauth_url": "https://www.instagram.com/oauth/authorize",
            "public_url": "https://tidings.example.com",
        }
    )
    person = await world.person("owner")
    r = await person.put(
        "/platform-apps/instagram", json={"clientId": CLIENT, "clientSecret": SECRET}
    )
    assert r.status_code == 200, r.text
    yield person
    state.settings = settings


async def start(person: httpx.AsyncClient) -> dict[str, str]:
    r = await person.get("/channels/connect/instagram")
    assert r.status_code == 302, r.text
    url = urlparse(r.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://www.instagram.com/oauth/authorize"
    return {k: v[0] for k, v in parse_qs(url.query).items()}


async def come_back(
    person: httpx.AsyncClient,
    instagram: InstagramEmulator,
    query: dict[str, str],
    user: str = ACCOUNT,
) -> httpx.Response:
    code = instagram.consent(query["client_id"], query["redirect_uri"], user, "brand")
    return await person.get(
        "/channels/connect/instagram/callback", params={"code": code, "state": query["state"]}
    )


async def test_connecting_creates_the_channel_with_a_long_lived_token(
    world: World, owner: httpx.AsyncClient, instagram: InstagramEmulator
) -> None:
    query = await start(owner)
    assert query["client_id"] == CLIENT
    assert (
        query["redirect_uri"] == "https://tidings.example.com/channels/connect/instagram/callback"
    )
    assert query["response_type"] == "code"
    assert "instagram_business_content_publish" in query["scope"].split(",")
    r = await come_back(owner, instagram, query)
    assert r.status_code == 200, r.text
    channel = r.json()
    assert (channel["platform"], channel["name"], channel["status"]) == (
        "instagram",
        "@brand",
        "ACTIVE",
    )
    async with world.db.transaction(write=False) as session:
        stored = await session.get(Channel, channel["id"])
        assert stored is not None
        assert stored.credentials is not None
        creds = Credentials.open(world.state.box, stored.credentials)
        tasks = (
            (await session.execute(select(Task.kind).where(Task.channel_id == channel["id"])))
            .scalars()
            .all()
        )
        states = (await session.execute(select(OAuthState))).scalars().all()
    assert creds is not None
    assert creds.account_id == ACCOUNT
    assert creds.access_token.startswith("long-")  # the 60-day token, not the 1-hour one
    assert instagram.tokens[creds.access_token] == ACCOUNT
    assert list(tasks) == [TaskKind.REFRESH_TOKEN]
    assert states == []  # spent
    # The same state cannot be used twice.
    again = await come_back(owner, instagram, query)
    assert again.status_code == 400


async def test_reconnecting_keeps_the_channel_and_its_refresh_token(
    world: World, owner: httpx.AsyncClient, instagram: InstagramEmulator
) -> None:
    first = (await come_back(owner, instagram, await start(owner))).json()
    async with world.db.transaction() as session:
        stored = await session.get(Channel, first["id"])
        assert stored is not None
        assert stored.credentials is not None
        creds = Credentials.open(world.state.box, stored.credentials)
        assert creds is not None
        kept = replace(creds, refresh_token="kept-refresh")
        await session.execute(
            update(Channel)
            .where(Channel.id == first["id"])
            .values(credentials=kept.seal(world.state.box), status=ChannelStatus.NEEDS_RECONNECT)
        )
    second = await come_back(owner, instagram, await start(owner))
    assert second.status_code == 200, second.text
    assert (second.json()["id"], second.json()["status"]) == (first["id"], "ACTIVE")
    async with world.db.transaction(write=False) as session:
        stored = await session.get(Channel, first["id"])
        assert stored is not None
        assert stored.credentials is not None
        renewed = Credentials.open(world.state.box, stored.credentials)
    assert renewed is not None
    assert renewed.access_token != creds.access_token
    assert renewed.refresh_token == "kept-refresh"


async def test_the_state_belongs_to_its_sign_in(
    world: World, owner: httpx.AsyncClient, instagram: InstagramEmulator
) -> None:
    query = await start(owner)
    admin = await world.person("admin")
    r = await come_back(admin, instagram, query)
    assert r.status_code == 400
    assert "not started from this sign-in" in r.json()["message"]
    r = await owner.get(
        "/channels/connect/instagram/callback",
        params={"state": query["state"], "error": "access_denied"},
    )
    assert r.status_code == 400  # the person declined
    assert "did not grant" in r.json()["message"]


async def test_an_old_state_or_no_app_or_the_wrong_caller_is_refused(
    world: World, owner: httpx.AsyncClient, instagram: InstagramEmulator
) -> None:
    query = await start(owner)
    async with world.db.transaction() as session:
        await session.execute(update(OAuthState).values(expires_at=datetime.now(UTC)))
    r = await come_back(owner, instagram, query)
    assert (r.status_code, "ten minutes" in r.json()["message"]) == (400, True)
    assert (await world.api().get("/channels/connect/instagram")).status_code == 403  # a key
    editor = await world.person("editor")
    assert (await editor.get("/channels/connect/instagram")).status_code == 403
    assert (await owner.get("/channels/connect/tiktok")).status_code == 400
    await owner.delete("/platform-apps/instagram")
    r = await owner.get("/channels/connect/instagram")
    assert r.status_code == 400
    assert "PUT /platform-apps/instagram" in r.json()["message"]


async def test_connecting_past_the_channel_cap_is_409_and_reconnecting_is_not(
    world: World, owner: httpx.AsyncClient, instagram: InstagramEmulator
) -> None:
    settings = world.state.settings
    # The world's sandbox channel and the account's: the cap is reached once it is connected.
    world.state.settings = settings.model_copy(update={"max_channels_per_workspace": 2})
    first = await come_back(owner, instagram, await start(owner))
    assert first.status_code == 200, first.text
    again = await come_back(owner, instagram, await start(owner))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]  # a reconnection adds nothing
    r = await come_back(owner, instagram, await start(owner), user="17841400000000100")
    assert r.status_code == 409
    assert r.json() == {
        "message": "the workspace has reached its limit of 2 channels "
        "(TIDINGS_MAX_CHANNELS_PER_WORKSPACE)"
    }
    async with world.db.transaction(write=False) as session:
        platforms = (await session.execute(select(Channel.platform).order_by(Channel.id))).all()
    assert [p for (p,) in platforms] == ["sandbox", "instagram"]
