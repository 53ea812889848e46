"""The pages' Content-Security-Policy in a real browser: every page works (htmx loads and
swaps, the calendar's drag and drop, the key's copy button, a feed's broken image hidden)
while Chromium reports no violation of the policy."""

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Team, shot, sign_in


def watch_violations(page: Page) -> list[str]:
    """Every CSP violation the pages report, as Chromium logs it and as the page sees it."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " console.error('Content Security Policy violation: ' + e.violatedDirective"
        " + ' ' + e.blockedURI); });"
    )
    return seen


def test_pages_work_under_the_policy_without_a_violation(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    violations = watch_violations(page)
    sign_in(page, team, "owner")
    api = {"Authorization": f"Bearer {team.token}"}
    created = page.request.post(
        "/scheduled-posts",
        headers=api,
        data={
            "scheduledFor": "2030-03-10T09:30:00Z",
            "channels": {team.channel_id: {"caption": "Dragged under the policy"}},
        },
    )
    assert created.status == 201, created.text()
    draft: dict[str, Any] = created.json()

    # The calendar's script (a static file with the nonce) moves a dragged draft.
    page.goto("/app/calendar?at=2030-03-01")
    page.locator(f'[data-post="{draft["id"]}"]').drag_to(
        page.locator('li.cal-day[data-day="2030-03-13"]')
    )
    expect(page.get_by_role("status")).to_contain_text("Moved “Dragged under the policy”")

    # htmx loads and swaps: the composer's checks answer what is typed.
    page.goto("/app/compose")
    page.get_by_label("Caption", exact=True).fill("Checked live under the policy")
    page.get_by_label("Media URLs").fill("https://cdn.example.com/launch.jpg")
    page.get_by_label("Date and time").fill("2030-01-15T09:30")
    expect(page.locator("#media-preview img")).to_have_count(1)
    expect(page.locator("#checks")).to_contain_text("Ready to submit for approval")
    shot(page, "compose-under-policy", request)

    # The settings page's script copies a new key's secret.
    page.goto("/app/settings#keys")
    page.get_by_label("Key name").fill("policy")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("button", name="Copy secret").click()
    expect(page.locator(".copied")).to_have_text(re.compile("Copied|Select the text"))

    # A sandbox feed with an image that cannot load: hidden without an inline handler.
    post = page.request.post(
        "/scheduled-posts",
        headers=api,
        data={
            "status": "WAITING_FOR_APPROVAL",
            "media": "https://cdn.example.com/missing.jpg",
            "scheduledFor": "2030-01-01T09:00:00Z",
            "channels": {team.channel_id: {"caption": "A broken picture"}},
        },
    )
    assert post.status == 201, post.text()
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    published = page.request.post(
        f"/scheduled-posts/{post.json()['id']}/publish", headers={"X-CSRF-Token": token}
    )
    assert published.status == 200, published.text()
    page.goto(f"/app/channels/{team.channel_id}")
    expect(page.locator("#feed")).to_contain_text("A broken picture", timeout=15_000)
    expect(page.locator("#feed img")).to_be_hidden()

    for path in ["/app", "/app/queue", "/app/channels", f"/app/posts/{draft['id']}"]:
        page.goto(path)
    assert violations == []
