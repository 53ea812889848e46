"""Every error leaves in a documented shape, and arbitrary input never makes the API fail.

`400/401/403/404/405/409` carry `{"message": str}` (some add details next to it);
request-shape violations are `422 {"error": [{"message", "path", "type", "context"}]}`.
"""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.world import World, future, signature_headers
from tidings.platforms.base import MediaType, PostType
from tidings.scheduled_posts.lifecycle import PostStatus

ERROR_KEYS = {"message", "path", "type", "context"}
MESSAGE_STATUSES = {400, 401, 403, 404, 405, 409}
JSON = "application/json"


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The world's key as Bearer; an exception in the app comes back as its 500 response."""
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://tidings.test",
        headers={"Authorization": f"Bearer {world.key_token}"},
    ) as client:
        yield client


def assert_message(r: httpx.Response, status: int) -> dict[str, Any]:
    """`status` with a `{"message": "..."}` body; returns the body."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("message"), str), body
    assert body["message"]
    return body


def assert_validation(r: httpx.Response) -> list[dict[str, Any]]:
    """A 422 in the `{"error": [...]}` shape; returns its errors."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    errors = body["error"]
    assert isinstance(errors, list)
    assert errors
    for error in errors:
        assert set(error) == ERROR_KEYS, error
        assert isinstance(error["message"], str)
        assert error["message"]
        assert isinstance(error["path"], list)
        assert all(isinstance(part, str | int) for part in error["path"]), error
        assert isinstance(error["type"], str)
        assert error["type"]
        assert isinstance(error["context"], dict)
    return errors


def only_error(r: httpx.Response) -> dict[str, Any]:
    errors = assert_validation(r)
    assert len(errors) == 1, errors
    return errors[0]


async def new_draft(api: httpx.AsyncClient, **body: Any) -> str:
    r = await api.post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id: str = r.json()["id"]
    return post_id


# --- 422: the body is not JSON, or not the right JSON ----------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{bad", b'{"notes": ', b"{'notes': 'x'}", b'{"notes": "x"} trailing', b"{,}"]
)
async def test_malformed_json_is_422_json_invalid(
    api: httpx.AsyncClient, world: World, raw: bytes
) -> None:
    post_id = await new_draft(api)
    for method, url in [("POST", "/scheduled-posts"), ("PATCH", f"/scheduled-posts/{post_id}")]:
        r = await api.request(method, url, content=raw, headers={"content-type": JSON})
        error = only_error(r)
        assert error["type"] == "json_invalid", error
        assert all(isinstance(p, int) for p in error["path"]), error  # position in the text


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"true", b"null", b"[{}]"])
async def test_json_that_is_not_an_object_is_422(api: httpx.AsyncClient, raw: bytes) -> None:
    post_id = await new_draft(api)
    for method, url in [("POST", "/scheduled-posts"), ("PATCH", f"/scheduled-posts/{post_id}")]:
        r = await api.request(method, url, content=raw, headers={"content-type": JSON})
        error = only_error(r)
        assert error["path"] == []
        assert error["type"] == "model_attributes_type"


async def test_empty_body_is_422(api: httpx.AsyncClient) -> None:
    error = only_error(await api.post("/scheduled-posts", headers={"content-type": JSON}))
    assert error["path"] == []
    assert error["type"] == "missing"


async def test_unknown_fields_are_422_extra_forbidden(api: httpx.AsyncClient, world: World) -> None:
    ch = world.channel_id
    post_id = await new_draft(api)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"bogus": 1}, ["bogus"]),
        ({"notes": "x", "bogus": None}, ["bogus"]),
        ({"channels": {ch: {"bogus": "x"}}}, ["channels", ch, "bogus"]),
        ({"media": [{"url": "https://cdn.example.com/a.jpg", "bogus": 1}]}, ["media"]),
    ]
    for body, path in cases:
        for method, url in [("POST", "/scheduled-posts"), ("PATCH", f"/scheduled-posts/{post_id}")]:
            errors = assert_validation(await api.request(method, url, json=body))
            extra = [e for e in errors if e["type"] == "extra_forbidden"]
            assert extra, (body, errors)
            assert extra[0]["path"][: len(path)] == path, (body, errors)
            assert extra[0]["path"][-1] == "bogus", (body, errors)
    # The exact error for the simplest case.
    assert only_error(await api.post("/scheduled-posts", json={"bogus": 1})) == {
        "message": "Extra inputs are not permitted",
        "path": ["bogus"],
        "type": "extra_forbidden",
        "context": {},
    }


