"""The composer in a real browser on both databases: a post written for a time zone is
stored at the right UTC instant; live validation counts and lists each channel's problems
with the API's own rules; a refused submission stores nothing; an edit keeps what was there
and notices a concurrent change; people who may not write posts get no composer, and a
forged form is refused by the server."""

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Team, shot, sign_in
from tidings.channels.models import Channel
from tidings.platforms.base import PostContent, PostType, media_items
from tidings.scheduled_posts.models import ScheduledPost, Target
from tidings.web.compose import Count, Draft, _instant, build, count, draft_of

YEAR = datetime.now(UTC).year + 1


def api(team: Team) -> dict[str, str]:
    return {"Authorization": f"Bearer {team.token}"}


def stored_posts(page: Page, team: Team) -> list[dict[str, Any]]:
    answer = page.request.get("/scheduled-posts", headers=api(team))
    assert answer.ok
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def checks_of(page: Page, channel: str) -> Any:
    return page.locator("#checks").get_by_role("group", name=channel)


def test_a_post_composed_in_new_york_is_stored_at_its_utc_instant(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "editor")
    page.get_by_role("link", name="Compose").first.click()
    expect(page.get_by_role("heading", name="New post")).to_be_visible()
    # The workspace's only channel is picked already.
    expect(page.get_by_role("checkbox", name="Sandbox Demo feed", exact=True)).to_be_checked()

    page.get_by_label("Caption", exact=True).fill("Hello from New York")
    page.get_by_label("Media URLs").fill("https://cdn.example.com/launch.jpg")
    page.get_by_label("Date and time").fill(f"{YEAR}-01-15T09:30")
    page.get_by_label("Time zone").fill("America/New_York")
    when = page.locator("#when-utc")
    expect(when).to_contain_text(f"{YEAR}-01-15 14:30 UTC")
    expect(when).to_contain_text("15:30 in Europe/Paris (yours)")
    expect(page.locator("#media-preview img")).to_have_count(1)
    expect(page.locator("#checks")).to_contain_text("Ready to submit for approval")
    page.get_by_role("button", name="Submit for approval").click()

    expect(page).to_have_url(re.compile(r"/app/posts/[\w-]+$"))
    expect(page.get_by_text("Submitted for approval.")).to_be_visible()
    post_id = page.url.rsplit("/", 1)[-1]
    doc = page.request.get(f"/scheduled-posts/{post_id}", headers=api(team)).json()
    assert doc["status"] == "WAITING_FOR_APPROVAL"
    assert doc["scheduledFor"] == f"{YEAR}-01-15T14:30:00Z"
    assert doc["timezone"] == "America/New_York"
    assert doc["mediumsData"][team.channel_id]["caption"] == "Hello from New York"
    assert doc["media"] == ["https://cdn.example.com/launch.jpg"]


def test_live_validation_counts_and_lists_each_channels_problems(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    added = page.request.post(
        "/channels",
        headers=api(team),
        data={
            "platform": "sandbox",
            "name": "Reels only",
            "options": {"allowed_media_types": "VIDEO"},
        },
    )
    assert added.ok, added.text()
    sign_in(page, team, "editor")
    page.goto("/app/compose")
    page.get_by_role("checkbox", name="Sandbox Demo feed", exact=True).check()
    page.get_by_role("checkbox", name="Sandbox Reels only", exact=True).check()
    page.get_by_label("Caption", exact=True).fill("x" * 2201)
    page.get_by_label("Media URLs").fill("https://cdn.example.com/launch.jpg")
    page.get_by_label("Date and time").fill(f"{YEAR}-03-02T10:00")

    demo, reels = checks_of(page, "Demo feed"), checks_of(page, "Reels only")
    expect(demo.locator(".counter")).to_contain_text("2,201 / 2,200")
    expect(demo.locator(".counter")).to_contain_text("1 too many")
    expect(demo).to_contain_text("Caption is 2201 characters; sandbox allows at most 2200")
    expect(reels).to_contain_text("Media type IMAGE is not supported here (supported: VIDEO)")
    page.get_by_text("Customise for Reels only").click()
    shot(page, "validation", request)

    # Each problem goes once it is fixed.
    page.get_by_label("Caption", exact=True).fill("Spring is here")
    expect(demo.locator(".counter")).to_contain_text("14 / 2,200")
    expect(demo).not_to_contain_text("too many")
    expect(demo).to_contain_text("Ready for Demo feed")
    expect(reels).to_contain_text("not supported")
    page.get_by_label("Media URLs").fill("https://cdn.example.com/spring.mp4")
    expect(reels).to_contain_text("Ready for Reels only")
    expect(page.locator("#media-preview video")).to_have_count(1)
    expect(page.locator("#checks")).to_contain_text("Ready to submit for approval")

    # On a phone the checks come below the form.
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "phone", request)


