"""The settings page in a real browser, on both databases: invitations (and joining through
one), members and roles, an API key shown once and working until revoked, timezones,
platform apps; a viewer sees the lists without buttons and a forged form is refused by the
service."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import PASSWORD, Team, shot, sign_in


def csrf_of(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def test_an_owner_invites_a_member_who_joins_then_changes_their_role_and_removes_them(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    page.goto("/app/settings")
    page.get_by_label("Email").fill("new@acme.example.com")
    page.get_by_label("Role", exact=True).select_option("reviewer")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("heading", name="Invitation for new@acme.example.com")).to_be_visible()
    link = page.get_by_label("Invitation link").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/app/invitations/[\w-]{43}", link), link
    invitations = page.locator("#invitations")
    expect(invitations.get_by_role("row", name=re.compile("new@acme"))).to_contain_text("reviewer")
    shot(page, "settings-invitation", request)
    # Bad input is said on the page; nothing is added.
    page.get_by_label("Email").fill("not-an-email@x")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("alert")).to_contain_text("is not an email address")

    # The invitee opens the link signed out, chooses a password and signs in with it.
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    expect(page.get_by_role("heading", name="Join Acme")).to_be_visible()
    page.get_by_label("Choose a password").fill(PASSWORD + " new")
    page.get_by_label("The password again").fill(PASSWORD + " new")
    shot(page, "invitation", request)
    page.get_by_role("button", name="Join Acme").click()
    expect(page.get_by_role("status")).to_contain_text("you joined Acme as reviewer")
    page.get_by_label("Email").fill("new@acme.example.com")
    page.get_by_label("Password").fill(PASSWORD + " new")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Acme · reviewer")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, team, "owner")
    page.goto("/app/settings")
    expect(page.locator("#invitations")).to_contain_text("No invitations waiting.")
    role = page.get_by_label("Role of new@acme.example.com", exact=True)
    expect(role).to_have_value("reviewer")
    role.select_option("editor")
    page.get_by_role("button", name="Change the role of new@acme.example.com").click()
    expect(page.get_by_role("status")).to_contain_text("new@acme.example.com is now editor")
    expect(page.get_by_label("Role of new@acme.example.com", exact=True)).to_have_value("editor")
    # The last owner stays an owner.
    page.get_by_label(f"Role of {team.email['owner']}", exact=True).select_option("admin")
    page.get_by_role("button", name=f"Change the role of {team.email['owner']}").click()
    expect(page.get_by_role("alert")).to_contain_text("last owner cannot be demoted")
    shot(page, "settings", request)

    page.get_by_role("row", name=re.compile("new@acme")).get_by_text("Remove…").click()
    page.get_by_role("button", name="Remove new@acme.example.com").click()
    expect(page.get_by_role("status")).to_contain_text("new@acme.example.com was removed")
    expect(page.get_by_label("Role of new@acme.example.com", exact=True)).to_have_count(0)


def test_a_key_is_shown_once_works_and_is_revoked(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "admin")
    page.goto("/app/settings#keys")
    page.get_by_label("Key name").fill("zapier")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Key “zapier” created")).to_be_visible()
    key_id = page.locator("#key-id").inner_text()
    secret = page.get_by_label("Secret", exact=True).input_value()
    token = page.get_by_label("Bearer token").input_value()
    assert token == f"{key_id}.{secret}"
    expect(page.get_by_role("button", name="Copy secret")).to_be_visible()
    expect(page.locator("#example-python")).to_contain_text(f'KEY_ID, SECRET = "{key_id}"')
    # By default a key signs the whole request and has the posts and channels scopes.
    expect(page.locator("#issued-signing")).to_have_text("the whole request")
    expect(page.locator("#issued-scopes")).to_have_text(
        "posts:read posts:write channels:read channels:write"
    )
    expect(page.locator("#example-python")).to_contain_text('METHOD, PATH, BODY = "GET"')
    expect(page.locator("#example-curl")).to_contain_text(f"Bearer {token}")
    page.get_by_role("button", name="Copy secret").click()
    expect(page.locator(".copied")).to_have_text(re.compile("Copied|Select the text"))
    shot(page, "settings-new-key", request)

    bearer = {"Authorization": f"Bearer {token}"}
    answer = page.request.get("/scheduled-posts", headers=bearer)
    assert answer.status == 200, answer.text()
    assert page.request.get("/auth/me", headers=bearer).json()["apiKeyId"] == key_id

    # Never shown again.
    page.goto("/app/settings")
    assert secret not in page.content()
    row = page.get_by_role("row", name=re.compile("zapier"))
    expect(row.get_by_text("Active")).to_be_visible()
    row.get_by_text("Revoke…").click()
    row.get_by_role("button", name="Revoke “zapier”").click()
    expect(page.get_by_role("status")).to_contain_text("Key “zapier” revoked")
    expect(
        page.get_by_role("row", name=re.compile("zapier")).get_by_text("Revoked")
    ).to_be_visible()
    answer = page.request.get("/scheduled-posts", headers=bearer)
    assert answer.status == 401
    assert answer.json() == {"message": "API key has been revoked"}


def test_timezones_and_platform_apps(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    page.goto("/app/settings#apps")
    page.get_by_label("Platform", exact=True).select_option("instagram")
    page.get_by_label("Client id").fill("ig-client-1")
    page.get_by_label("Client secret").fill("ig-secret")
    page.get_by_role("button", name="Save app").click()
    expect(page.get_by_role("status")).to_contain_text("The Instagram app is set")
    expect(page.get_by_role("row", name=re.compile("ig-client-1"))).to_be_visible()
    assert "ig-secret" not in page.content()
    page.goto("/app/channels")
    connect = page.get_by_role("link", name="Connect Instagram")
    expect(connect).to_have_attribute("href", "/channels/connect/instagram")

    page.goto("/app/settings#workspace")
    page.get_by_label("Workspace timezone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save workspace").click()
    expect(page.get_by_role("alert")).to_contain_text("'Mars/Olympus' is not an IANA time zone")
    page.get_by_label("Workspace timezone").fill("Asia/Tokyo")
    page.get_by_role("button", name="Save workspace").click()
    expect(page.get_by_role("status")).to_contain_text("Workspace saved: Acme, in Asia/Tokyo")
    expect(page.get_by_text("Acme · owner · Asia/Tokyo")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, team, "viewer")
    expect(page.get_by_text("Acme · viewer · Asia/Tokyo")).to_be_visible()
    page.goto("/app/settings#you")
    page.get_by_role("combobox", name="Your timezone").fill("America/New_York")
    page.get_by_role("button", name="Save my timezone").click()
    expect(page.get_by_role("status")).to_contain_text("Times are now shown in America/New_York")
    expect(page.get_by_text("Acme · viewer · America/New_York")).to_be_visible()
    page.get_by_role("combobox", name="Your timezone").fill("")
    page.get_by_role("button", name="Save my timezone").click()
    expect(page.get_by_text("Acme · viewer · Asia/Tokyo")).to_be_visible()


def test_a_viewer_sees_no_buttons_and_forged_forms_are_refused(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "viewer")
    page.goto("/app/settings")
    expect(page.get_by_role("cell", name=team.email["owner"])).to_be_visible()
    expect(page.get_by_role("button", name="Invite")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Password reset link"))).to_have_count(0)
    expect(page.get_by_role("button", name="Change password")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Change the role"))).to_have_count(0)
    expect(page.get_by_text("Remove…")).to_have_count(0)
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)
    expect(page.get_by_role("button", name="Save workspace")).to_have_count(0)
    expect(page.get_by_role("button", name="Save app")).to_have_count(0)
    expect(page.get_by_role("button", name="Save my timezone")).to_be_visible()
    shot(page, "settings-viewer", request)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "settings-viewer-phone", request)

    token = csrf_of(page)
    forged = {"csrf_token": token, "email": "mole@acme.example.com"}
    answer = page.request.post("/app/settings/invitations", form={**forged, "role": "owner"})
    assert answer.status == 403
    assert "role viewer cannot manage members" in answer.text()
    answer = page.request.post("/app/settings/keys", form={"csrf_token": token, "name": "mine"})
    assert answer.status == 403
    answer = page.request.post(
        "/app/settings/workspace", form={"csrf_token": token, "timezone": "UTC"}
    )
    assert answer.status == 403
    # Without the session's token, even the viewer's own settings are refused.
    answer = page.request.post("/app/settings/timezone", form={"timezone": "UTC"})
    assert answer.status == 403
    page.reload()
    expect(page.get_by_text("mole@acme.example.com")).to_have_count(0)
    expect(page.get_by_text("Acme · viewer · Europe/Paris")).to_be_visible()
