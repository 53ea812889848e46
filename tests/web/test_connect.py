"""Connecting accounts by OAuth in a real browser, against the Facebook Login emulator, on
both databases: the workspace's app set in Settings, "Connect Facebook" on the channels
page, the consent dialog, and back in the app to choose which Pages (and their Instagram
accounts) become channels; a declined consent is told on the channels page."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.emulators.facebook_login import FacebookLoginEmulator
from tests.platforms.connectors import served
from tests.web.conftest import Team, shot, sign_in

CLIENT, SECRET, PERSON = "fb-app-1", "fb-app-secret", "10200000000000001"
COFFEE, LABS, INSTAGRAM = "104000000000001", "104000000000002", "17841400000000001"


@pytest.fixture
def facebook() -> Iterator[FacebookLoginEmulator]:
    with served(FacebookLoginEmulator(), "unused", "unused") as emulator:
        emulator.login.register_app(CLIENT, SECRET)
        emulator.login.add_page(COFFEE, "Acme Coffee", instagram=(INSTAGRAM, "acmecoffee"))
        emulator.login.add_page(LABS, "Acme Labs")
        emulator.login.consenting = (PERSON, [COFFEE, LABS])
        yield emulator


@pytest.fixture
def live_settings(facebook: FacebookLoginEmulator) -> dict[str, Any]:
    return {
        "facebook_api_url": facebook.url,
        "facebook_oauth_url": f"{facebook.url}/v25.0/dialog/oauth",
    }


def set_facebook_app(page: Page) -> None:
    page.goto("/app/settings#apps")
    page.get_by_label("Platform", exact=True).select_option("facebook")
    page.get_by_label("Client id").fill(CLIENT)
    page.get_by_label("Client secret").fill(SECRET)
    page.get_by_role("button", name="Save app").click()
    expect(page.get_by_role("status")).to_be_visible()


def test_connecting_pages_chosen_after_the_consent(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    set_facebook_app(page)
    page.goto("/app/channels")
    page.get_by_role("link", name="Connect Facebook").click()
    # The dialog consented and sent the browser back: the accounts to choose from.
    expect(page.get_by_role("heading", name="Choose the accounts to connect")).to_be_visible()
    coffee = page.get_by_role("checkbox", name=re.compile("Acme Coffee"))
    labs = page.get_by_role("checkbox", name=re.compile("Acme Labs"))
    instagram = page.get_by_role("checkbox", name=re.compile("acmecoffee"))
    for box in (coffee, labs, instagram):
        expect(box).not_to_be_checked()
    shot(page, "choose", request)
    coffee.check()
    instagram.check()
    page.get_by_role("button", name="Connect the chosen accounts").click()
    expect(page).to_have_url(re.compile(r"/app/channels$"))
    expect(page.get_by_role("status")).to_contain_text("Connected")
    main = page.get_by_role("main")
    expect(main.get_by_text("Acme Coffee").first).to_be_visible()
    expect(main.get_by_text("@acmecoffee").first).to_be_visible()
    expect(main.get_by_text("Acme Labs")).to_have_count(0)

    # Once more: the Page already connected is reconnected in place, straight to its page.
    facebook_one = (PERSON, [COFFEE])
    team_facebook = request.getfixturevalue("facebook")
    team_facebook.login.consenting = facebook_one
    team_facebook.login.add_page(COFFEE, "Acme Coffee")  # no Instagram account now
    page.goto("/app/channels")
    page.get_by_role("link", name="Connect Facebook").click()
    expect(page.get_by_role("status")).to_contain_text("Reconnected Acme Coffee")
    expect(page).to_have_url(re.compile(r"/app/channels/ch_\w+$"))


def test_a_declined_consent_is_told_on_the_channels_page(
    page: Page, team: Team, facebook: FacebookLoginEmulator
) -> None:
    facebook.login.consenting = None  # the person declines in the dialog
    sign_in(page, team, "owner")
    set_facebook_app(page)
    page.goto("/app/channels")
    page.get_by_role("link", name="Connect Facebook").click()
    expect(page).to_have_url(re.compile(r"/app/channels$"))
    expect(page.get_by_role("alert")).to_contain_text("Connecting facebook failed")
