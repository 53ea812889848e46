"""API-key authentication (signed requests and Bearer tokens), secrets at rest, isolation.

The contract (DESIGN.md §1, §6): `x-api-key` + `x-date` + `x-signature` (lowercase hex
HMAC-SHA256, keyed by the key's secret, of the canonical request; see
test_signed_requests.py for what it covers and for date-signing keys), accepted only while
server_time - x_date is within [-5 s, +60 s]; the same key as `Authorization: Bearer
<token>`; every route needs one of them (or a session); workspaces never see each other.
"""

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from tests.world import PASSWORD, World, signature_headers, signed_json
from tidings.auth.models import ApiKey, User
from tidings.auth.service import revoke_api_key
from tidings.crypto import SecretBox
from tidings.db.models import metadata
from tidings.scheduled_posts.models import ScheduledPost

LIST = "/scheduled-posts"
EMPTY_PAGE = {"data": [], "nextCursor": None}


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"message"}, body
    message: str = body["message"]
    return message


def _assert_401(response: httpx.Response, *fragments: str) -> None:
    assert response.status_code == 401, response.text
    message = _message(response)
    for fragment in fragments:
        assert fragment in message, message


# --- Signed requests ------------------------------------------------------------------------


async def test_signed_request_with_a_fresh_date_is_accepted(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST)
    )
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_PAGE


async def test_signed_request_is_authenticated_as_the_key(world: World) -> None:
    r = await world.anonymous().get(
        "/auth/me", headers=signature_headers(world.key_id, world.key_secret, "GET", "/auth/me")
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "workspaceId": world.workspace_id,
        "actor": "api_key",
        "method": "signature",
        "userId": None,
        "apiKeyId": world.key_id,
    }


async def test_signed_write_records_the_key_as_creator(world: World) -> None:
    r = await world.anonymous().post(
        LIST, **signed_json(world.key_id, world.key_secret, "POST", LIST, world.post_body())
    )
    assert r.status_code == 201, r.text
    assert r.json()["createdBy"] == world.key_id
    assert r.json()["orgId"] == world.workspace_id


async def test_x_date_59_seconds_old_is_accepted(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(59))
    )
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_PAGE


async def test_x_date_61_seconds_old_is_stale(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(61))
    )
    _assert_401(r, "stale", "60")


async def test_x_date_hours_old_is_stale(world: World) -> None:
    r = await world.anonymous().get(
        LIST,
        headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(3 * 3600)),
    )
    _assert_401(r, "stale")


async def test_x_date_4_seconds_in_the_future_is_accepted(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(-4))
    )
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_PAGE


async def test_x_date_6_seconds_in_the_future_is_refused(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(-6))
    )
    _assert_401(r, "future", "5")


async def test_x_date_with_a_non_utc_offset_is_accepted(world: World) -> None:
    x_date = datetime.now(UTC).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert x_date.endswith("+02:00")
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_PAGE


async def test_x_date_with_a_negative_offset_is_accepted(world: World) -> None:
    x_date = datetime.now(UTC).astimezone(timezone(timedelta(hours=-7, minutes=-30))).isoformat()
    assert x_date.endswith("-07:30")
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    assert r.status_code == 200, r.text


async def test_x_date_with_z_suffix_is_accepted(world: World) -> None:
    x_date = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    assert x_date.endswith("Z")
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    assert r.status_code == 200, r.text


async def test_x_date_without_offset_is_refused(world: World) -> None:
    x_date = datetime.now(UTC).replace(tzinfo=None).isoformat()
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    _assert_401(r, "x-date", "offset")


@pytest.mark.parametrize(
    "x_date", ["yesterday", "not-a-date", "2026-13-45T99:00:00Z", "1700000000", "   "]
)
async def test_garbage_x_date_is_refused(world: World, x_date: str) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    _assert_401(r, "x-date")


@pytest.mark.parametrize("x_date", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
async def test_out_of_range_x_date_is_refused_not_a_server_error(world: World, x_date: str) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST, when=x_date)
    )
    _assert_401(r, "x-date")


@pytest.mark.parametrize("header", ["x-date", "x-signature"])
async def test_missing_signature_header_is_named(world: World, header: str) -> None:
    headers = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    del headers[header]
    r = await world.anonymous().get(LIST, headers=headers)
    _assert_401(r, f"missing {header}")


