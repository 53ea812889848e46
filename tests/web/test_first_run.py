"""The way in, in a real browser on both databases: the first run creates the workspace and
its owner; then it is a sign-in page; signing out ends the session; forms without the
session's CSRF token are refused."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Team, shot, sign_in

EMAIL, PASSWORD = "owner@acme.example.com", "correct horse battery"


def first_run(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Welcome to Tidings")).to_be_visible()
    page.get_by_label("Workspace name").fill("Acme")
    page.get_by_label("Your email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Workspace timezone").fill("Europe/Paris")
    page.get_by_role("button", name="Create workspace").click()


def test_the_first_run_creates_the_owner_then_it_is_a_sign_in(
    page: Page, request: pytest.FixtureRequest
) -> None:
    page.goto("/")
    shot(page, "setup", request)
    first_run(page)
    expect(page).to_have_url(re.compile(r"/app$"))
    expect(page.get_by_role("status")).to_contain_text("Acme is ready")
    expect(page.get_by_text("owner · Europe/Paris")).to_be_visible()
    shot(page, "home", request)

    # The first run is over: / no longer offers it, and setting up again is refused.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/app/signin"))
    expect(page.get_by_role("status")).to_contain_text("Signed out")
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # A page needs a session: it sends you to sign in, and back after.
    page.goto("/app?tab=keys")
    expect(page).to_have_url(re.compile(r"/app/signin\?next=/app%3Ftab%3Dkeys$"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid email or password")
    shot(page, "signin-refused", request)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/app\?tab=keys$"))


def test_bad_setup_input_is_shown_not_stored(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Workspace name").fill("Acme")
    page.get_by_label("Your email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Workspace timezone").fill("Mars/Olympus")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("alert")).to_contain_text("Mars/Olympus")
    expect(page.get_by_label("Workspace name")).to_have_value("Acme")
    # Nothing was kept: the first run is still offered, and works once corrected.
    first_run(page)
    expect(page).to_have_url(re.compile(r"/app$"))


def test_a_form_without_the_sessions_csrf_token_is_refused(page: Page) -> None:
    first_run(page)
    answer = page.request.post("/app/signout", form={"csrf_token": "forged"})
    assert answer.status == 403
    assert "expired or did not come from this page" in answer.text()
    page.reload()  # still signed in
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_an_unknown_page_is_a_page_and_the_api_stays_json(page: Page) -> None:
    answer = page.request.get("/app/no-such-page")
    assert answer.status == 404
    assert "<h1>Not found</h1>" in answer.text()
    answer = page.request.get("/scheduled-posts")
    assert answer.status == 401
    assert answer.json()["message"].startswith("authentication required")


def test_each_role_signs_in_to_its_workspace(page: Page, team: Team) -> None:
    for role in ("viewer", "editor"):
        sign_in(page, team, role)
        expect(page.get_by_text(f"Acme · {role} · Europe/Paris")).to_be_visible()
        # A viewer composes nothing: the link is not even shown.
        compose = page.get_by_role("navigation").get_by_role("link", name="Compose")
        expect(compose).to_have_count(0 if role == "viewer" else 1)
        page.get_by_role("button", name="Sign out").click()
