"""Connecting Facebook Pages, and the Instagram accounts linked to them, by Facebook Login,
against the Pages emulator, on both databases: the dialog, the code and long-lived token
exchanges, every page of `/me/accounts`, then the person's choice of accounts, each created
or reconnected as a channel with its Page token sealed."""

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select, update

from tests.emulators.facebook_login import FacebookLoginEmulator
from tests.platforms.connectors import account_channel, context_for, publish, served
from tests.world import World
from tidings.channels import flows
from tidings.channels.models import Channel, ChannelStatus, OAuthState, PendingConnection
from tidings.platforms.store import Credentials
from tidings.publishing.models import Task, TaskKind, TaskStatus

CLIENT, SECRET, PERSON = "fb-app-1", "fb-app-secret", "10200000000000001"
COFFEE, LABS, INSTAGRAM = "104000000000001", "104000000000002", "17841400000000001"
PUBLIC = "https://tidings.example.com"


@pytest.fixture
def facebook() -> Iterator[FacebookLoginEmulator]:
    with served(FacebookLoginEmulator(), "unused", "unused") as emulator:
        emulator.login.register_app(CLIENT, SECRET)
        emulator.login.add_page(COFFEE, "Acme Coffee", instagram=(INSTAGRAM, "acmecoffee"))
        emulator.login.add_page(LABS, "Acme Labs")
        emulator.login.consenting = (PERSON, [COFFEE, LABS])
        yield emulator


@pytest.fixture
async def owner(world: World, facebook: FacebookLoginEmulator) -> AsyncIterator[httpx.AsyncClient]:
    state, settings = world.state, world.state.settings
    state.settings = settings.model_copy(
        update={
            "facebook_api_url": facebook.url,
            "facebook_oauth_url": f"{facebook.url}/v25.0/dialog/oauth",
            "public_url": PUBLIC,
        }
    )
    person = await world.person("owner")
    r = await person.put(
        "/platform-apps/facebook", json={"clientId": CLIENT, "clientSecret": SECRET}
    )
    assert r.status_code == 200, r.text
    yield person
    state.settings = settings


async def dialog(person: httpx.AsyncClient, facebook: FacebookLoginEmulator) -> dict[str, str]:
    """Start connecting and go through the consent dialog: the query the browser brings
    back to the callback."""
    r = await person.get("/channels/connect/facebook")
    assert r.status_code == 302, r.text
    async with httpx.AsyncClient() as browser:
        back = await browser.get(r.headers["location"])
    assert back.status_code == 302, back.text
    url = urlparse(back.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        f"{PUBLIC}/channels/connect/facebook/callback"
    )
    return {k: v[0] for k, v in parse_qs(url.query).items()}


async def consent(person: httpx.AsyncClient, facebook: FacebookLoginEmulator) -> httpx.Response:
    query = await dialog(person, facebook)
    return await person.get("/channels/connect/facebook/callback", params=query)


async def stored(world: World, channel_id: str) -> Credentials:
    async with world.db.transaction(write=False) as session:
        channel = await session.get(Channel, channel_id)
    assert channel is not None
    assert channel.credentials is not None
    creds = Credentials.open(world.state.box, channel.credentials)
    assert creds is not None
    return creds


async def refresh_tasks(world: World, channel_id: str) -> list[TaskStatus]:
    async with world.db.transaction(write=False) as session:
        rows = await session.execute(
            select(Task.status).where(
                Task.channel_id == channel_id, Task.kind == TaskKind.REFRESH_TOKEN
            )
        )
        return list(rows.scalars())