@pytest.mark.parametrize("header", ["x-date", "x-signature"])
async def test_empty_signature_header_counts_as_missing(world: World, header: str) -> None:
    headers = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    headers[header] = ""
    r = await world.anonymous().get(LIST, headers=headers)
    _assert_401(r, f"missing {header}")


async def test_signature_made_with_the_wrong_secret_is_refused(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret + "x", "GET", LIST)
    )
    _assert_401(r, "signature")


async def test_signature_of_another_x_date_is_refused(world: World) -> None:
    """The signature binds the exact x-date: an old signature cannot be re-dated."""
    old = signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(30))
    new = signature_headers(world.key_id, world.key_secret, "GET", LIST, when=_ago(1))
    r = await world.anonymous().get(LIST, headers={**new, "x-signature": old["x-signature"]})
    _assert_401(r, "signature")


async def test_signature_over_the_parsed_instant_not_the_exact_string_is_refused(
    world: World,
) -> None:
    """Signing `...Z` but sending the same instant as `+00:00` is a different string."""
    now = datetime.now(UTC)
    signed = signature_headers(world.key_id, world.key_secret, "GET", LIST, when=now.isoformat())
    sent = now.isoformat().replace("+00:00", "Z")
    r = await world.anonymous().get(LIST, headers={**signed, "x-date": sent})
    _assert_401(r, "signature")


async def test_uppercase_hex_signature_is_refused(world: World) -> None:
    headers = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    upper = headers["x-signature"].upper()
    assert upper != headers["x-signature"]
    r = await world.anonymous().get(LIST, headers={**headers, "x-signature": upper})
    _assert_401(r, "signature")


async def test_base64_signature_is_refused(world: World) -> None:
    headers = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    raw = hmac.new(world.key_secret.encode(), headers["x-date"].encode(), hashlib.sha256).digest()
    r = await world.anonymous().get(
        LIST, headers={**headers, "x-signature": base64.b64encode(raw).decode()}
    )
    _assert_401(r, "signature")


async def test_non_ascii_signature_is_refused_not_a_server_error(world: World) -> None:
    headers: dict[str, Any] = signature_headers(world.key_id, world.key_secret, "GET", LIST)
    headers["x-signature"] = b"\xe9" * 64
    r = await world.anonymous().get(LIST, headers=headers)
    _assert_401(r, "signature")


async def test_unknown_key_id_is_refused(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers=signature_headers("key_doesnotexist", world.key_secret, "GET", LIST)
    )
    _assert_401(r, "unknown API key")


async def test_revoked_key_is_refused_signed_and_bearer(world: World) -> None:
    async with world.db.transaction() as session:
        await revoke_api_key(session, world.key_id, datetime.now(UTC))
    signed = await world.anonymous().get(
        LIST, headers=signature_headers(world.key_id, world.key_secret, "GET", LIST)
    )
    _assert_401(signed, "revoked")
    bearer = await world.api().get(LIST)
    _assert_401(bearer, "revoked")


async def test_key_sealed_under_another_server_secret_is_refused(world: World) -> None:
    async with world.db.transaction() as session:
        key = await session.get(ApiKey, world.key_id)
        assert key is not None
        key.secret_encrypted = SecretBox("a-different-server-secret-" + "y" * 32).seal(
            world.key_secret
        )
    r = await world.api().get(LIST)
    _assert_401(r, "re-issue")


# --- Bearer tokens --------------------------------------------------------------------------


async def test_bearer_token_is_accepted(world: World) -> None:
    r = await world.api().get(LIST)
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_PAGE
    me = await world.api().get("/auth/me")
    assert me.status_code == 200, me.text
    assert me.json() == {
        "workspaceId": world.workspace_id,
        "actor": "api_key",
        "method": "bearer",
        "userId": None,
        "apiKeyId": world.key_id,
    }


async def test_bearer_scheme_is_case_insensitive(world: World) -> None:
    r = await world.anonymous().get(LIST, headers={"Authorization": f"bearer {world.key_token}"})
    assert r.status_code == 200, r.text


async def test_bearer_token_with_a_wrong_secret_is_refused(world: World) -> None:
    token = f"{world.key_id}.{world.key_secret}x"
    r = await world.anonymous().get(LIST, headers={"Authorization": f"Bearer {token}"})
    _assert_401(r, "invalid Bearer token")


