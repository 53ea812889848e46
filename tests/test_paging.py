"""Every list is paged like `GET /scheduled-posts`: `limit` (1..100), an opaque `cursor`,
`nextCursor` until the end; walking the cursors returns every item once, in the list's
order; a bad cursor is a 422 at `["query", "cursor"]`. On both databases."""

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.scheduled_posts.test_listing_api import INVALID_CURSORS, assert_one_query_error
from tests.world import World
from tidings.ids import new_id
from tidings.publishing.models import AttemptOutcome, PublishAttempt
from tidings.sandbox import service as sandbox_service


async def walk(api: httpx.AsyncClient, url: str, limit: int) -> list[list[dict[str, Any]]]:
    """The pages of `url`, following `nextCursor` until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await api.get(url, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"data", "nextCursor"}
        pages.append(body["data"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursors do not end"


async def assert_paged(
    api: httpx.AsyncClient, url: str, expected: list[str], key: str = "id"
) -> None:
    """Pages of 2 walk `expected` (in order, each once); the default page holds them all;
    the limit and the cursor are checked as for posts."""
    pages = await walk(api, url, 2)
    assert [len(p) for p in pages[:-1]] == [2] * (len(pages) - 1)
    assert [item[key] for page in pages for item in page] == expected
    r = await api.get(url)
    assert r.status_code == 200, r.text
    assert [item[key] for item in r.json()["data"]] == expected
    assert r.json()["nextCursor"] is None
    for limit, type_ in (("0", "greater_than_equal"), ("101", "less_than_equal")):
        assert_one_query_error(
            await api.get(url, params={"limit": limit}), ["query", "limit"], type_
        )
    for cursor in INVALID_CURSORS:
        r = await api.get(url, params={"cursor": cursor})
        assert_one_query_error(r, ["query", "cursor"], "cursor_invalid")
    r = await api.get(url, params={"cursor": "A" * 501})
    assert_one_query_error(r, ["query", "cursor"], "string_too_long")


async def test_channels_are_paged_oldest_first(world: World) -> None:
    ids = [world.channel_id] + [await world.add_channel(f"C{i}") for i in range(4)]
    await assert_paged(world.api(), "/channels", ids)


async def test_members_are_paged_owners_first(world: World) -> None:
    expected = [world.emails[role] for role in ("owner", "admin", "editor", "reviewer", "viewer")]
    await assert_paged(world.api(), "/members", expected, key="email")


async def test_a_posts_events_are_paged_oldest_first(world: World) -> None:
    api = world.api()
    r = await api.post("/scheduled-posts", json={"notes": "0"})
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    for n in range(1, 5):
        r = await api.patch(f"/scheduled-posts/{post_id}", json={"notes": str(n)})
        assert r.status_code == 200, r.text
    pages = await walk(api, f"/scheduled-posts/{post_id}/events", 2)
    events = [e for page in pages for e in page]
    assert [e["revision"] for e in events] == [1, 2, 3, 4, 5]
    await assert_paged(api, f"/scheduled-posts/{post_id}/events", [e["id"] for e in events])


async def test_a_posts_attempts_are_paged_oldest_first(world: World) -> None:
    api = world.api()
    r = await api.post("/scheduled-posts", json=world.post_body())
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    now = datetime.now(UTC)
    ids = [new_id("att") for _ in range(5)]
    async with world.db.transaction() as session:
        for number, attempt_id in enumerate(ids, start=1):
            session.add(
                PublishAttempt(
                    id=attempt_id,
                    post_id=post_id,
                    channel_id=world.channel_id,
                    operation="publish",
                    number=number,
                    worker="w1",
                    started_at=now,
                    outcome=AttemptOutcome.FAILED,
                )
            )
    await assert_paged(api, f"/scheduled-posts/{post_id}/attempts", ids)


async def test_the_sandbox_feed_is_paged_oldest_first(world: World) -> None:
    ids = []
    for n in range(5):
        accepted = await sandbox_service.accept_post(
            world.db,
            channel_id=world.channel_id,
            idempotency_key=f"key-{n}",
            post_type="POST",
            caption=f"post {n}",
            media=[],
            media_type=None,
            now=datetime.now(UTC),
        )
        ids.append(accepted.id)
    await assert_paged(world.api(), f"/sandbox/channels/{world.channel_id}/posts", ids)
