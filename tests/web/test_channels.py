"""The channels pages in a real browser, on both databases: the list with its badges, a
live check, adding a sandbox channel and watching a post go live on its feed; a viewer
sees no buttons and a forged form is refused."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import TEST_SECRET_KEY, run_apart
from tests.web.conftest import Team, shot, sign_in
from tidings.channels import service as channel_service
from tidings.channels.models import ChannelStatus
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.platforms.store import Credentials


def csrf_of(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def test_a_sandbox_channel_shows_a_post_going_live(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    page.goto("/app/channels")
    row = page.get_by_role("row", name=re.compile("Demo feed"))
    expect(row.get_by_text("Active")).to_be_visible()

    # A live check answers in a message.
    row.get_by_role("button", name="Check Demo feed").click()
    expect(page.get_by_role("status")).to_contain_text("Demo feed: ready to publish")

    # A new sandbox channel opens on its (empty) feed.
    page.get_by_label("Channel name").fill("Launch feed")
    page.get_by_role("button", name="Add sandbox channel").click()
    expect(page).to_have_url(re.compile(r"/app/channels/ch_\w+$"))
    expect(page.get_by_role("status")).to_contain_text("Sandbox channel “Launch feed” added")
    expect(page.get_by_text("Nothing published here yet")).to_be_visible()
    channel_id = page.url.rsplit("/", 1)[1]
    shot(page, "sandbox-feed-empty", request)

    # A post for it, submitted by the key and published now by the owner, appears by itself.
    when = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    created = page.request.post(
        "/scheduled-posts",
        headers={"Authorization": f"Bearer {team.token}"},
        data={
            "status": "WAITING_FOR_APPROVAL",
            "media": "https://cdn.example.com/launch.jpg",
            "mediaType": "IMAGE",
            "scheduledFor": when,
            "channels": {channel_id: {"caption": "We are live!", "firstComment": "#launch"}},
        },
    )
    assert created.status == 201, created.text()
    published = page.request.post(
        f"/scheduled-posts/{created.json()['id']}/publish",
        headers={"X-CSRF-Token": csrf_of(page)},
    )
    assert published.status == 200, published.text()
    feed = page.locator("#feed")
    expect(feed.get_by_text("We are live!")).to_be_visible(timeout=20_000)
    expect(feed.get_by_text("#launch")).to_be_visible(timeout=20_000)
    shot(page, "sandbox-feed", request)
    # Polling what the page shows already answers nothing (htmx then swaps nothing).
    poll = page.locator("#feed").get_attribute("hx-get")
    assert poll
    assert "seen=1." in poll
    assert page.request.get(poll).status == 204
    assert "We are live!" in page.request.get(f"/app/channels/{channel_id}/feed").text()

    page.goto("/app/channels")
    expect(page.get_by_role("link", name="Launch feed")).to_be_visible()
    shot(page, "channels", request)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "channels-phone", request)


def test_a_disabled_channel_and_a_viewer(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "admin")
    page.goto("/app/channels")
    page.get_by_role("button", name="Disable Demo feed").click()
    expect(page.get_by_role("status")).to_contain_text("Demo feed disabled")
    row = page.get_by_role("row", name=re.compile("Demo feed"))
    expect(row.get_by_text("Disabled")).to_be_visible()
    page.get_by_role("button", name="Enable Demo feed").click()
    expect(page.get_by_role("status")).to_contain_text("Demo feed enabled")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, team, "viewer")
    page.goto("/app/channels")
    expect(page.get_by_role("link", name="Demo feed")).to_be_visible()
    for name in ("Check", "Disable", "Add sandbox channel"):
        expect(page.get_by_role("button", name=re.compile(name))).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Connect|Reconnect"))).to_have_count(0)
    expect(page.get_by_label("Channel name")).to_have_count(0)
    shot(page, "channels-viewer", request)
    token = csrf_of(page)
    refused = page.request.post("/app/channels", form={"csrf_token": token, "name": "Forged"})
    assert refused.status == 403
    assert "cannot manage channels" in refused.text()
    refused = page.request.post(
        f"/app/channels/{team.channel_id}/status", form={"csrf_token": token, "status": "DISABLED"}
    )
    assert refused.status == 403
    page.reload()
    expect(page.get_by_role("row")).to_have_count(2)  # the header and Demo feed, still active
    expect(page.get_by_text("Active")).to_be_visible()


@pytest.mark.parametrize("live_settings", [{"max_channels_per_workspace": 1}])
def test_adding_a_channel_past_the_cap_says_so(page: Page, team: Team) -> None:
    sign_in(page, team, "owner")
    page.goto("/app/channels")
    page.get_by_label("Channel name").fill("One too many")
    page.get_by_role("button", name="Add sandbox channel").click()
    expect(page).to_have_url(re.compile(r"/app/channels$"))
    expect(page.get_by_role("alert")).to_contain_text(
        "No channel was added: the workspace has reached its limit of 1 channels"
    )
    expect(page.get_by_role("row")).to_have_count(2)  # the header and Demo feed only


def _add_facebook_page(database_url: str, team: Team) -> str:
    """A Facebook Page whose token the platform refused (as a check or a publish finds)."""
    found: list[str] = []

    async def add() -> None:
        db = Database.connect(database_url)
        try:
            async with db.transaction() as session:
                channel = await channel_service.add_channel(
                    session,
                    workspace_id=team.workspace_id,
                    platform="facebook",
                    name="Acme Page",
                    options={},
                    now=datetime.now(UTC),
                    credentials=Credentials(account_id="1234", access_token="page-token"),
                    box=SecretBox(TEST_SECRET_KEY),
                )
                channel.status = ChannelStatus.NEEDS_RECONNECT
                found.append(channel.id)
        finally:
            await db.dispose()

    run_apart(add)
    return found[0]


def test_a_channel_that_needs_reconnecting(
    page: Page, team: Team, database_url: str, request: pytest.FixtureRequest
) -> None:
    channel_id = _add_facebook_page(database_url, team)
    sign_in(page, team, "admin")
    page.goto("/app/channels")
    row = page.get_by_role("row", name=re.compile("Acme Page"))
    expect(row.get_by_text("Needs reconnecting")).to_be_visible()
    # Without the workspace's Facebook app, reconnecting starts with setting it.
    expect(
        row.get_by_role("link", name="Set the Facebook Page app to reconnect Acme Page")
    ).to_have_attribute("href", "/app/settings#apps")
    # Platform apps are set by a signed-in owner or admin (keys are refused).
    answer = page.request.put(
        "/platform-apps/facebook",
        headers={"X-CSRF-Token": csrf_of(page)},
        data={"clientId": "fb-app", "clientSecret": "fb-secret"},
    )
    assert answer.status == 200, answer.text()
    page.reload()
    reconnect = page.get_by_role("row", name=re.compile("Acme Page")).get_by_role(
        "link", name="Reconnect Acme Page"
    )
    expect(reconnect).to_have_attribute("href", "/channels/connect/facebook")
    shot(page, "channels-reconnect", request)
    page.goto(f"/app/channels/{channel_id}")
    expect(page.get_by_text("Needs reconnecting")).to_be_visible()
    expect(page.get_by_role("link", name="Reconnect")).to_have_attribute(
        "href", "/channels/connect/facebook"
    )
    expect(page.locator("#feed")).to_have_count(0)
