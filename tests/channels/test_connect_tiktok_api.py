"""Connecting a TikTok creator by OAuth with PKCE, against the TikTok emulator, on both
databases: the code and its verifier become a rotating token pair, the channel publishes
with it, a code consented under another challenge is refused, and reconnecting keeps the
channel."""

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.channels.test_connect_threads_api import renewals, stored
from tests.emulators.server import EmulatorServer
from tests.emulators.tiktok import TikTokEmulator
from tests.platforms.connectors import context_for, publish
from tests.world import World
from tidings.publishing.models import TaskStatus

CLIENT, SECRET, OPEN_ID = "awtiktokkey", "tiktok-secret", "-000OZJbI6V2DX8MbOqnOSyT5Hc9k8lw"
CONSENT_PAGE = "https://www.tiktok.com/v2/auth/authorize/"
SCOPES = "user.info.basic,video.publish,video.upload"


@pytest.fixture
def tiktok() -> Iterator[TikTokEmulator]:
    emulator = TikTokEmulator()
    emulator.register_app(CLIENT, SECRET)
    with EmulatorServer(emulator.app) as server:
        emulator.url = server.url
        yield emulator


@pytest.fixture
async def owner(world: World, tiktok: TikTokEmulator) -> AsyncIterator[httpx.AsyncClient]:
    state, settings = world.state, world.state.settings
    state.settings = settings.model_copy(
        update={"tiktok_api_url": tiktok.url, "public_url": "https://tidings.example.com"}
    )
    person = await world.person("owner")
    r = await person.put("/platform-apps/tiktok", json={"clientId": CLIENT, "clientSecret": SECRET})
    assert r.status_code == 200, r.text
    yield person
    state.settings = settings


async def consent_page(person: httpx.AsyncClient) -> dict[str, str]:
    r = await person.get("/channels/connect/tiktok")
    assert r.status_code == 302, r.text
    url = urlparse(r.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == CONSENT_PAGE
    return {k: v[0] for k, v in parse_qs(url.query).items()}


async def test_a_creator_is_connected_with_pkce_and_publishes(
    world: World, owner: httpx.AsyncClient, tiktok: TikTokEmulator
) -> None:
    query = await consent_page(owner)
    assert (query["client_key"], query["scope"], query["response_type"]) == (
        CLIENT,
        SCOPES,
        "code",
    )
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256, unpadded
    code = tiktok.consent(CLIENT, query["redirect_uri"], OPEN_ID, query["code_challenge"], SCOPES)
    r = await owner.get(
        "/channels/connect/tiktok/callback", params={"code": code, "state": query["state"]}
    )
    assert r.status_code == 200, r.text
    channel = r.json()
    assert (channel["platform"], channel["status"]) == ("tiktok", "ACTIVE")
    creds = await stored(world, channel["id"])
    assert creds.account_id == OPEN_ID
    assert creds.refresh_token in tiktok.refresh_tokens
    assert creds.expires_at is not None
    assert creds.refresh_expires_at is not None
    assert creds.refresh_expires_at > creds.expires_at
    assert [status for status, _ in await renewals(world, channel["id"])] == [TaskStatus.PENDING]
    # The token works: a post goes out with it.
    async with context_for(world, tiktok=tiktok.url) as ctx:
        doc = await publish(
            world,
            ctx,
            channel["id"],
            {"caption": "First", "options": {"privacy_level": "SELF_ONLY"}},
            media="https://cdn.example.com/clip.mp4",
            mediaType="VIDEO",
        )
    assert doc["status"] == "PUBLISHED", doc
    assert doc["mediumsData"][channel["id"]]["externalUrl"].startswith("https://www.tiktok.com/@")


async def test_a_code_consented_under_another_challenge_is_refused(
    world: World, owner: httpx.AsyncClient, tiktok: TikTokEmulator
) -> None:
    """A stolen code is useless without the verifier only this sign-in's state holds."""
    query = await consent_page(owner)
    other = base64.urlsafe_b64encode(hashlib.sha256(b"attacker").digest()).decode().rstrip("=")
    code = tiktok.consent(CLIENT, query["redirect_uri"], OPEN_ID, other, SCOPES)
    r = await owner.get(
        "/channels/connect/tiktok/callback", params={"code": code, "state": query["state"]}
    )
    assert r.status_code == 400, r.text
    assert "Code verifier or code challenge is invalid" in r.json()["message"]
    r = await owner.get("/channels")
    assert [c for c in r.json()["data"] if c["platform"] == "tiktok"] == []


async def test_reconnecting_keeps_the_channel_and_takes_the_new_pair(
    world: World, owner: httpx.AsyncClient, tiktok: TikTokEmulator
) -> None:
    ids = []
    for _ in range(2):
        query = await consent_page(owner)
        code = tiktok.consent(
            CLIENT, query["redirect_uri"], OPEN_ID, query["code_challenge"], SCOPES
        )
        r = await owner.get(
            "/channels/connect/tiktok/callback", params={"code": code, "state": query["state"]}
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    assert ids[0] == ids[1]
    creds = await stored(world, ids[0])
    assert creds.refresh_token in tiktok.refresh_tokens
    pending = [s for s, _ in await renewals(world, ids[0]) if s is TaskStatus.PENDING]
    assert len(pending) == 1