async def test_nested_paths_point_into_the_document(api: httpx.AsyncClient, world: World) -> None:
    ch = world.channel_id
    post_id = await new_draft(api, channels={ch: {"caption": "ok"}})
    cases: list[tuple[dict[str, Any], list[str | int], str]] = [
        ({"channels": {ch: {"caption": 5}}}, ["channels", ch, "caption"], "string_type"),
        ({"channels": {ch: {"firstComment": []}}}, ["channels", ch, "firstComment"], "string_type"),
        ({"channels": {ch: {"options": "x"}}}, ["channels", ch, "options"], "dict_type"),
        ({"channels": []}, ["channels"], "dict_type"),
        ({"notes": 12}, ["notes"], "string_type"),
        ({"type": "TWEET"}, ["type"], "enum"),
        ({"mediaType": "GIF"}, ["mediaType"], "enum"),
        ({"scheduledFor": 1_900_000_000}, ["scheduledFor"], "value_error"),
        ({"scheduledFor": "2031-01-01T10:00:00"}, ["scheduledFor"], "timezone_aware"),
        ({"timezone": "Mars/Olympus"}, ["timezone"], "value_error"),
    ]
    for body, path, type_ in cases:
        for method, url in [("POST", "/scheduled-posts"), ("PATCH", f"/scheduled-posts/{post_id}")]:
            error = only_error(await api.request(method, url, json=body))
            assert error["path"] == path, (method, body, error)
            assert error["type"] == type_, (method, body, error)
    # Nothing was changed by the refused PATCHes.
    r = await api.get(f"/scheduled-posts/{post_id}")
    assert r.json()["mediumsData"][ch]["caption"] == "ok"
    assert r.json()["revision"] == 1


async def test_status_other_than_draft_or_waiting_on_create_is_422(api: httpx.AsyncClient) -> None:
    for status in ("SCHEDULED", "REJECTED", "PUBLISHED", "draft"):
        error = only_error(await api.post("/scheduled-posts", json={"status": status}))
        assert error["path"] == ["status"]
        assert error["type"] == "literal_error"


async def test_explicit_null_for_a_required_patch_field_is_422(api: httpx.AsyncClient) -> None:
    post_id = await new_draft(api)
    for name in ("type", "channels", "status"):
        error = only_error(await api.patch(f"/scheduled-posts/{post_id}", json={name: None}))
        assert error["path"] == [name]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
async def test_a_body_that_is_not_declared_json_is_422(
    api: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = await api.post("/scheduled-posts", content=b'{"notes": "x"}', headers=headers)
    error = only_error(r)
    assert error["path"] == []
    r = await api.get("/scheduled-posts")
    assert r.json()["data"] == []


async def test_form_bodies_are_422(api: httpx.AsyncClient) -> None:
    assert_validation(await api.post("/scheduled-posts", data={"notes": "x"}))
    assert_validation(
        await api.post("/scheduled-posts", files={"notes": ("n.txt", b"x", "text/plain")})
    )


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/x+json"])
async def test_json_content_types_are_accepted(api: httpx.AsyncClient, content_type: str) -> None:
    r = await api.post("/scheduled-posts", content=b"{}", headers={"content-type": content_type})
    assert r.status_code == 201, r.text


async def test_bad_if_match_is_422(api: httpx.AsyncClient) -> None:
    post_id = await new_draft(api)
    r = await api.patch(f"/scheduled-posts/{post_id}", json={}, headers={"If-Match": "abc"})
    error = only_error(r)
    assert error["path"] == ["header", "If-Match"]


# --- {"message"} statuses ----------------------------------------------------------------------


async def test_unknown_route_is_404_with_message(api: httpx.AsyncClient) -> None:
    for url in ("/nope", "/scheduled-posts/x/y/z", "/scheduled-posts/post_X/unknown-action"):
        body = assert_message(await api.get(url), 404)
        assert body == {"message": "Not Found"}
    assert assert_message(await api.post("/nope", json={}), 404) == {"message": "Not Found"}


async def test_an_id_ending_in_an_encoded_slash_is_not_redirected(
    api: httpx.AsyncClient,
) -> None:
    post_id = await new_draft(api, notes="kept")
    # `%2F` is part of the id, not a trailing slash: no post has that id, and the request is
    # not redirected to the post whose id it ends with.
    for method in ("GET", "PATCH", "DELETE"):
        r = await api.request(method, f"/scheduled-posts/{post_id}%2F", json={"notes": "x"})
        assert assert_message(r, 404) == {"message": "Not Found"}, method
    r = await api.post(f"/scheduled-posts/{post_id}%2f/submit-for-approval")
    assert assert_message(r, 404) == {"message": "Not Found"}
    r = await api.get(f"/scheduled-posts/{post_id}")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["notes"], r.json()["revision"]) == ("DRAFT", "kept", 1)