async def test_a_consent_offers_each_page_and_its_instagram_and_the_chosen_become_channels(
    world: World,
    owner: httpx.AsyncClient,
    facebook: FacebookLoginEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "LISTING_SIZE", 1)  # two Pages: two listings, by cursor
    r = await consent(owner, facebook)
    assert r.status_code == 200, r.text
    offer = r.json()
    assert offer["platform"] == "facebook"
    assert offer["accounts"] == [
        {"platform": "facebook", "accountId": COFFEE, "name": "Acme Coffee", "channelId": None},
        {"platform": "instagram", "accountId": INSTAGRAM, "name": "@acmecoffee", "channelId": None},
        {"platform": "facebook", "accountId": LABS, "name": "Acme Labs", "channelId": None},
    ]
    assert facebook.count("accounts") == 2
    for scope in ("pages_manage_posts", "pages_show_list", "instagram_content_publish"):
        assert scope in facebook.login.asked_scopes
    async with world.db.transaction(write=False) as session:
        [pending] = (await session.execute(select(PendingConnection))).scalars().all()
        assert (await session.execute(select(OAuthState))).scalars().all() == []  # spent
    assert "EAAP-" not in json.dumps(pending.accounts)  # the Page tokens are sealed

    choice = {
        "connectionId": offer["connectionId"],
        "accounts": [
            {"platform": "facebook", "accountId": COFFEE},
            {"platform": "instagram", "accountId": INSTAGRAM},
        ],
    }
    r = await owner.post("/channels/connect/facebook/choose", json=choice)
    assert r.status_code == 200, r.text
    page, instagram = r.json()["data"]
    assert (page["platform"], page["name"], page["status"]) == ("facebook", "Acme Coffee", "ACTIVE")
    assert (instagram["platform"], instagram["name"]) == ("instagram", "@acmecoffee")
    page_creds = await stored(world, page["id"])
    assert (page_creds.account_id, page_creds.expires_at) == (COFFEE, None)
    assert facebook.tokens[page_creds.access_token] == COFFEE  # the Page's own token
    instagram_creds = await stored(world, instagram["id"])
    assert instagram_creds.account_id == INSTAGRAM
    assert instagram_creds.access_token == page_creds.access_token
    assert instagram_creds.extra == {"login": "facebook", "page_id": COFFEE}
    # Page tokens taken with a long-lived user token do not expire: nothing to renew.
    assert await refresh_tasks(world, page["id"]) == []
    assert await refresh_tasks(world, instagram["id"]) == []
    async with world.db.transaction(write=False) as session:
        assert (await session.execute(select(PendingConnection))).scalars().all() == []
    again = await owner.post("/channels/connect/facebook/choose", json=choice)
    assert again.status_code == 400  # spent
    assert "connect again" in again.json()["message"]

    # The channel publishes with the token it was given.
    async with context_for(world, facebook=facebook.url) as ctx:
        doc = await publish(
            world, ctx, page["id"], {"caption": "Fresh roast today"}, media=None, mediaType=None
        )
    assert doc["status"] == "PUBLISHED", doc
    [post] = facebook.posts_of(COFFEE)
    assert post.message == "Fresh roast today"


async def test_one_account_is_connected_at_once_and_reconnecting_keeps_its_channel(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    facebook.login.consenting = (PERSON, [LABS])
    r = await consent(owner, facebook)
    assert r.status_code == 200, r.text
    first = r.json()
    assert (first["platform"], first["name"]) == ("facebook", "Acme Labs")
    old = await stored(world, first["id"])
    async with world.db.transaction() as session:
        await session.execute(
            update(Channel)
            .where(Channel.id == first["id"])
            .values(status=ChannelStatus.NEEDS_RECONNECT)
        )
    r = await consent(owner, facebook)
    assert (r.status_code, r.json()["id"], r.json()["status"]) == (200, first["id"], "ACTIVE")
    renewed = await stored(world, first["id"])
    assert (renewed.account_id, renewed.access_token != old.access_token) == (LABS, True)
    # Offered again among several, the account names its channel; choosing it reconnects.
    facebook.login.consenting = (PERSON, [COFFEE, LABS])
    offer = (await consent(owner, facebook)).json()
    assert [a["channelId"] for a in offer["accounts"]] == [None, None, first["id"]]
    r = await owner.post(
        "/channels/connect/facebook/choose",
        json={
            "connectionId": offer["connectionId"],
            "accounts": [{"platform": "facebook", "accountId": LABS}] * 2,  # once is enough
        },
    )
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["data"]] == [first["id"]]
    async with world.db.transaction(write=False) as session:
        channels = (await session.execute(select(Channel.platform))).scalars().all()
    assert sorted(channels) == ["facebook", "sandbox"]


