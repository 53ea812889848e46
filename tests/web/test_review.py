"""The approval queue and a post's page, in a real browser on both databases: a reviewer
sees each waiting post as it will look, rejects only with notes, approves for a time of
their own and watches the embedded worker publish it; the creator reads the notes and
takes the post back to draft; a viewer and an editor are offered no decision, and the
server refuses the decisions they forge."""

import re
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Route, expect

from tests.web.conftest import PASSWORD, Team, shot, sign_in

PARIS = ZoneInfo("Europe/Paris")
IMAGE = "https://media.example.com/launch.png"


def _png() -> bytes:
    """A small gradient PNG, served for the posts' media (the test has no network)."""
    width = height = 64
    rows = b"".join(
        b"\x00" + b"".join(bytes((40 + 3 * x, 90 + 2 * y, 200)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png()


def serve_media(page: Page) -> None:
    def fulfil(route: Route) -> None:
        route.fulfill(status=200, body=PNG, content_type="image/png")

    page.route("https://media.example.com/**", fulfil)


def post_body(team: Team, caption: str, *, ahead: timedelta = timedelta(hours=2)) -> Any:
    when = (datetime.now(UTC) + ahead).isoformat().replace("+00:00", "Z")
    return {
        "status": "WAITING_FOR_APPROVAL",
        "media": IMAGE,
        "scheduledFor": when,
        "channels": {
            team.channel_id: {"caption": caption, "firstComment": "Details in the link above"}
        },
    }


def seed_with_key(page: Page, team: Team, caption: str) -> str:
    """A waiting post created through the JSON API with the team's key."""
    answer = page.request.post(
        "/scheduled-posts",
        headers={"Authorization": f"Bearer {team.token}"},
        data=post_body(team, caption),
    )
    assert answer.status == 201, answer.text()
    post_id: str = answer.json()["id"]
    return post_id


def seed_as(page: Page, team: Team, role: str, caption: str) -> str:
    """A waiting post created through the JSON API by a signed-in person (its creator)."""
    login = page.request.post("/auth/login", data={"email": team.email[role], "password": PASSWORD})
    assert login.status == 200, login.text()
    answer = page.request.post(
        "/scheduled-posts",
        headers={"X-CSRF-Token": login.json()["csrfToken"]},
        data=post_body(team, caption),
    )
    assert answer.status == 201, answer.text()
    post_id: str = answer.json()["id"]
    return post_id


def status_of(page: Page, team: Team, post_id: str) -> str:
    answer = page.request.get(
        f"/scheduled-posts/{post_id}", headers={"Authorization": f"Bearer {team.token}"}
    )
    status: str = answer.json()["status"]
    return status


def csrf_of(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def test_reject_needs_notes_and_the_creator_reads_them(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    serve_media(page)
    post_id = seed_as(page, team, "editor", "Our autumn launch is here")

    sign_in(page, team, "reviewer")
    page.goto("/app/queue")
    item = page.get_by_role("listitem").filter(has_text="Our autumn launch is here").first
    expect(item.get_by_text("Demo feed")).to_be_visible()
    expect(item.get_by_text("Details in the link above")).to_be_visible()
    expect(item.get_by_text(f"by {team.email['editor']}")).to_be_visible()
    expect(item.get_by_role("img")).to_have_attribute("src", IMAGE)
    expect(item.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    expect(item.get_by_role("button", name="Publish now")).to_be_visible()
    shot(page, "queue", request)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "queue-phone", request)
    page.set_viewport_size({"width": 1280, "height": 860})

    # Rejecting without notes is refused, and nothing changes.
    item.get_by_text("Reject…").click()
    item.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("a rejection needs a reason")
    assert status_of(page, team, post_id) == "WAITING_FOR_APPROVAL"
    shot(page, "reject-without-notes", request)

    item.get_by_text("Reject…").click()
    item.get_by_label("Notes for the creator").fill("Please add the price to the caption.")
    item.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Rejected")
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_visible()
    assert status_of(page, team, post_id) == "REJECTED"
    shot(page, "queue-empty", request)

    # The creator sees the notes on the post, and takes it back to draft to edit it.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, team, "editor")
    page.goto(f"/app/posts/{post_id}")
    notes = page.get_by_role("note")
    expect(notes).to_contain_text(f"Rejected by {team.email['reviewer']}")
    expect(notes).to_contain_text("Please add the price to the caption.")
    expect(page.locator("#post-status")).to_have_text("REJECTED")
    shot(page, "post-rejected", request)
    page.get_by_role("button", name="Move back to draft").click()
    expect(page.get_by_role("status")).to_contain_text("Moved back to draft")
    expect(page.locator("#post-status")).to_have_text("DRAFT")
    expect(page.get_by_role("link", name="Edit")).to_have_attribute(
        "href", f"/app/posts/{post_id}/edit"
    )
    history = page.locator(".rv-history")
    expect(history).to_contain_text("created the post and submitted it for approval")
    expect(history).to_contain_text("rejected it")
    expect(history).to_contain_text("moved it back to draft")
    assert status_of(page, team, post_id) == "DRAFT"


def test_approved_for_a_time_ahead_it_publishes_while_the_page_watches(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    serve_media(page)
    post_id = seed_with_key(page, team, "Doors open at nine")
    sign_in(page, team, "reviewer")
    page.goto("/app/queue")
    page.get_by_role("link", name="Doors open at nine").click()
    expect(page).to_have_url(re.compile(f"/app/posts/{post_id}$"))
    expect(page.locator("#post-status")).to_have_text("WAITING FOR APPROVAL")

    # A time in the past is refused with a message, nothing changes.
    page.get_by_text("Approve for another time").click()
    past = datetime.now(PARIS) - timedelta(hours=1)
    page.get_by_label("Date and time").fill(past.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Approve for this time").click()
    expect(page.get_by_role("alert")).to_contain_text("has passed")
    assert status_of(page, team, post_id) == "WAITING_FOR_APPROVAL"

    when = datetime.now(PARIS) + timedelta(seconds=6)
    page.get_by_text("Approve for another time").click()
    page.get_by_label("Date and time").fill(when.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Approve for this time").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Approved for " + when.strftime("%a %-d %b, %H:%M")
    )
    expect(page.locator("#post-status")).to_have_text("SCHEDULED")
    expect(page.get_by_role("button", name="Revert to draft")).to_be_visible()
    shot(page, "post-scheduled", request)

    # The embedded worker publishes it to the sandbox; the page follows by itself.
    expect(page.locator("#post-status")).to_have_text("PUBLISHED", timeout=30_000)
    result = page.locator(".rv-result").filter(has_text="Demo feed")
    expect(result.locator(".badge").first).to_have_text("PUBLISHED")
    live_link = result.get_by_role("link", name="View on Demo feed")
    expect(live_link).to_have_attribute("href", re.compile(f"/sandbox/channels/{team.channel_id}/"))
    expect(result).to_contain_text("First comment")
    expect(page.locator(".rv-attempts")).to_contain_text("publish #1")
    history = page.locator(".rv-history")
    expect(history).to_contain_text("created the post and submitted it for approval")
    expect(history).to_contain_text(f"{team.email['reviewer']} approved it")
    expect(history).to_contain_text("Published on Demo feed")
    expect(page.get_by_role("button", name="Revert to draft")).to_have_count(0)
    shot(page, "post-published", request)
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "post-published-phone", request)
    assert status_of(page, team, post_id) == "PUBLISHED"


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_who_may_not_decide_is_offered_nothing_and_refused(
    page: Page, team: Team, role: str, request: pytest.FixtureRequest
) -> None:
    serve_media(page)
    sign_in(page, team, role)
    page.goto("/app/queue")
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_visible()
    if role == "viewer":
        shot(page, "queue-empty", request)

    post_id = seed_with_key(page, team, "Weekend opening hours")
    page.reload()
    item = page.get_by_role("listitem").filter(has_text="Weekend opening hours").first
    expect(item.get_by_text("Demo feed")).to_be_visible()
    for name in ("Approve", "Publish now", "Reject…"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_text("Reject…")).to_have_count(0)
    expect(item.get_by_text("Reviewers, admins and owners decide on posts.")).to_be_visible()

    # Forged decisions are refused by the server, and change nothing.
    token = csrf_of(page)
    for action, form in (
        ("approve", {}),
        ("publish", {}),
        ("reject", {"notes": "not mine to say"}),
    ):
        answer = page.request.post(
            f"/app/posts/{post_id}/{action}", form={"csrf_token": token, **form}
        )
        assert answer.status == 403, (action, answer.status)
        assert "cannot" in answer.text()
    assert status_of(page, team, post_id) == "WAITING_FOR_APPROVAL"

    page.goto(f"/app/posts/{post_id}")
    expect(page.locator("#post-status")).to_have_text("WAITING FOR APPROVAL")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    if role == "viewer":
        expect(page.get_by_role("heading", name="What you can do")).to_have_count(0)
    else:
        # The editor may take it back to draft (or delete it), not decide on it.
        expect(page.get_by_role("button", name="Move back to draft")).to_be_visible()
    shot(page, "post-waiting", request)


def test_published_now_with_a_lost_answer_a_person_settles_it(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    serve_media(page)
    # A channel whose network keeps the post but loses the answer, and cannot be asked.
    flaky = page.request.post(
        "/channels",
        headers={"Authorization": f"Bearer {team.token}"},
        data={
            "platform": "sandbox",
            "name": "Flaky feed",
            "options": {"accept_then_timeout": 1, "no_lookup": 1},
        },
    )
    assert flaky.status == 201, flaky.text()
    body = post_body(team, "Lost in transit")
    body["channels"] = {flaky.json()["id"]: {"caption": "Lost in transit"}}
    answer = page.request.post(
        "/scheduled-posts", headers={"Authorization": f"Bearer {team.token}"}, data=body
    )
    assert answer.status == 201, answer.text()
    post_id = answer.json()["id"]

    sign_in(page, team, "owner")
    page.goto(f"/app/posts/{post_id}")
    page.get_by_role("button", name="Publish now").click()
    expect(page.get_by_role("status").first).to_contain_text("Publishing now")
    result = page.locator(".rv-result").filter(has_text="Flaky feed")
    expect(result.locator(".badge").first).to_have_text("UNKNOWN", timeout=30_000)
    expect(result.get_by_text("Nobody knows whether this went out.")).to_be_visible()
    # It waits on a person now: the page stops asking (and leaves the form alone).
    expect(page.locator("#post-live")).not_to_have_attribute("hx-trigger", "every 2s")
    shot(page, "post-unknown", request)

    result.get_by_label("It is live").check()
    result.get_by_label("Its post id there").fill("sbx_found_by_hand")
    result.get_by_role("button", name="Settle Flaky feed").click()
    expect(page.get_by_role("status").first).to_contain_text("Marked as published")
    expect(page.locator("#post-status")).to_have_text("PUBLISHED")
    expect(result).to_contain_text("sbx_found_by_hand")
    expect(page.locator(".rv-history")).to_contain_text("Flaky feed: PUBLISHED")
    assert status_of(page, team, post_id) == "PUBLISHED"


def test_a_scheduled_post_is_reverted_resubmitted_canceled_and_deleted(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    serve_media(page)
    post_id = seed_with_key(page, team, "A change of plan")
    sign_in(page, team, "owner")
    page.goto(f"/app/posts/{post_id}")

    def act(button: str, flash: str, status: str) -> None:
        page.get_by_role("button", name=button, exact=True).click()
        expect(page.get_by_role("status").first).to_contain_text(flash)
        expect(page.locator("#post-status")).to_have_text(status)
        assert status_of(page, team, post_id) == status.replace(" ", "_")

    act("Approve", "Approved for", "SCHEDULED")
    act("Revert to draft", "Reverted to draft", "DRAFT")
    act("Submit for approval", "Submitted for approval", "WAITING FOR APPROVAL")
    act("Approve", "Approved for", "SCHEDULED")
    act("Cancel publication", "Canceled", "CANCELED")
    expect(page.get_by_role("button", name="Revert to draft")).to_have_count(0)

    # Deleting asks first.
    expect(page.get_by_role("button", name="Yes, delete this post")).to_be_hidden()
    page.get_by_text("Delete…").click()
    shot(page, "post-delete-confirm", request)
    page.get_by_role("button", name="Yes, delete this post").click()
    expect(page).to_have_url(re.compile(r"/app/calendar$"))
    gone = page.request.get(
        f"/scheduled-posts/{post_id}", headers={"Authorization": f"Bearer {team.token}"}
    )
    assert gone.status == 404
    assert page.request.get(f"/app/posts/{post_id}").status == 404