async def test_a_trailing_slash_redirects_to_the_path_without_it(api: httpx.AsyncClient) -> None:
    r = await api.get("/scheduled-posts/?limit=5")
    assert r.status_code == 307, r.text
    assert r.headers["location"] == "/scheduled-posts?limit=5"
    post_id = await new_draft(api)
    r = await api.get(f"/scheduled-posts/{post_id}/")
    assert r.status_code == 307, r.text
    assert r.headers["location"] == f"/scheduled-posts/{post_id}"
    assert assert_message(await api.get("/nope/"), 404) == {"message": "Not Found"}


async def test_wrong_method_is_405_naming_every_method_of_the_path(
    api: httpx.AsyncClient,
) -> None:
    for method, url, allowed in [
        ("PUT", "/scheduled-posts", "GET, POST"),
        ("DELETE", "/scheduled-posts", "GET, POST"),
        # Three routes share this path; Starlette's own 405 named only the first (GET).
        ("PUT", "/scheduled-posts/post_X", "DELETE, GET, PATCH"),
        ("POST", "/scheduled-posts/post_X", "DELETE, GET, PATCH"),
        ("GET", "/scheduled-posts/post_X/cancel", "POST"),
        ("POST", "/health", "GET"),
        ("POST", "/members/usr_X", "DELETE, PATCH"),
    ]:
        r = await api.request(method, url)
        assert assert_message(r, 405) == {"message": "Method Not Allowed"}
        assert r.headers["allow"] == allowed, (method, url)


async def test_unknown_post_is_404_everywhere(api: httpx.AsyncClient, world: World) -> None:
    url = "/scheduled-posts/post_01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"notes": "x"}),
        ("DELETE", "", None),
        ("GET", "/events", None),
        ("POST", "/submit-for-approval", None),
        ("POST", "/reject", {"notes": "no"}),
        ("POST", "/revert", None),
        ("POST", "/cancel", None),
    ]:
        r = await api.request(method, url + path, json=body)
        message = assert_message(r, 404)["message"]
        assert "post_01ZZZZZZZZZZZZZZZZZZZZZZZZ" in message


async def test_deleted_post_is_404(api: httpx.AsyncClient) -> None:
    post_id = await new_draft(api)
    assert (await api.delete(f"/scheduled-posts/{post_id}")).status_code == 204
    assert_message(await api.get(f"/scheduled-posts/{post_id}"), 404)
    assert_message(await api.delete(f"/scheduled-posts/{post_id}"), 404)


async def test_unauthenticated_is_401_with_message(world: World) -> None:
    anonymous = world.anonymous()
    assert_message(await anonymous.get("/scheduled-posts"), 401)
    assert_message(await anonymous.post("/scheduled-posts", json={"bogus": 1}), 401)
    bad = world._client({"Authorization": "Bearer key_nope.secret"})
    assert_message(await bad.get("/scheduled-posts"), 401)


async def test_business_refusals_carry_a_message(api: httpx.AsyncClient, world: World) -> None:
    post_id = await new_draft(api)
    body = assert_message(await api.post(f"/scheduled-posts/{post_id}/cancel"), 409)
    assert body["status"] == "DRAFT"
    assert_message(await api.post(f"/scheduled-posts/{post_id}/approve"), 403)
    body = assert_message(await api.post(f"/scheduled-posts/{post_id}/submit-for-approval"), 400)
    assert {p["rule"] for p in body["problems"]} >= {"media.required", "channels.required"}
    r = await api.patch(f"/scheduled-posts/{post_id}", json={}, headers={"If-Match": "7"})
    assert_message(r, 409)


# --- edge cases that once were, or still are, server errors ----------------------------


