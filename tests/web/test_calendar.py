"""The calendar in a real browser on both databases: posts on the day (and at the time) the
viewer reads them in Europe/Paris, the month, week and list views with their filters and
paging, and moving a draft to another day by drag and drop or by the keyboard's form, as
the API's PATCH would (roles and statuses checked by the same service)."""

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Team, shot, sign_in

MEDIA = "https://cdn.example.com/launch.jpg"


def api(team: Team) -> dict[str, str]:
    return {"Authorization": f"Bearer {team.token}"}


def seed(page: Page, team: Team, caption: str | None, **body: Any) -> dict[str, Any]:
    """A post created through the JSON API with the team's key."""
    if caption is not None:
        body.setdefault("channels", {team.channel_id: {"caption": caption}})
    answer = page.request.post("/scheduled-posts", headers=api(team), data=body)
    assert answer.status == 201, answer.text()
    post: dict[str, Any] = answer.json()
    return post


def read(page: Page, team: Team, post_id: str) -> dict[str, Any]:
    answer = page.request.get(f"/scheduled-posts/{post_id}", headers=api(team))
    assert answer.status == 200, answer.text()
    post: dict[str, Any] = answer.json()
    return post


def csrf(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def scheduled(page: Page, team: Team, caption: str, when: str) -> dict[str, Any]:
    """A post approved by the signed-in owner (approving is a person's decision)."""
    post = seed(page, team, caption, status="WAITING_FOR_APPROVAL", media=MEDIA, scheduledFor=when)
    answer = page.request.post(
        f"/scheduled-posts/{post['id']}/approve", headers={"X-CSRF-Token": csrf(page)}
    )
    assert answer.status == 200, answer.text()
    assert answer.json()["status"] == "SCHEDULED"
    return post


def day(page: Page, iso: str) -> Any:
    return page.locator(f'li.cal-day[data-day="{iso}"]')


def test_posts_appear_on_their_local_day_in_month_week_and_list(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    seed(page, team, "Late launch teaser", scheduledFor="2030-03-10T23:30:00Z")
    seed(
        page,
        team,
        "Spring menu is here",
        status="WAITING_FOR_APPROVAL",
        media=MEDIA,
        scheduledFor="2030-03-14T08:00:00Z",
    )
    scheduled(page, team, "Weekend opening hours", "2030-03-20T17:15:00Z")
    seed(page, team, None, notes="an idea without a date or a channel yet")

    page.goto("/app/calendar?at=2030-03-01")
    expect(page.get_by_role("heading", name="March 2030")).to_be_visible()
    expect(page.get_by_text("Times in Europe/Paris")).to_be_visible()
    # 23:30 UTC on the 10th is half past midnight on the 11th in Paris.
    expect(day(page, "2030-03-11")).to_contain_text("00:30")
    expect(day(page, "2030-03-11")).to_contain_text("Late launch teaser")
    expect(day(page, "2030-03-10")).not_to_contain_text("Late launch teaser")
    expect(day(page, "2030-03-14")).to_contain_text("09:00")
    expect(day(page, "2030-03-14")).to_contain_text("Spring menu is here")
    expect(day(page, "2030-03-20")).to_contain_text("18:15")
    entry = day(page, "2030-03-20").locator(".cal-entry")
    expect(entry).to_have_attribute("data-status", "SCHEDULED")
    expect(entry.locator(".cal-bar")).to_have_class(re.compile("status-SCHEDULED"))
    expect(entry.get_by_role("link")).to_have_attribute("href", re.compile(r"^/app/posts/post"))
    expect(entry).to_contain_text("Demo feed")
    aside = page.get_by_role("complementary")
    expect(aside.get_by_role("heading", name="Unscheduled drafts")).to_be_visible()
    expect(aside).to_contain_text("(no caption)")
    shot(page, "month", request)

    # Week view, its navigation, and filters kept across views.
    page.get_by_role("link", name="Week", exact=True).click()
    expect(page.get_by_role("heading", name="25 February \N{EN DASH} 3 March 2030")).to_be_visible()
    page.goto("/app/calendar?view=week&at=2030-03-12")
    expect(page.get_by_role("heading", name="11 \N{EN DASH} 17 March 2030")).to_be_visible()
    expect(day(page, "2030-03-11")).to_contain_text("Late launch teaser")
    expect(day(page, "2030-03-14")).to_contain_text("Waiting for approval")
    shot(page, "week", request)
    page.get_by_role("link", name="Next week").click()
    expect(page.get_by_role("heading", name="18 \N{EN DASH} 24 March 2030")).to_be_visible()
    expect(day(page, "2030-03-20")).to_contain_text("Weekend opening hours")
    page.get_by_label("Status").select_option("DRAFT")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"view=week.*at=2030-03-18.*status=DRAFT"))
    expect(day(page, "2030-03-20")).not_to_contain_text("Weekend opening hours")
    expect(page.get_by_text("Nothing planned this week with these filters")).to_be_visible()
    page.get_by_role("link", name="Previous week").click()
    expect(day(page, "2030-03-11")).to_contain_text("Late launch teaser")
    expect(day(page, "2030-03-14")).not_to_contain_text("Spring menu")
    page.get_by_role("link", name="Month", exact=True).click()
    expect(page).to_have_url(re.compile(r"view=month.*status=DRAFT"))
    expect(page.get_by_label("Status")).to_have_value("DRAFT")
    # By channel: the draft without a channel is not on the Demo feed.
    page.get_by_label("Status").select_option("")
    page.get_by_label("Channel").select_option(team.channel_id)
    page.get_by_role("button", name="Filter").click()
    expect(day(page, "2030-03-14")).to_contain_text("Spring menu is here")
    expect(aside).not_to_contain_text("(no caption)")

    # The list: the same filters, newest first, two to a page.
    page.goto("/app/calendar?view=list&limit=2")
    expect(page.get_by_text("Times in Europe/Paris")).to_be_visible()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("(no caption)")
    expect(rows.first).to_contain_text("No date")
    shot(page, "list", request)
    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("Mon 11 Mar 2030, 00:30")
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    page.get_by_role("link", name="First page").click()
    expect(rows.first).to_contain_text("(no caption)")
    page.get_by_label("Status").select_option("SCHEDULED")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Weekend opening hours")
    expect(rows.first).to_contain_text("Scheduled")