async def test_bearer_token_with_another_keys_secret_is_refused(app: FastAPI, world: World) -> None:
    async with World.build(app, name="Other") as other:
        token = f"{world.key_id}.{other.key_secret}"
        r = await world.anonymous().get(LIST, headers={"Authorization": f"Bearer {token}"})
    _assert_401(r, "invalid Bearer token")


@pytest.mark.parametrize("token", ["nodothere", "{key}", "{key}.", ".{secret}", "."])
async def test_malformed_bearer_token_is_refused(world: World, token: str) -> None:
    token = token.format(key=world.key_id, secret=world.key_secret)
    r = await world.anonymous().get(LIST, headers={"Authorization": f"Bearer {token}"})
    _assert_401(r, "malformed Bearer token")


async def test_bearer_token_of_unknown_key_is_refused(world: World) -> None:
    r = await world.anonymous().get(
        LIST, headers={"Authorization": f"Bearer key_doesnotexist.{world.key_secret}"}
    )
    _assert_401(r, "unknown API key")


async def test_the_secret_alone_as_bearer_token_is_refused(world: World) -> None:
    r = await world.anonymous().get(LIST, headers={"Authorization": f"Bearer {world.key_secret}"})
    assert r.status_code == 401, r.text
    _message(r)


async def test_bearer_token_of_another_workspace_reads_only_that_workspace(
    app: FastAPI, world: World
) -> None:
    mine = await world.api().post(LIST, json=world.post_body())
    assert mine.status_code == 201, mine.text
    async with World.build(app, name="Other") as other:
        theirs = await other.api().post(LIST, json=other.post_body())
        assert theirs.status_code == 201, theirs.text

        r = await world.anonymous().get(
            LIST, headers={"Authorization": f"Bearer {other.key_token}"}
        )
        assert r.status_code == 200, r.text
        assert [p["id"] for p in r.json()["data"]] == [theirs.json()["id"]]
        assert r.json()["data"][0]["orgId"] == other.workspace_id

        me = await world.anonymous().get(
            "/auth/me", headers={"Authorization": f"Bearer {other.key_token}"}
        )
        assert me.json()["workspaceId"] == other.workspace_id
        assert me.json()["apiKeyId"] == other.key_id

    r = await world.api().get(LIST)
    assert [p["id"] for p in r.json()["data"]] == [mine.json()["id"]]


# --- No credentials -------------------------------------------------------------------------


async def test_request_without_credentials_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get(LIST)
    _assert_401(r, "authentication required", "x-api-key", "Bearer")


