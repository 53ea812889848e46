"""The whole journey in a real browser, on both databases, with nothing seeded: the first
run, a sandbox channel, a reviewer invited (who joins through the link), a post composed
and submitted, rejected with notes, edited and submitted again, approved for a few seconds
ahead, and watched until it is PUBLISHED and on the sandbox's feed. Screenshots of each
page are saved (the README's come from here)."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import PASSWORD, shot

OWNER, REVIEWER = "owner@acme.example.com", "reviewer@acme.example.com"
ZONE = "Europe/Paris"
IMAGE = "https://cdn.example.com/launch.jpg"


def sign_in_as(page: Page, email: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app$"))


def test_first_run_to_a_published_post(page: Page, request: pytest.FixtureRequest) -> None:
    # First run: the workspace and its owner.
    page.goto("/")
    page.get_by_label("Workspace name").fill("Acme")
    page.get_by_label("Your email").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Workspace timezone").fill(ZONE)
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("status")).to_contain_text("Acme is ready")

    # A sandbox channel, and a reviewer.
    page.get_by_role("navigation").get_by_role("link", name="Channels").click()
    page.get_by_label("Channel name").fill("Demo feed")
    page.get_by_role("button", name="Add sandbox channel").click()
    expect(page.get_by_role("status")).to_be_visible()
    shot(page, "channels", request)
    page.get_by_role("navigation").get_by_role("link", name="Settings").click()
    page.locator("#member-email").fill(REVIEWER)
    page.locator("#member-role").select_option("reviewer")
    page.get_by_role("button", name="Invite").click()
    link = page.get_by_label("Invitation link").input_value()
    # The reviewer joins through the link with a password of their own.
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    page.get_by_label("Choose a password").fill(PASSWORD)
    page.get_by_label("The password again").fill(PASSWORD)
    page.get_by_role("button", name="Join Acme").click()
    expect(page.get_by_role("status")).to_contain_text("you joined Acme as reviewer")
    page.get_by_label("Email").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app$"))

    # Compose and submit; the composer checks as you type.
    page.get_by_role("navigation").get_by_role("link", name="Compose").click()
    page.get_by_role("checkbox", name="Sandbox Demo feed").check()
    tomorrow = datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)
    page.get_by_label("Date and time").fill(tomorrow.strftime("%Y-%m-%dT09:00"))
    page.get_by_label("Media URLs").fill(IMAGE)
    page.get_by_label("Caption", exact=True).fill("Launch day!")
    expect(page.locator("#when-utc")).to_contain_text("UTC")
    shot(page, "composer", request)
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.get_by_role("status")).to_contain_text("Submitted for approval")
    post_url = page.url
    assert re.search(r"/app/posts/post_\w+$", post_url)

    # The reviewer rejects it with notes.
    sign_in_as(page, REVIEWER)
    page.get_by_role("navigation").get_by_role("link", name="Approvals").click()
    expect(page.get_by_text("Launch day!").first).to_be_visible()
    shot(page, "approval-queue", request)
    page.get_by_text("Reject…").click()
    page.get_by_label("Notes for the creator (required)").fill("Say when, and add the hashtag.")
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Rejected")

    # The owner reads the notes, edits and submits again.
    sign_in_as(page, OWNER)
    page.goto(post_url)
    expect(page.get_by_role("note")).to_contain_text("Say when, and add the hashtag.")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Caption", exact=True).fill("Launch day, 9:00! #tidings")
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.get_by_role("status")).to_contain_text("Submitted for approval")

    # The reviewer approves it for a few seconds from now, and watches it go out.
    sign_in_as(page, REVIEWER)
    page.goto("/app/queue")
    page.get_by_text("Approve for another time").click()
    soon = datetime.now(ZoneInfo(ZONE)) + timedelta(seconds=6)
    page.get_by_label(f"Date and time ({ZONE})").fill(soon.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Approve for this time").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    page.goto(post_url)
    expect(page.locator(".badge", has_text="SCHEDULED").first).to_be_visible()
    expect(page.locator(".badge", has_text="PUBLISHED").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Launch day, 9:00! #tidings").first).to_be_visible()
    shot(page, "post-published", request)

    # It is on the sandbox's feed.
    page.get_by_role("navigation").get_by_role("link", name="Channels").click()
    page.get_by_role("link", name="Demo feed").first.click()
    expect(page.get_by_text("Launch day, 9:00! #tidings")).to_be_visible()
    shot(page, "sandbox-feed", request)

    # And on the calendar, on the day it went out.
    page.get_by_role("navigation").get_by_role("link", name="Calendar").click()
    expect(page.get_by_text("Launch day, 9:00!").first).to_be_visible()
    shot(page, "calendar", request)