def test_a_refused_submission_lists_the_problems_and_stores_nothing(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "editor")
    page.goto("/app/compose")
    page.get_by_label("Media URLs").fill("https://cdn.example.com/launch.jpg\nnot a url")
    page.get_by_label("Date and time").fill(f"{YEAR}-03-02T10:00")
    page.get_by_role("button", name="Submit for approval").click()
    refused = page.get_by_role("alert")
    expect(refused).to_contain_text("Nothing was saved")
    expect(refused).to_contain_text("Media line 2 is not a web address")
    assert stored_posts(page, team) == []

    # The form keeps what was typed; with the bad line gone, the missing caption is named.
    expect(page.get_by_label("Media URLs")).to_have_value(
        "https://cdn.example.com/launch.jpg\nnot a url"
    )
    page.get_by_label("Media URLs").fill("https://cdn.example.com/launch.jpg")
    page.get_by_role("button", name="Submit for approval").click()
    expect(refused).to_contain_text("Demo feed: The caption is empty.")
    shot(page, "refused", request)
    assert stored_posts(page, team) == []

    # A draft is permissive.
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Draft saved.")).to_be_visible()
    [post] = stored_posts(page, team)
    assert post["status"] == "DRAFT"


def test_editing_a_draft_keeps_its_values_and_notices_a_concurrent_change(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    created = page.request.post(
        "/scheduled-posts",
        headers=api(team),
        data={
            "media": "https://cdn.example.com/a.jpg",
            "scheduledFor": f"{YEAR}-06-01T07:00:00Z",
            "timezone": "America/New_York",
            "channels": {
                team.channel_id: {
                    "caption": "First words",
                    "firstComment": "Link in bio",
                    "options": {"latency_ms": 5},
                }
            },
        },
    )
    assert created.ok, created.text()
    post_id = created.json()["id"]
    sign_in(page, team, "editor")
    page.goto(f"/app/posts/{post_id}/edit")
    expect(page.get_by_role("heading", name="Edit post")).to_be_visible()
    expect(page.get_by_label("Caption", exact=True)).to_have_value("First words")
    expect(page.locator("#first_comment")).to_have_value("Link in bio")
    expect(page.get_by_label("Media URLs")).to_have_value("https://cdn.example.com/a.jpg")
    expect(page.get_by_label("Date and time")).to_have_value(f"{YEAR}-06-01T03:00")
    expect(page.get_by_label("Time zone")).to_have_value("America/New_York")
    expect(page.locator("#when-utc")).to_contain_text(f"{YEAR}-06-01 07:00 UTC")
    shot(page, "edit", request)

    page.get_by_label("Caption", exact=True).fill("Better words")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Draft saved.")).to_be_visible()
    doc = page.request.get(f"/scheduled-posts/{post_id}", headers=api(team)).json()
    target = doc["mediumsData"][team.channel_id]
    assert (target["caption"], target["firstComment"]) == ("Better words", "Link in bio")
    assert target["options"] == {"latency_ms": 5}
    assert doc["scheduledFor"] == f"{YEAR}-06-01T07:00:00Z"
    assert doc["revision"] == 2

    # Someone else changes it while the form is open: saving says so and keeps nothing.
    page.goto(f"/app/posts/{post_id}/edit")
    changed = page.request.patch(
        f"/scheduled-posts/{post_id}", headers=api(team), data={"notes": "meanwhile"}
    )
    assert changed.ok
    page.get_by_label("Caption", exact=True).fill("Mine")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("alert")).to_contain_text("Someone changed this post")
    expect(page.get_by_label("Caption", exact=True)).to_have_value("Mine")
    doc = page.request.get(f"/scheduled-posts/{post_id}", headers=api(team)).json()
    assert doc["mediumsData"][team.channel_id]["caption"] == "Better words"