async def test_an_instagram_login_channel_reconnected_through_facebook_stops_renewing(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    channel = await account_channel(world, "instagram", INSTAGRAM, "IGQ-instagram-login")
    assert await refresh_tasks(world, channel) == [TaskStatus.PENDING]
    facebook.login.consenting = (PERSON, [COFFEE])
    offer = (await consent(owner, facebook)).json()
    assert [a["channelId"] for a in offer["accounts"]] == [None, channel]
    r = await owner.post(
        "/channels/connect/facebook/choose",
        json={
            "connectionId": offer["connectionId"],
            "accounts": [{"platform": "instagram", "accountId": INSTAGRAM}],
        },
    )
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["data"]] == [channel]
    assert (await stored(world, channel)).extra["login"] == "facebook"
    # Its Instagram Login renewal would now fail against graph.facebook.com: cancelled.
    assert await refresh_tasks(world, channel) == [TaskStatus.CANCELED]


async def test_choosing_an_account_not_offered_is_refused_and_the_offer_kept(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    offer = (await consent(owner, facebook)).json()
    url = "/channels/connect/facebook/choose"
    r = await owner.post(
        url,
        json={
            "connectionId": offer["connectionId"],
            "accounts": [
                {"platform": "facebook", "accountId": COFFEE},
                {"platform": "facebook", "accountId": INSTAGRAM},  # an Instagram id as a Page
            ],
        },
    )
    assert r.status_code == 400
    assert r.json()["message"].startswith(
        f"facebook account {INSTAGRAM} was not offered by this connection; offered: "
    )
    for body in (
        {"connectionId": offer["connectionId"], "accounts": []},
        {"accounts": [{"platform": "facebook", "accountId": COFFEE}]},
        {"connectionId": offer["connectionId"], "accounts": [{"platform": "facebook"}]},
        {"connectionId": offer["connectionId"], "accounts": "all"},
    ):
        r = await owner.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()) == {"error"}
    async with world.db.transaction(write=False) as session:
        channels = (await session.execute(select(Channel.platform))).scalars().all()
    assert channels == ["sandbox"]  # nothing connected by the refused choices
    r = await owner.post(
        url,
        json={
            "connectionId": offer["connectionId"],
            "accounts": [{"platform": "facebook", "accountId": LABS}],
        },
    )
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()["data"]] == ["Acme Labs"]