async def test_nul_characters_are_refused_with_their_path(
    api: httpx.AsyncClient, world: World
) -> None:
    """PostgreSQL text cannot hold U+0000: both backends refuse it with a 422 at its place."""
    post_id = await new_draft(api)
    ch = world.channel_id
    for method, url, body, path in [
        ("POST", "/scheduled-posts", {"notes": "a\u0000b"}, ["notes"]),
        (
            "POST",
            "/scheduled-posts",
            {"channels": {ch: {"caption": "\u0000"}}},
            ["channels", ch, "caption"],
        ),
        ("POST", "/scheduled-posts", {"channels": {"ch_\u0000": {}}}, ["channels", "ch_\u0000"]),
        (
            "POST",
            "/scheduled-posts",
            {"media": ["https://a.example/1.jpg", {"url": "https://a.example/\u0000"}]},
            ["media", 1, "url"],
        ),
        ("PATCH", f"/scheduled-posts/{post_id}", {"notes": "\u0000"}, ["notes"]),
        ("GET", "/scheduled-posts?channelId=%00", None, ["query", "channelId"]),
        ("GET", "/scheduled-posts/post_%00", None, ["path"]),
    ]:
        r = await api.request(method, url, json=body)
        assert r.status_code == 422, (method, url, r.status_code, r.text)
        assert r.json()["error"][0]["path"] == path
        assert r.json()["error"][0]["type"] == "string_nul_character"
    listed = (await api.get("/scheduled-posts")).json()["data"]
    assert [p["id"] for p in listed] == [post_id]
    assert listed[0]["notes"] is None


async def test_instants_that_leave_the_calendar_in_utc_are_422(api: httpx.AsyncClient) -> None:
    # Both are valid ISO-8601 with an offset, but neither exists in UTC (year 0 / year 10000).
    for instant in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        assert_validation(await api.post("/scheduled-posts", json={"scheduledFor": instant}))
        assert_validation(await api.get("/scheduled-posts", params={"from": instant}))


async def test_out_of_range_x_date_is_401(world: World) -> None:
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tidings.test") as client:
        headers = signature_headers(
            world.key_id,
            world.key_secret,
            "GET",
            "/scheduled-posts",
            when="0001-01-01T00:00:00+05:00",
        )
        assert_message(await client.get("/scheduled-posts", headers=headers), 401)


async def test_body_that_is_not_utf8_is_422_json_invalid(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/scheduled-posts", content=b'{"notes": "\xff"}', headers={"content-type": JSON}
    )
    assert only_error(r)["type"] == "json_invalid"


# --- fuzz: whatever the body, a documented answer ---------------------------------------------

# U+0000 is left out: PostgreSQL refuses it (see test_nul_characters_are_not_a_server_error).
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)])
INSTANTS = st.builds(
    lambda when, offset: when.replace(tzinfo=UTC).astimezone(timezone(offset)).isoformat(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),  # noqa: DTZ001
    OFFSETS,
)
URLS = st.sampled_from(
    [
        "https://cdn.example.com/a.jpg",
        "https://cdn.example.com/b.mp4",
        "http://x",
        "ftp://cdn.example.com/a.jpg",
        "not a url",
        "",
    ]
)
MEDIA = URLS | st.lists(URLS | st.fixed_dictionaries({"url": URLS}, optional={"altText": TEXT}))