def test_a_waiting_post_stays_waiting_and_a_scheduled_one_says_why_it_cannot_be_edited(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    created = page.request.post(
        "/scheduled-posts",
        headers=api(team),
        data={
            "status": "WAITING_FOR_APPROVAL",
            "media": "https://cdn.example.com/a.jpg",
            "scheduledFor": f"{YEAR}-06-01T07:00:00Z",
            "channels": {team.channel_id: {"caption": "Ready"}},
        },
    )
    assert created.ok, created.text()
    post_id = created.json()["id"]
    sign_in(page, team, "owner")
    page.goto(f"/app/posts/{post_id}/edit")
    expect(page.get_by_role("button", name="Move back to draft")).to_be_visible()
    page.get_by_label("Caption", exact=True).fill("Ready, steady")
    page.get_by_role("button", name="Save changes").click()
    expect(
        page.get_by_text("Changes saved; the post is still waiting for approval.")
    ).to_be_visible()
    doc = page.request.get(f"/scheduled-posts/{post_id}", headers=api(team)).json()
    assert doc["status"] == "WAITING_FOR_APPROVAL"
    assert doc["mediumsData"][team.channel_id]["caption"] == "Ready, steady"

    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    approved = page.request.post(
        f"/scheduled-posts/{post_id}/approve", headers={"X-CSRF-Token": csrf}
    )
    assert approved.ok, approved.text()
    page.goto(f"/app/posts/{post_id}/edit")
    expect(page.get_by_role("heading", name="This post cannot be edited")).to_be_visible()
    expect(page.get_by_text("move it back to draft first")).to_be_visible()
    shot(page, "locked", request)


def test_only_writers_get_the_composer_and_a_forged_create_is_refused(
    page: Page, team: Team, request: pytest.FixtureRequest
) -> None:
    sign_in(page, team, "viewer")
    expect(page.get_by_role("link", name="Compose")).to_have_count(0)
    answer = page.goto("/app/compose")
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.context.clear_cookies()  # the error page has no menu: sign out by forgetting

    sign_in(page, team, "reviewer")
    expect(page.get_by_role("link", name="Compose")).to_have_count(0)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    forged = page.request.post(
        "/app/compose",
        form={
            "csrf_token": csrf,
            "channels": team.channel_id,
            "caption": "Sneaky",
            "media": "https://cdn.example.com/a.jpg",
            "when": f"{YEAR}-03-02T10:00",
            "timezone": "UTC",
            "intent": "draft",
        },
    )
    assert forged.status == 403
    assert "reviewer cannot create posts" in forged.text()
    assert stored_posts(page, team) == []


# --- the form's values and the API's, without a browser ----------------------------------


def test_platform_options_go_to_the_api_and_come_back_to_the_form() -> None:
    tok = Channel(id="ch_tok", platform="tiktok", name="Creator")
    insta = Channel(id="ch_ig", platform="instagram", name="Shop")
    draft = Draft(
        picked=["ch_tok", "ch_ig"],
        caption="Shared",
        first_comment="First!",
        media="https://cdn.example.com/clip.mp4",
        type="REEL",
        when=f"{YEAR}-07-01T12:00",
        timezone="Europe/Paris",
    )
    draft.channel("ch_tok").options = {
        "privacy_level": "FOLLOWER_OF_CREATOR",
        "disable_comment": "on",
        "is_aigc": "",
        "auto_publish": "",  # off: to the creator's inbox
    }
    draft.channel("ch_tok").no_comment = True
    draft.channel("ch_tok").extra = 'video_cover_timestamp_ms=1500\nlabel="42"'
    draft.channel("ch_ig").caption = "Only on Instagram"
    draft.channel("ch_ig").options = {"alt_text": "A clip", "share_to_feed": "no"}
    built = build(draft, {"ch_tok": tok, "ch_ig": insta})
    assert built.errors == []
    assert built.scheduled_for == datetime(YEAR, 7, 1, 10, 0, tzinfo=UTC)
    tiktok, instagram = built.channels["ch_tok"], built.channels["ch_ig"]
    assert (tiktok.caption, tiktok.firstComment) == ("Shared", None)
    assert tiktok.options == {
        "privacy_level": "FOLLOWER_OF_CREATOR",
        "disable_comment": True,
        "auto_publish": False,
        "video_cover_timestamp_ms": 1500,
        "label": "42",
    }
    assert (instagram.caption, instagram.firstComment) == ("Only on Instagram", "First!")
    assert instagram.options == {"alt_text": "A clip", "share_to_feed": False}

    post = ScheduledPost(
        type=PostType.REEL,
        media=built.media,
        media_type=None,
        scheduled_for=built.scheduled_for,
        timezone="Europe/Paris",
        revision=3,
        targets=[
            Target(
                channel_id=cid, caption=e.caption, first_comment=e.firstComment, options=e.options
            )
            for cid, e in built.channels.items()
        ],
    )
    again = draft_of(post, [tok, insta], "UTC")
    assert (again.caption, again.first_comment, again.when) == ("Shared", "First!", draft.when)
    assert again.channel("ch_tok").options == {
        "privacy_level": "FOLLOWER_OF_CREATOR",
        "disable_comment": "on",
        "auto_publish": "",
    }
    assert again.channel("ch_tok").no_comment
    assert build(again, {"ch_tok": tok, "ch_ig": insta}).channels == built.channels


def test_each_platform_counts_a_caption_its_own_way() -> None:
    video = PostContent(PostType.POST, media_items("https://x.example/a.mp4"), None, None)
    assert count("threads", "hi 😀", video) == Count(7, 500, "characters (emoji as bytes)")
    assert count("tiktok", "hi 😀", video).length == 5  # UTF-16: the emoji is two units
    assert count("tiktok", "", video).limit == 2200
    photos = PostContent(PostType.POST, media_items("https://x.example/a.jpg"), None, None)
    assert count("tiktok", "", photos).limit == 4000  # a photo post's description
    assert count("sandbox", "x" * 2201, video).over


def test_a_local_time_the_clocks_skip_is_explained() -> None:
    # The United States move their clocks forward at 02:00 on March's second Sunday.
    first_sunday = 1 + (6 - date(YEAR, 3, 1).weekday()) % 7
    draft = Draft(when=f"{YEAR}-03-{first_sunday + 7:02d}T02:30", timezone="America/New_York")
    errors: list[str] = []
    instant, _, note = _instant(draft, errors)
    assert errors == []
    assert instant is not None
    assert instant.hour == 7  # 03:30 EDT
    assert note is not None
    assert "does not exist in America/New_York" in note
    bad: list[str] = []
    _instant(Draft(when="soon", timezone="Mars/Olympus"), bad)
    assert bad == ["'Mars/Olympus' is not a time zone name (e.g. Europe/Paris)"]