async def test_the_choice_belongs_to_its_sign_in_role_and_ten_minutes(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    offer = (await consent(owner, facebook)).json()
    body = {
        "connectionId": offer["connectionId"],
        "accounts": [{"platform": "facebook", "accountId": COFFEE}],
    }
    url = "/channels/connect/facebook/choose"
    admin = await world.person("admin")
    r = await admin.post(url, json=body)
    assert (r.status_code, "no such connection for this sign-in" in r.json()["message"]) == (
        400,
        True,
    )
    assert (await world.api().post(url, json=body)).status_code == 403  # a key
    viewer = await world.person("viewer")
    assert (await viewer.post(url, json=body)).status_code == 403
    r = await owner.post(url, json=body | {"connectionId": "not-a-connection"})
    assert r.status_code == 400
    r = await owner.post("/channels/connect/threads/choose", json=body)  # another platform's
    assert r.status_code == 400
    r = await owner.post("/channels/connect/mastodon/choose", json=body)
    assert r.status_code == 400
    assert "not supported" in r.json()["message"]
    async with world.db.transaction() as session:
        await session.execute(update(PendingConnection).values(expires_at=datetime.now(UTC)))
    r = await owner.post(url, json=body)
    assert (r.status_code, "ten minutes" in r.json()["message"]) == (400, True)


async def test_the_state_is_checked_before_facebook_is_asked(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    callback = "/channels/connect/facebook/callback"
    query = await dialog(owner, facebook)
    admin = await world.person("admin")
    r = await admin.get(callback, params=query)  # another sign-in
    assert (r.status_code, "not started from this sign-in" in r.json()["message"]) == (400, True)
    r = await owner.get(callback, params=query | {"state": "made-up"})
    assert r.status_code == 400
    r = await owner.get("/channels/connect/instagram/callback", params=query)  # other platform
    assert r.status_code == 400
    async with world.db.transaction() as session:
        await session.execute(update(OAuthState).values(expires_at=datetime.now(UTC)))
    r = await owner.get(callback, params=query)
    assert (r.status_code, "ten minutes" in r.json()["message"]) == (400, True)
    assert facebook.count("accounts") == 0  # none of these reached Facebook
    # Used once: the second callback with the same state is refused.
    query = await dialog(owner, facebook)
    assert (await owner.get(callback, params=query)).status_code == 200
    r = await owner.get(callback, params=query)
    assert r.status_code == 400
    assert (await world.api().get("/channels/connect/facebook")).status_code == 403  # a key
    viewer = await world.person("viewer")
    assert (await viewer.get("/channels/connect/facebook")).status_code == 403
    r = await owner.get(callback)
    assert (r.status_code, r.json()) == (
        400,
        {"message": "the platform sent no state: start connecting again"},
    )


async def test_what_facebook_refuses_is_a_400_naming_why(
    world: World, owner: httpx.AsyncClient, facebook: FacebookLoginEmulator
) -> None:
    callback = "/channels/connect/facebook/callback"
    facebook.login.consenting = None  # the person declines in the dialog
    r = await owner.get(callback, params=await dialog(owner, facebook))
    assert (r.status_code, "did not grant access (access_denied)" in r.json()["message"]) == (
        400,
        True,
    )
    facebook.login.consenting = (PERSON, [])  # shares no Page
    r = await owner.get(callback, params=await dialog(owner, facebook))
    assert (r.status_code, "shared no account" in r.json()["message"]) == (400, True)
    facebook.login.consenting = (PERSON, [COFFEE])
    query = await dialog(owner, facebook)
    facebook.login.apps[CLIENT] = "rotated-secret"  # the workspace's app is out of date
    r = await owner.get(callback, params=query)
    assert r.status_code == 400
    assert r.json()["message"] == (
        "the platform refused while exchanging the code (400: Error validating client secret.)"
    )
    facebook.login.apps[CLIENT] = SECRET
    query = await dialog(owner, facebook)
    settings = world.state.settings
    world.state.settings = settings.model_copy(update={"public_url": "https://elsewhere.example"})
    r = await owner.get(callback, params=query)  # a redirect URI other than the dialog's
    world.state.settings = settings
    assert r.status_code == 400
    assert "redirect_uri is identical" in r.json()["message"]
    async with world.db.transaction(write=False) as session:
        channels = (await session.execute(select(Channel.platform))).scalars().all()
    assert channels == ["sandbox"]


async def test_the_emulated_token_endpoints_refuse_like_facebook(
    facebook: FacebookLoginEmulator,
) -> None:
    redirect = f"{PUBLIC}/channels/connect/facebook/callback"
    code = facebook.login.consent(CLIENT, redirect, PERSON, [COFFEE])
    base = f"{facebook.url}/v25.0"
    app = {"client_id": CLIENT, "client_secret": SECRET}

    def error_of(r: httpx.Response) -> tuple[int, Any, Any]:
        error = r.json()["error"]
        return r.status_code, error["code"], error.get("error_subcode")

    async with httpx.AsyncClient() as http:
        token_url = f"{base}/oauth/access_token"
        r = await http.get(
            token_url, params=app | {"client_secret": "no", "redirect_uri": redirect, "code": code}
        )
        assert error_of(r) == (400, 1, None)
        r = await http.get(token_url, params=app | {"redirect_uri": f"{redirect}/x", "code": code})
        assert error_of(r) == (400, 100, 36008)
        r = await http.get(token_url, params=app | {"redirect_uri": redirect, "code": "forged"})
        assert error_of(r) == (400, 100, 36007)
        r = await http.get(token_url, params=app | {"redirect_uri": redirect, "code": code})
        assert r.status_code == 200, r.text
        short = r.json()["access_token"]
        r = await http.get(token_url, params=app | {"redirect_uri": redirect, "code": code})
        assert error_of(r) == (400, 100, 36009)  # used
        exchange = app | {"grant_type": "fb_exchange_token"}
        r = await http.get(token_url, params=exchange | {"fb_exchange_token": "forged"})
        assert error_of(r) == (400, 190, None)
        r = await http.get(token_url, params=exchange | {"fb_exchange_token": short})
        assert (r.status_code, r.json()["expires_in"]) == (200, 5_183_944)
        r = await http.get(f"{base}/me/accounts", params={"access_token": "forged"})
        assert error_of(r) == (400, 190, 467)
