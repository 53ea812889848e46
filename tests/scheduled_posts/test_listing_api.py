"""GET /scheduled-posts: filters, validation of the query, and keyset paging.

Paging is checked the way clients use it: follow `nextCursor` until it is null, while other
requests insert and delete posts between (and during) the page fetches.
"""

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from tests.world import World

ERROR_KEYS = {"message", "path", "type", "context"}


async def create_post(api: httpx.AsyncClient, **body: Any) -> str:
    """Create a post (a DRAFT unless `status` says otherwise) and return its id."""
    r = await api.post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id: str = r.json()["id"]
    return post_id


async def create_drafts(api: httpx.AsyncClient, count: int, **body: Any) -> list[str]:
    """`count` drafts, created one after the other (so oldest first)."""
    return [await create_post(api, notes=f"draft {i}", **body) for i in range(count)]


async def list_page(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await api.get("/scheduled-posts", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    assert set(page) == {"data", "nextCursor"}
    return page


async def list_all(api: httpx.AsyncClient, **params: Any) -> list[str]:
    """Every id the listing yields, following nextCursor to the end."""
    ids: list[str] = []
    cursor: str | None = params.pop("cursor", None)
    for _ in range(1000):
        page = await list_page(api, **params, **({"cursor": cursor} if cursor else {}))
        ids.extend(post["id"] for post in page["data"])
        cursor = page["nextCursor"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


def assert_one_query_error(r: httpx.Response, path: list[str | int], type_: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert len(body["error"]) == 1, body
    error = body["error"][0]
    assert set(error) == ERROR_KEYS
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["path"] == path
    assert error["type"] == type_
    assert isinstance(error["context"], dict)


def cursor_of(value: Any) -> str:
    raw = json.dumps(value).encode() if not isinstance(value, bytes) else value
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- the page ------------------------------------------------------------------------------


async def test_empty_workspace_lists_nothing(world: World) -> None:
    assert await list_page(world.api()) == {"data": [], "nextCursor": None}


async def test_listing_needs_authentication(world: World) -> None:
    r = await world.anonymous().get("/scheduled-posts")
    assert r.status_code == 401
    assert set(r.json()) == {"message"}


async def test_items_are_full_documents(world: World) -> None:
    api = world.api()
    post_id = await create_post(api, **world.post_body(notes="hello"))
    page = await list_page(api)
    one = (await api.get(f"/scheduled-posts/{post_id}")).json()
    assert page == {"data": [one], "nextCursor": None}
    assert one["mediumsData"][world.channel_id]["caption"] == "Hello from Tidings"


async def test_newest_first_and_stable(world: World) -> None:
    api = world.api()
    created = await create_drafts(api, 12)
    first = [p["id"] for p in (await list_page(api))["data"]]
    again = [p["id"] for p in (await list_page(api))["data"]]
    assert first == list(reversed(created))
    assert again == first


async def test_paging_yields_every_post_once_in_order(world: World) -> None:
    api = world.api()
    created = await create_drafts(api, 23)
    for limit in (1, 5, 7, 22, 23, 24, 100):
        assert await list_all(api, limit=limit) == list(reversed(created)), limit


async def test_default_limit_is_20(world: World) -> None:
    api = world.api()
    created = await create_drafts(api, 21)
    page = await list_page(api)
    assert [p["id"] for p in page["data"]] == list(reversed(created))[:20]
    assert page["nextCursor"] is not None
    rest = await list_page(api, cursor=page["nextCursor"])
    assert [p["id"] for p in rest["data"]] == [created[0]]
    assert rest["nextCursor"] is None


async def test_a_page_that_reaches_the_end_has_no_cursor(world: World) -> None:
    api = world.api()
    await create_drafts(api, 5)
    page = await list_page(api, limit=5)
    assert len(page["data"]) == 5
    assert page["nextCursor"] is None


async def test_limit_100_is_accepted(world: World) -> None:
    api = world.api()
    created = await create_drafts(api, 3)
    page = await list_page(api, limit=100)
    assert [p["id"] for p in page["data"]] == list(reversed(created))


@pytest.mark.parametrize(
    ("limit", "type_"),
    [
        ("0", "greater_than_equal"),
        ("-1", "greater_than_equal"),
        ("101", "less_than_equal"),
        ("abc", "int_parsing"),
        ("1.5", "int_parsing"),
        ("", "int_parsing"),
    ],
)
async def test_bad_limit_is_422(world: World, limit: str, type_: str) -> None:
    r = await world.api().get("/scheduled-posts", params={"limit": limit})
    assert_one_query_error(r, ["query", "limit"], type_)


INVALID_CURSORS = [
    "zzz",
    "not base64!!",
    "a",
    cursor_of({"after": 5}),
    cursor_of({"after": ""}),
    cursor_of({"before": "post_X"}),
    cursor_of([]),
    cursor_of("post_X"),
    cursor_of(b"\xff\xfe"),
]


async def test_invalid_cursor_is_422(world: World) -> None:
    api = world.api()
    for cursor in INVALID_CURSORS:
        r = await api.get("/scheduled-posts", params={"cursor": cursor})
        assert_one_query_error(r, ["query", "cursor"], "cursor_invalid")


async def test_overlong_cursor_is_422(world: World) -> None:
    r = await world.api().get("/scheduled-posts", params={"cursor": "A" * 501})
    assert_one_query_error(r, ["query", "cursor"], "string_too_long")


async def test_cursor_past_every_post_gives_an_empty_last_page(world: World) -> None:
    api = world.api()
    await create_drafts(api, 2)
    page = await list_page(api, cursor=cursor_of({"after": "post_0"}))
    assert page == {"data": [], "nextCursor": None}


# --- filters -------------------------------------------------------------------------------


async def _posts_in_statuses(world: World) -> dict[str, str]:
    """One post per reachable status: DRAFT, WAITING_FOR_APPROVAL, REJECTED, SCHEDULED."""
    api = world.api()
    draft = await create_post(api)
    waiting = await create_post(api, **world.post_body(status="WAITING_FOR_APPROVAL"))
    rejected = await create_post(api, **world.post_body(status="WAITING_FOR_APPROVAL"))
    r = await api.post(f"/scheduled-posts/{rejected}/reject", json={"notes": "off brand"})
    assert r.status_code == 200, r.text
    scheduled = await create_post(api, **world.post_body(status="WAITING_FOR_APPROVAL"))
    reviewer = await world.person("reviewer")
    r = await reviewer.post(f"/scheduled-posts/{scheduled}/approve")
    assert r.status_code == 200, r.text
    return {
        "DRAFT": draft,
        "WAITING_FOR_APPROVAL": waiting,
        "REJECTED": rejected,
        "SCHEDULED": scheduled,
    }


async def test_status_filter_single_and_repeated(world: World) -> None:
    ids = await _posts_in_statuses(world)
    api = world.api()
    for status, post_id in ids.items():
        page = await list_page(api, status=status)
        assert [p["id"] for p in page["data"]] == [post_id]
        assert page["data"][0]["status"] == status
    r = await api.get("/scheduled-posts?status=DRAFT&status=REJECTED")
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["data"]] == [ids["REJECTED"], ids["DRAFT"]]
    assert await list_all(api, status="CANCELED") == []
    assert await list_all(api) == sorted(ids.values(), reverse=True)


async def test_status_filter_with_paging(world: World) -> None:
    api = world.api()
    drafts: list[str] = []
    for _ in range(5):
        drafts.append(await create_post(api))
        await create_post(api, **world.post_body(status="WAITING_FOR_APPROVAL"))
    assert await list_all(api, status="DRAFT", limit=2) == list(reversed(drafts))


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("status=BOGUS", ["query", "status", 0]),
        ("status=draft", ["query", "status", 0]),
        ("status=DRAFT&status=NOPE", ["query", "status", 1]),
    ],
)
async def test_invalid_status_is_422(world: World, query: str, path: list[str | int]) -> None:
    r = await world.api().get(f"/scheduled-posts?{query}")
    assert_one_query_error(r, path, "enum")


async def test_channel_filter(world: World) -> None:
    api = world.api()
    second = await world.add_channel("Second")
    only_first = await create_post(api, channels={world.channel_id: {}})
    both = await create_post(api, channels={world.channel_id: {}, second: {}})
    only_second = await create_post(api, channels={second: {"caption": "x"}})
    await create_post(api)  # no channel at all
    assert await list_all(api, channelId=world.channel_id) == [both, only_first]
    assert await list_all(api, channelId=second) == [only_second, both]
    assert await list_all(api, channelId="ch_UNKNOWN") == []


async def test_channel_filter_follows_channel_changes(world: World) -> None:
    api = world.api()
    second = await world.add_channel("Second")
    post_id = await create_post(api, channels={world.channel_id: {}})
    r = await api.patch(
        f"/scheduled-posts/{post_id}", json={"channels": {world.channel_id: None, second: {}}}
    )
    assert r.status_code == 200, r.text
    assert await list_all(api, channelId=world.channel_id) == []
    assert await list_all(api, channelId=second) == [post_id]


async def test_from_is_inclusive_and_to_is_exclusive(world: World) -> None:
    api = world.api()
    at = {
        hour: await create_post(api, scheduledFor=f"2031-03-04T{hour:02d}:00:00Z")
        for hour in (9, 10, 11, 12)
    }
    unscheduled = await create_post(api)
    # 12:00+02:00 is 10:00Z and 13:00+02:00 is 11:00Z: offsets are honoured.
    window = {"from": "2031-03-04T12:00:00+02:00", "to": "2031-03-04T13:00:00+02:00"}
    page = await list_page(api, **window)
    assert [p["id"] for p in page["data"]] == [at[10]]
    assert page["data"][0]["scheduledFor"] == "2031-03-04T10:00:00Z"
    assert await list_all(api, **{"from": "2031-03-04T10:00:00Z"}) == [at[12], at[11], at[10]]
    assert await list_all(api, to="2031-03-04T06:00:00-05:00") == [at[10], at[9]]
    assert await list_all(api, to="2031-03-04T11:00:00.000001Z") == [at[11], at[10], at[9]]
    assert (
        await list_all(api, **{"from": "2031-03-04T09:00:00Z", "to": "2031-03-04T09:00:00Z"}) == []
    )
    assert unscheduled in await list_all(api)


async def test_date_window_combines_with_status_and_channel(world: World) -> None:
    api = world.api()
    second = await world.add_channel("Second")
    when = "2031-05-01T08:00:00Z"
    match = await create_post(api, scheduledFor=when, channels={second: {}})
    await create_post(api, scheduledFor=when, channels={world.channel_id: {}})
    await create_post(api, scheduledFor="2031-06-01T08:00:00Z", channels={second: {}})
    params = {"from": "2031-05-01T00:00:00Z", "to": "2031-05-02T00:00:00Z"}
    assert await list_all(api, status="DRAFT", channelId=second, **params) == [match]
    assert await list_all(api, status="REJECTED", channelId=second, **params) == []


@pytest.mark.parametrize("name", ["from", "to"])
async def test_bad_instant_in_window_is_422(world: World, name: str) -> None:
    api = world.api()
    for value in ("2031-03-04T10:00:00", "tomorrow", "2031-13-01T00:00:00Z", "2031-03-04 10"):
        r = await api.get("/scheduled-posts", params={name: value})
        assert r.status_code == 422, (value, r.text)
        errors = r.json()["error"]
        assert errors, value
        assert all(set(e) == ERROR_KEYS for e in errors), errors
        assert all(e["path"] == ["query", name] for e in errors), errors


# --- what is never listed ------------------------------------------------------------------


async def test_deleted_posts_are_absent(world: World) -> None:
    api = world.api()
    created = await create_drafts(api, 5)
    for post_id in (created[1], created[3]):
        r = await api.delete(f"/scheduled-posts/{post_id}")
        assert r.status_code == 204, r.text
    expected = [created[4], created[2], created[0]]
    assert await list_all(api) == expected
    assert await list_all(api, limit=1) == expected
    assert await list_all(api, status="DRAFT") == expected


async def test_other_workspaces_posts_are_absent(world: World) -> None:
    mine = await create_drafts(world.api(), 3, channels={world.channel_id: {}})
    async with World.build(world.app, name="Other") as other:
        theirs = await create_drafts(other.api(), 4, channels={other.channel_id: {}})
        assert await list_all(world.api(), limit=2) == list(reversed(mine))
        assert await list_all(other.api(), limit=2) == list(reversed(theirs))
        # Filtering by another workspace's channel finds nothing, not their posts.
        assert await list_all(world.api(), channelId=other.channel_id) == []
        # A cursor is only a position: another workspace's cursor still lists only mine.
        page = await list_page(other.api(), limit=1)
        assert page["nextCursor"] is not None
        leaked = await list_all(world.api(), cursor=page["nextCursor"])
        assert set(leaked) <= set(mine)


# --- paging while the data changes ---------------------------------------------------------


async def test_paging_while_posts_are_inserted_between_pages(world: World) -> None:
    """Fetch a page, let another task insert 3 posts, fetch the next page, and so on."""
    reader, writer = world.api(), world.api()
    before = await create_drafts(writer, 30)
    page_fetched: asyncio.Queue[bool] = asyncio.Queue()
    inserted: asyncio.Queue[None] = asyncio.Queue()
    new_ids: list[str] = []

    async def keep_inserting() -> None:
        while await page_fetched.get():
            for _ in range(3):
                new_ids.append(await create_post(writer, notes="late"))
            inserted.put_nowait(None)

    inserter = asyncio.create_task(keep_inserting())
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    try:
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = await list_page(reader, **params)
            pages += 1
            seen.extend(p["id"] for p in page["data"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
            page_fetched.put_nowait(True)
            await inserted.get()
    finally:
        page_fetched.put_nowait(False)
        await inserter
    assert pages == 5  # 30 posts by 7: the late ones, being newer, never push others along
    assert len(new_ids) == 3 * (pages - 1)
    assert len(seen) == len(set(seen)), "a post was listed twice"
    assert [i for i in seen if i in set(before)] == list(reversed(before)), "gap or reorder"
    assert set(seen) <= set(before) | set(new_ids)
    assert await list_all(reader) == list(reversed(before + new_ids))


async def test_paging_while_inserts_run_concurrently(world: World) -> None:
    """An inserter runs freely alongside the pager, on its own connection."""
    reader, writer = world.api(), world.api()
    before = await create_drafts(writer, 25)
    done = asyncio.Event()
    new_ids: list[str] = []

    async def keep_inserting() -> None:
        while not done.is_set():
            new_ids.append(await create_post(writer, notes="concurrent"))
            await asyncio.sleep(0)

    inserter = asyncio.create_task(keep_inserting())
    try:
        await asyncio.sleep(0)
        seen = await list_all(reader, limit=7)
        # Keep inserting while a second full pass runs as well.
        again = await list_all(reader, limit=4)
    finally:
        done.set()
        await inserter
    assert new_ids, "the inserter never ran"
    for listing in (seen, again):
        assert len(listing) == len(set(listing)), "a post was listed twice"
        assert [i for i in listing if i in set(before)] == list(reversed(before))
        assert set(listing) <= set(before) | set(new_ids)
        assert listing == sorted(listing, key=lambda i: (before + new_ids).index(i), reverse=True)


async def test_paging_while_posts_are_deleted_between_pages(world: World) -> None:
    """Deleting a post on a page not yet fetched neither shows it nor skips a neighbour."""
    api = world.api()
    created = await create_drafts(api, 15)
    newest_first = list(reversed(created))
    first = await list_page(api, limit=5)
    assert [p["id"] for p in first["data"]] == newest_first[:5]
    doomed = {newest_first[2], newest_first[6], newest_first[11]}  # one already seen
    for post_id in doomed:
        r = await api.delete(f"/scheduled-posts/{post_id}")
        assert r.status_code == 204, r.text
    rest = await list_all(api, limit=5, cursor=first["nextCursor"])
    assert rest == [i for i in newest_first[5:] if i not in doomed]