def _valid_values(channel_ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Values each field accepts (a WAITING post may still fail publish validation: 400)."""
    entry = st.fixed_dictionaries(
        {},
        optional={
            "caption": TEXT | st.none(),
            "firstComment": TEXT | st.none(),
            "options": st.dictionaries(TEXT, SCALARS, max_size=3),
        },
    )
    return {
        "status": st.sampled_from(["DRAFT", "WAITING_FOR_APPROVAL"]),
        "type": st.sampled_from([*PostType]),
        "media": MEDIA,
        "mediaType": st.sampled_from([*MediaType]) | st.none(),
        "scheduledFor": INSTANTS | st.just(future()) | st.none(),
        "timezone": st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]) | st.none(),
        "channels": st.dictionaries(st.sampled_from(channel_ids), entry, max_size=3),
        "notes": TEXT | st.none(),
    }


def _wild_values(channel_ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible and implausible values for each field."""
    valid = _valid_values(channel_ids)
    entry = st.fixed_dictionaries(
        {},
        optional={
            "caption": TEXT | JSON_VALUES,
            "firstComment": TEXT | JSON_VALUES,
            "options": st.dictionaries(TEXT, JSON_VALUES, max_size=3) | JSON_VALUES,
            "bogus": JSON_VALUES,
        },
    )
    channel_keys = st.sampled_from(channel_ids) | TEXT
    wild = {
        "status": st.sampled_from([*PostStatus, "draft"]) | JSON_VALUES,
        "type": JSON_VALUES,
        "media": JSON_VALUES,
        "mediaType": JSON_VALUES,
        "scheduledFor": TEXT | JSON_VALUES,
        "timezone": st.sampled_from(["Nope/Zone", "", "Europe/", "posixrules", "zone.tab"]) | TEXT,
        "channels": st.dictionaries(channel_keys, entry | st.none() | JSON_VALUES, max_size=3)
        | JSON_VALUES,
        "notes": JSON_VALUES,
    }
    return {name: valid[name] | wild[name] for name in valid}


def bodies(channel_ids: list[str]) -> st.SearchStrategy[Any]:
    """Request bodies: objects with the API's fields (valid or not), extra fields, any JSON."""
    valid = st.fixed_dictionaries({}, optional=_valid_values(channel_ids))
    wild = st.fixed_dictionaries({}, optional=_wild_values(channel_ids))
    with_extra = st.builds(lambda b, extra: {**extra, **b}, wild, st.dictionaries(TEXT, SCALARS))
    return valid | wild | with_extra | JSON_VALUES


def assert_documented(r: httpx.Response, request: str) -> None:
    """No 5xx, and the body is the shape the contract gives for the status."""
    event(f"{request.split()[0]} answered {r.status_code}")
    assert r.status_code < 500, f"{request} -> {r.status_code} {r.text}"
    if r.status_code in MESSAGE_STATUSES:
        body = r.json()
        assert isinstance(body, dict), request
        assert isinstance(body.get("message"), str), f"{request} -> {r.text}"
    elif r.status_code == 422:
        assert_validation(r)
    else:
        assert r.status_code in (200, 201), f"{request} -> {r.status_code} {r.text}"
        document = r.json()
        assert document["id"].startswith("post_")
        assert document["status"] in set(PostStatus)
        assert isinstance(document["mediumsData"], dict)
        assert isinstance(document["revision"], int)


FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
async def test_fuzzed_create_bodies_get_documented_answers(
    api: httpx.AsyncClient, world: World, data: st.DataObject
) -> None:
    body = data.draw(bodies([world.channel_id]), label="body")
    raw = data.draw(st.booleans(), label="send as raw bytes")
    if raw:
        content = data.draw(st.binary(max_size=40) | st.just(json.dumps(body).encode()[:-1]))
        r = await api.post("/scheduled-posts", content=content, headers={"content-type": JSON})
        assert_documented(r, f"POST raw {content!r}")
        return
    r = await api.post("/scheduled-posts", json=body)
    assert_documented(r, f"POST {body!r}")
    if r.status_code == 201:
        created = r.json()
        assert created["status"] in {"DRAFT", "WAITING_FOR_APPROVAL"}
        again = await api.get(f"/scheduled-posts/{created['id']}")
        assert again.status_code == 200
        assert again.json() == created


@FUZZ
@given(data=st.data())
async def test_fuzzed_patch_bodies_get_documented_answers(
    api: httpx.AsyncClient, world: World, data: st.DataObject
) -> None:
    start = data.draw(st.sampled_from(["DRAFT", "WAITING_FOR_APPROVAL"]), label="start")
    r = await api.post("/scheduled-posts", json=world.post_body(status=start))
    assert r.status_code == 201, r.text
    before = r.json()
    # A channel of the workspace that the post is not on yet, so PATCH can add it.
    second = await world.add_channel("Second")
    body = data.draw(bodies([world.channel_id, second]), label="body")
    if_match = data.draw(st.sampled_from([None, "1", "2", 'W/"1"', "abc"]), label="If-Match")
    headers = {"If-Match": if_match} if if_match else {}
    r = await api.patch(f"/scheduled-posts/{before['id']}", json=body, headers=headers)
    assert_documented(r, f"PATCH {body!r} If-Match={if_match!r}")
    after = (await api.get(f"/scheduled-posts/{before['id']}")).json()
    if r.status_code == 200:
        assert after == r.json()
        assert after["revision"] >= before["revision"]
    else:
        assert after == before, "a refused PATCH changed the post"


@pytest.mark.parametrize("instant", ["1900000000", "1900000000.5", 1900000000, "tomorrow"])
async def test_instants_must_be_iso_8601_text(api: httpx.AsyncClient, instant: object) -> None:
    r = await api.post("/scheduled-posts", json={"scheduledFor": instant})
    assert only_error(r)["path"] == ["scheduledFor"]
    r = await api.get("/scheduled-posts", params={"from": str(instant)})
    assert only_error(r)["path"] == ["query", "from"]