def test_an_editor_moves_a_draft_by_drag_and_drop_or_the_keyboard(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "owner")
    fixed = scheduled(page, team, "Weekend opening hours", "2030-03-20T17:15:00Z")
    draft = seed(page, team, "Late launch teaser", scheduledFor="2030-03-10T23:30:00Z")
    idea = seed(page, team, "An idea for later")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, team, "editor")

    page.goto("/app/calendar?at=2030-03-01")
    # A scheduled post cannot be dragged or moved from here.
    scheduled_entry = day(page, "2030-03-20").locator(".cal-entry")
    expect(scheduled_entry).not_to_have_attribute("draggable", "true")
    expect(scheduled_entry.get_by_text("Move to…")).to_have_count(0)
    expect(page.locator(f'[data-post="{fixed["id"]}"]')).to_have_count(0)

    # Dragged to the 13th, it keeps its time of day (00:30 in Paris).
    page.locator(f'[data-post="{draft["id"]}"]').drag_to(day(page, "2030-03-13"))
    expect(page.get_by_role("status")).to_contain_text("Moved “Late launch teaser”")
    expect(page.get_by_role("status")).to_contain_text("Wed 13 Mar 2030 at 00:30")
    expect(day(page, "2030-03-13")).to_contain_text("Late launch teaser")
    expect(day(page, "2030-03-11")).not_to_contain_text("Late launch teaser")
    moved = read(page, team, draft["id"])
    assert moved["scheduledFor"] == "2030-03-12T23:30:00Z"
    assert moved["status"] == "DRAFT"
    assert moved["revision"] == draft["revision"] + 1
    assert read(page, team, fixed["id"])["scheduledFor"] == "2030-03-20T17:15:00Z"

    # An unscheduled draft dropped on a day is planned at 09:00 there.
    page.locator(f'[data-post="{idea["id"]}"]').drag_to(day(page, "2030-03-05"))
    expect(page.get_by_role("status")).to_contain_text("Tue 05 Mar 2030 at 09:00")
    assert read(page, team, idea["id"])["scheduledFor"] == "2030-03-05T08:00:00Z"

    # Without a mouse: "Move to…" with a day and a time; a new month follows the post.
    entry = day(page, "2030-03-13").locator(".cal-entry")
    entry.get_by_text("Move to…").click()
    shot(page, "move-form", request)
    entry.get_by_label("Day", exact=True).fill("2030-04-02")
    entry.get_by_label("Time (Europe/Paris)").fill("10:00")
    entry.get_by_role("button", name="Move").click()
    expect(page.get_by_role("heading", name="April 2030")).to_be_visible()
    expect(day(page, "2030-04-02")).to_contain_text("10:00")
    assert read(page, team, draft["id"])["scheduledFor"] == "2030-04-02T08:00:00Z"

    # A stale form (someone changed the post since) is refused with a message.
    token = csrf(page)
    stale = page.request.post(
        "/app/calendar/move",
        form={
            "csrf_token": token,
            "post_id": draft["id"],
            "revision": str(draft["revision"]),
            "day": "2030-04-09",
        },
    )
    assert stale.ok
    assert "revision mismatch" in stale.text()
    assert read(page, team, draft["id"])["scheduledFor"] == "2030-04-02T08:00:00Z"
    # Nor is a scheduled post moved by a forged form: it must be reverted first.
    forced = page.request.post(
        "/app/calendar/move",
        form={"csrf_token": token, "post_id": fixed["id"], "day": "2030-04-09"},
    )
    assert "The post was not moved" in forced.text()
    assert read(page, team, fixed["id"])["scheduledFor"] == "2030-03-20T17:15:00Z"


def test_a_viewer_sees_the_calendar_but_cannot_move_a_post(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    draft = seed(page, team, "Late launch teaser", scheduledFor="2030-03-10T23:30:00Z")
    sign_in(page, team, "viewer")
    page.goto("/app/calendar?at=2030-03-01")
    expect(day(page, "2030-03-11")).to_contain_text("Late launch teaser")
    expect(page.locator("[draggable=true]")).to_have_count(0)
    expect(page.get_by_text("Move to…")).to_have_count(0)
    expect(page.get_by_role("link", name="Write a post")).to_have_count(0)

    forged = page.request.post(
        "/app/calendar/move",
        form={"csrf_token": csrf(page), "post_id": draft["id"], "day": "2030-03-15"},
    )
    assert forged.status == 403
    assert "Not allowed" in forged.text()
    assert read(page, team, draft["id"])["scheduledFor"] == "2030-03-10T23:30:00Z"

    # On a phone the month is a list of the days that have posts.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(day(page, "2030-03-11")).to_be_visible()
    expect(day(page, "2030-03-12")).to_be_hidden()
    shot(page, "phone", request)
    page.set_viewport_size({"width": 1280, "height": 860})

    # A month with nothing in it says so; a bad date is explained, not a failure.
    page.goto("/app/calendar?at=2031-01-15")
    expect(page.get_by_text("Nothing planned in January 2031")).to_be_visible()
    shot(page, "empty", request)
    page.goto("/app/calendar?at=next-tuesday")
    expect(page.get_by_role("alert")).to_contain_text("not a date")