async def test_other_authorization_schemes_are_not_credentials(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(LIST, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    _assert_401(r, "authentication required")


PUBLIC_PATHS = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/health",
    "/auth/login",
    # The ends of invitation and reset links: the token is the credential (see
    # tests/workspaces/test_invitations.py and test_passwords.py).
    "/invitations/accept",
    "/auth/password-reset",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _protected_endpoints(app: FastAPI) -> list[tuple[str, str]]:
    endpoints = []
    for route in iter_route_contexts(app.routes):
        assert route.path, f"unexpected route {route!r}: check its authentication"
        if route.path in PUBLIC_PATHS or _is_page(route.path):
            continue
        assert route.methods, f"unexpected route {route!r}: check its authentication"
        path = re.sub(r"\{[^}]+\}", "dummy_00000000", route.path)
        endpoints.extend((method, path) for method in sorted(route.methods or ()))
    return endpoints


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Bearer key_doesnotexist.secret"},
        {"Cookie": "tidings_session=not-a-session"},
        {"x-api-key": "key_doesnotexist"},
    ],
    ids=["none", "unknown-bearer", "unknown-session", "unknown-signed-key"],
)
async def test_every_route_requires_authentication(
    app: FastAPI, client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    endpoints = _protected_endpoints(app)
    paths = {path for _, path in endpoints}
    # The list must really cover the API, not silently shrink.
    assert {"/scheduled-posts", "/channels", "/auth/me", "/auth/logout"} <= paths
    assert ("POST", "/scheduled-posts/dummy_00000000/approve") in endpoints
    refused = []
    for method, path in endpoints:
        body = {"json": {}} if method in WRITE_METHODS else {}
        r = await client.request(method, path, headers=credentials, **body)
        if r.status_code != 401 or set(r.json()) != {"message"} or not r.json()["message"]:
            refused.append((method, path, r.status_code, r.text))
    assert refused == []


def _is_page(path: str) -> bool:
    """The web app's pages (and their static files): a missing session sends the browser to
    sign in rather than answering 401 (see `test_every_page_needs_a_session`)."""
    return path == "/" or path.startswith(("/app", "/static"))


PUBLIC_PAGES = {
    "/",
    "/app/setup",
    "/app/signin",
    "/static",
    "/app/invitations/{token}",
    "/app/password-reset/{token}",
}


@pytest.mark.parametrize(
    "credentials",
    [{}, {"Cookie": "tidings_session=not-a-session"}, {"Authorization": "Bearer key_x.secret"}],
    ids=["none", "unknown-session", "api-key"],
)
async def test_every_page_needs_a_session(
    app: FastAPI, client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    pages = []
    for route in iter_route_contexts(app.routes):
        if not _is_page(route.path) or route.path in PUBLIC_PAGES:
            continue
        path = re.sub(r"\{[^}]+\}", "dummy_00000000", route.path)
        pages.extend((method, path) for method in sorted(getattr(route, "methods", None) or ()))
    assert ("GET", "/app") in pages
    assert ("POST", "/app/signout") in pages
    sent_elsewhere = []
    for method, path in pages:
        r = await client.request(method, path, headers=credentials)
        location = r.headers.get("location", "")
        if r.status_code != 303 or not location.startswith("/app/signin?next="):
            sent_elsewhere.append((method, path, r.status_code, location))
    assert sent_elsewhere == []


async def test_public_endpoints_need_no_credentials(client: httpx.AsyncClient) -> None:
    # No worker runs in these tests, so /health answers, but with 503.
    health = await client.get("/health")
    assert health.status_code == 503
    assert health.json()["database"] == "ok"
    assert (await client.get("/openapi.json")).status_code == 200


# --- Secrets at rest ------------------------------------------------------------------------


async def _every_stored_value(world: World) -> list[Any]:
    values: list[Any] = []
    async with world.db.transaction() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                values.extend(row)
    return values


def _contains(value: Any, needle: str) -> bool:
    if isinstance(value, bytes):
        return needle.encode() in value
    return needle in str(value)


async def test_api_key_secret_is_stored_encrypted(world: World) -> None:
    async with world.db.transaction() as session:
        key = (await session.execute(select(ApiKey).where(ApiKey.id == world.key_id))).scalar_one()
        sealed = bytes(key.secret_encrypted)
    assert world.key_secret.encode() not in sealed
    assert world.key_secret not in sealed.decode("latin-1")
    # Encrypted, not hashed: the server can still recover it to verify signatures.
    assert world.state.box.open(sealed) == world.key_secret


async def test_no_table_contains_the_plain_key_secret(world: World) -> None:
    r = await world.api().post(LIST, json=world.post_body())
    assert r.status_code == 201, r.text
    values = await _every_stored_value(world)
    assert values, "the database should not be empty"
    assert [v for v in values if _contains(v, world.key_secret)] == []


async def test_passwords_are_stored_as_argon2_hashes(world: World) -> None:
    async with world.db.transaction() as session:
        users = (await session.execute(select(User))).scalars().all()
    assert len(users) == len(world.user_ids)
    for user in users:
        assert user.password_hash.startswith("$argon2"), user.password_hash
        assert PASSWORD not in user.password_hash
    values = await _every_stored_value(world)
    assert [v for v in values if _contains(v, PASSWORD)] == []


# --- Workspace isolation --------------------------------------------------------------------


async def test_another_workspaces_post_is_not_found_everywhere(app: FastAPI, world: World) -> None:
    created = await world.api().post(LIST, json=world.post_body())
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]

    async with World.build(app, name="Other") as other:
        b = other.api()
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"{LIST}/{post_id}", None),
            ("PATCH", f"{LIST}/{post_id}", {"notes": "mine now"}),
            ("PATCH", f"{LIST}/{post_id}", {"status": "DRAFT"}),
            ("POST", f"{LIST}/{post_id}/submit-for-approval", None),
            ("POST", f"{LIST}/{post_id}/reject", {"notes": "not on brand"}),
            ("POST", f"{LIST}/{post_id}/approve", None),
            ("POST", f"{LIST}/{post_id}/publish", None),
            ("POST", f"{LIST}/{post_id}/revert", None),
            ("POST", f"{LIST}/{post_id}/cancel", None),
            ("GET", f"{LIST}/{post_id}/events", None),
            ("DELETE", f"{LIST}/{post_id}", None),
        ]
        for method, path, body in calls:
            r = await b.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert _message(r) == f"scheduled post {post_id} not found", (method, path)

        listing = await b.get(LIST)
        assert listing.status_code == 200, listing.text
        assert listing.json() == EMPTY_PAGE
        by_channel = await b.get(LIST, params={"channelId": world.channel_id})
        assert by_channel.json() == EMPTY_PAGE

    # Untouched in workspace A.
    mine = await world.api().get(f"{LIST}/{post_id}")
    assert mine.status_code == 200, mine.text
    assert mine.json()["status"] == "DRAFT"
    assert mine.json()["revision"] == created.json()["revision"]
    assert mine.json()["notes"] is None
    events = await world.api().get(f"{LIST}/{post_id}/events")
    assert [e["action"] for e in events.json()["data"]] == ["create"]
    async with world.db.transaction() as session:
        row = await session.get(ScheduledPost, post_id)
        assert row is not None
        assert row.deleted_at is None
        assert row.workspace_id == world.workspace_id


