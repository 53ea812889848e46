"""Connecting a Threads profile by OAuth, against the Threads emulator, on both databases:
the code becomes a 60-day token (`th_exchange_token`), the channel is created with its
renewal planned, and reconnecting keeps the channel and plans one renewal, not two."""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select

from tests.emulators.instagram import ThreadsEmulator
from tests.platforms.connectors import context_for, served
from tests.world import World
from tidings.channels.models import Channel
from tidings.platforms.store import REFRESH_AHEAD, Credentials
from tidings.platforms.threads import ThreadsPlatform
from tidings.publishing.models import Task, TaskKind, TaskStatus

CLIENT, SECRET, ACCOUNT = "threads-app", "threads-secret", "27000000000000042"
CONSENT_PAGE = "https://threads.net/oauth/authorize"


@pytest.fixture
def threads() -> Iterator[ThreadsEmulator]:
    with served(ThreadsEmulator(), "unused", "unused") as emulator:
        emulator.register_app(CLIENT, SECRET)
        yield emulator


@pytest.fixture
async def owner(world: World, threads: ThreadsEmulator) -> AsyncIterator[httpx.AsyncClient]:
    state, settings = world.state, world.state.settings
    state.settings = settings.model_copy(
        update={"threads_api_url": threads.url, "public_url": "https://tidings.example.com"}
    )
    person = await world.person("owner")
    r = await person.put(
        "/platform-apps/threads", json={"clientId": CLIENT, "clientSecret": SECRET}
    )
    assert r.status_code == 200, r.text
    yield person
    state.settings = settings


async def connect(person: httpx.AsyncClient, threads: ThreadsEmulator) -> httpx.Response:
    r = await person.get("/channels/connect/threads")
    assert r.status_code == 302, r.text
    url = urlparse(r.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == CONSENT_PAGE
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (query["client_id"], query["response_type"]) == (CLIENT, "code")
    assert query["scope"] == "threads_basic,threads_content_publish,threads_manage_replies"
    assert "code_challenge" not in query  # Threads documents no PKCE
    code = threads.consent(CLIENT, query["redirect_uri"], ACCOUNT, "brand")
    return await person.get(
        "/channels/connect/threads/callback", params={"code": code, "state": query["state"]}
    )


async def renewals(world: World, channel_id: str) -> list[tuple[TaskStatus, datetime]]:
    async with world.db.transaction(write=False) as session:
        rows = await session.execute(
            select(Task.status, Task.run_at)
            .where(Task.channel_id == channel_id, Task.kind == TaskKind.REFRESH_TOKEN)
            .order_by(Task.created_at)
        )
        return [(status, run_at) for status, run_at in rows]


async def stored(world: World, channel_id: str) -> Credentials:
    async with world.db.transaction(write=False) as session:
        channel = await session.get(Channel, channel_id)
    assert channel is not None
    assert channel.credentials is not None
    creds = Credentials.open(world.state.box, channel.credentials)
    assert creds is not None
    return creds


async def test_connecting_creates_the_channel_with_a_60_day_token_and_plans_its_renewal(
    world: World, owner: httpx.AsyncClient, threads: ThreadsEmulator
) -> None:
    before = datetime.now(UTC)
    r = await connect(owner, threads)
    assert r.status_code == 200, r.text
    channel = r.json()
    assert (channel["platform"], channel["name"], channel["status"]) == (
        "threads",
        "@brand",
        "ACTIVE",
    )
    creds = await stored(world, channel["id"])
    assert creds.account_id == ACCOUNT
    assert creds.access_token.startswith("long-")  # the 60-day token, not the 1-hour one
    assert threads.tokens[creds.access_token] == ACCOUNT
    assert creds.expires_at is not None
    assert timedelta(days=59) < creds.expires_at - before < timedelta(days=61)
    [(status, run_at)] = await renewals(world, channel["id"])
    assert (status, run_at) == (TaskStatus.PENDING, creds.expires_at - REFRESH_AHEAD)
    # The token it was given renews with Threads' own grant.
    async with context_for(world, threads=threads.url) as ctx:
        renewed = await ThreadsPlatform().refresh(ctx, channel["id"])
    assert renewed.access_token in threads.refreshed
    assert (await stored(world, channel["id"])).access_token == renewed.access_token


async def test_reconnecting_keeps_the_channel_and_replaces_its_planned_renewal(
    world: World, owner: httpx.AsyncClient, threads: ThreadsEmulator
) -> None:
    first = (await connect(owner, threads)).json()
    second = await connect(owner, threads)
    assert (second.status_code, second.json()["id"]) == (200, first["id"])
    statuses = [status for status, _ in await renewals(world, first["id"])]
    assert statuses == [TaskStatus.CANCELED, TaskStatus.PENDING]


async def test_what_threads_refuses_is_a_400_naming_why(
    world: World, owner: httpx.AsyncClient, threads: ThreadsEmulator
) -> None:
    threads.apps[CLIENT] = "rotated"
    r = await connect(owner, threads)
    assert (r.status_code, r.json()) == (
        400,
        {"message": "the platform refused while exchanging the code (400: Invalid platform app)"},
    )
    r = await owner.get("/channels/connect/threads/callback", params={"state": "made-up"})
    assert r.status_code == 400
    async with world.db.transaction(write=False) as session:
        channels = (await session.execute(select(Channel.platform))).scalars().all()
    assert channels == ["sandbox"]