async def test_a_scheduled_post_of_another_workspace_cannot_be_reverted_or_canceled(
    app: FastAPI, world: World
) -> None:
    created = await world.api().post(LIST, json=world.post_body(status="WAITING_FOR_APPROVAL"))
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    reviewer = await world.person("reviewer")
    approved = await reviewer.post(f"{LIST}/{post_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "SCHEDULED"

    async with World.build(app, name="Other") as other:
        b = other.api()
        b_reviewer = await other.person("reviewer")
        for client, path in [
            (b, "revert"),
            (b, "cancel"),
            (b_reviewer, "revert"),
            (b_reviewer, "cancel"),
            (b_reviewer, "publish"),
        ]:
            r = await client.post(f"{LIST}/{post_id}/{path}")
            assert r.status_code == 404, (path, r.text)
            assert _message(r) == f"scheduled post {post_id} not found"

    still = await world.api().get(f"{LIST}/{post_id}")
    assert still.json()["status"] == "SCHEDULED"
    assert still.json()["taskId"] == approved.json()["taskId"]


async def test_a_post_cannot_use_another_workspaces_channel(app: FastAPI, world: World) -> None:
    async with World.build(app, name="Other") as other:
        b = other.api()
        body = other.post_body(channels={world.channel_id: {"caption": "borrowed"}})
        r = await b.post(LIST, json=body)
        assert r.status_code == 400, r.text
        assert world.channel_id in _message(r)
        assert "does not exist in this workspace" in _message(r)

        own = await b.post(LIST, json=other.post_body())
        assert own.status_code == 201, own.text
        patched = await b.patch(
            f"{LIST}/{own.json()['id']}", json={"channels": {world.channel_id: {"caption": "x"}}}
        )
        assert patched.status_code == 400, patched.text
        assert world.channel_id in _message(patched)

        async with other.db.transaction() as session:
            posts = (await session.execute(select(ScheduledPost))).scalars().all()
        assert [p.id for p in posts] == [own.json()["id"]]
        unchanged = await b.get(f"{LIST}/{own.json()['id']}")
        assert list(unchanged.json()["mediumsData"]) == [other.channel_id]


async def test_channels_are_listed_and_read_only_in_their_workspace(
    app: FastAPI, world: World
) -> None:
    async with World.build(app, name="Other") as other:
        mine = await world.api().get("/channels")
        theirs = await other.api().get("/channels")
        assert mine.status_code == 200, mine.text
        assert [c["id"] for c in mine.json()["data"]] == [world.channel_id]
        assert [c["id"] for c in theirs.json()["data"]] == [other.channel_id]

        r = await other.api().get(f"/channels/{world.channel_id}")
        assert r.status_code == 404, r.text
        assert _message(r) == f"channel {world.channel_id} not found"
        r = await other.api().patch(f"/channels/{world.channel_id}", json={"name": "Hijacked"})
        assert r.status_code == 404, r.text

    still = await world.api().get(f"/channels/{world.channel_id}")
    assert still.json()["name"] == "Demo"
