"""Browser sessions: sign in and out, the cookie, CSRF on writes, expiry, storage.

DESIGN.md §6: the web app uses sessions with CSRF protection. POST /auth/login sets an
HttpOnly, SameSite=Lax `tidings_session` cookie and returns the CSRF token that every write
made with the cookie must echo in `X-CSRF-Token`; the database keeps only the cookie's
SHA-256.
"""

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.conftest import TEST_SECRET_KEY
from tests.world import PASSWORD, World
from tidings.app import create_app
from tidings.auth.deps import SESSION_COOKIE
from tidings.auth.models import UserSession
from tidings.config import Settings
from tidings.scheduled_posts.models import PostEvent, ScheduledPost
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

LIST = "/scheduled-posts"
BAD_CREDENTIALS = "invalid email or password"


def _message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"message"}, body
    message: str = body["message"]
    return message


async def _login(
    client: httpx.AsyncClient, world: World, role: str = "editor"
) -> tuple[httpx.Response, str]:
    """Sign `client` in as the member with `role`; the response and the raw cookie value."""
    r = await client.post("/auth/login", json={"email": world.emails[role], "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = r.cookies.get(SESSION_COOKIE)
    assert cookie
    return r, cookie


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def _count(world: World, model: type) -> int:
    async with world.db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


# --- Signing in -----------------------------------------------------------------------------


async def test_login_returns_csrf_token_and_sets_a_protected_cookie(world: World) -> None:
    r, cookie = await _login(world.anonymous(), world, "editor")
    body = r.json()
    assert body["userId"] == world.user_ids["editor"]
    assert body["workspaceId"] == world.workspace_id
    assert body["role"] == "editor"
    assert len(body["csrfToken"]) >= 32
    assert body["csrfToken"] != cookie
    assert set(body) == {"csrfToken", "userId", "workspaceId", "role"}

    set_cookie = r.headers.get_list("set-cookie")
    assert len(set_cookie) == 1
    attributes = [part.strip().lower() for part in set_cookie[0].split(";")]
    assert attributes[0] == f"{SESSION_COOKIE}={cookie}".lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert f"max-age={12 * 60 * 60}" in attributes
    # Embedded mode serves plain HTTP on one machine: the cookie cannot require HTTPS there.
    assert "secure" not in attributes


async def test_login_email_is_case_and_space_insensitive(world: World) -> None:
    r = await world.anonymous().post(
        "/auth/login",
        json={"email": f"  {world.emails['viewer'].upper()} ", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == world.user_ids["viewer"]


async def test_wrong_password_and_unknown_email_get_the_same_refusal(world: World) -> None:
    client = world.anonymous()
    wrong_password = await client.post(
        "/auth/login", json={"email": world.emails["owner"], "password": PASSWORD + "!"}
    )
    unknown_email = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    for r in (wrong_password, unknown_email):
        assert r.status_code == 401, r.text
        assert r.json() == {"message": BAD_CREDENTIALS}
        assert SESSION_COOKIE not in r.cookies
        assert "set-cookie" not in r.headers
    assert await _count(world, UserSession) == 0


async def test_login_with_an_extra_field_is_a_shape_error(world: World) -> None:
    r = await world.anonymous().post(
        "/auth/login",
        json={"email": world.emails["owner"], "password": PASSWORD, "remember": True},
    )
    assert r.status_code == 422, r.text
    errors = r.json()["error"]
    assert set(r.json()) == {"error"}
    assert len(errors) == 1
    assert set(errors[0]) == {"message", "path", "type", "context"}
    assert errors[0]["path"] == ["remember"]
    assert errors[0]["type"] == "extra_forbidden"
    assert "Extra inputs are not permitted" in errors[0]["message"]
    assert await _count(world, UserSession) == 0


async def test_login_without_a_password_is_a_shape_error(world: World) -> None:
    r = await world.anonymous().post("/auth/login", json={"email": world.emails["owner"]})
    assert r.status_code == 422, r.text
    [error] = r.json()["error"]
    assert error["path"] == ["password"]
    assert error["type"] == "missing"


async def test_login_into_a_workspace_the_person_is_not_in_is_refused(
    app: FastAPI, world: World
) -> None:
    async with World.build(app, name="Other") as other:
        r = await world.anonymous().post(
            "/auth/login",
            json={
                "email": world.emails["owner"],
                "password": PASSWORD,
                "workspaceId": other.workspace_id,
            },
        )
    assert r.status_code == 401, r.text
    assert "not a member of that workspace" in _message(r)


async def test_a_session_is_scoped_to_the_workspace_it_signed_into(
    app: FastAPI, world: World
) -> None:
    mine = await world.api().post(LIST, json=world.post_body())
    assert mine.status_code == 201, mine.text
    async with World.build(app, name="Other") as other:
        async with world.db.transaction() as session:
            await workspace_service.add_member(
                session,
                workspace_id=other.workspace_id,
                email=world.emails["editor"],
                password=PASSWORD,
                role=Role.VIEWER,
                now=datetime.now(UTC),
            )
        client = world.anonymous()
        r = await client.post(
            "/auth/login",
            json={
                "email": world.emails["editor"],
                "password": PASSWORD,
                "workspaceId": other.workspace_id,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["workspaceId"] == other.workspace_id
        assert r.json()["role"] == "viewer"

        me = await client.get("/auth/me")
        assert me.json()["workspaceId"] == other.workspace_id
        assert me.json()["actor"] == "viewer"
        listing = await client.get(LIST)
        assert listing.json() == {"data": [], "nextCursor": None}
        read = await client.get(f"{LIST}/{mine.json()['id']}")
        assert read.status_code == 404, read.text


# --- Using the session ----------------------------------------------------------------------


async def test_session_cookie_reads_without_csrf_token(world: World) -> None:
    client = world.anonymous()
    await _login(client, world, "viewer")
    r = await client.get(LIST)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [], "nextCursor": None}


async def test_auth_me_reports_the_signed_in_person(world: World) -> None:
    client = world.anonymous()
    await _login(client, world, "reviewer")
    r = await client.get("/auth/me")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "workspaceId": world.workspace_id,
        "actor": "reviewer",
        "method": "session",
        "userId": world.user_ids["reviewer"],
        "apiKeyId": None,
    }


async def test_session_write_without_csrf_token_is_forbidden_and_writes_nothing(
    world: World,
) -> None:
    client = world.anonymous()
    await _login(client, world, "editor")
    r = await client.post(LIST, json=world.post_body())
    assert r.status_code == 403, r.text
    assert "X-CSRF-Token" in _message(r)
    assert await _count(world, ScheduledPost) == 0
    assert await _count(world, PostEvent) == 0


async def test_session_write_with_a_wrong_csrf_token_is_forbidden(world: World) -> None:
    client = world.anonymous()
    await _login(client, world, "editor")
    # Another live session's token is no better than a made-up one.
    other, _ = await _login(world.anonymous(), world, "editor")
    for token in ["not-the-token", other.json()["csrfToken"], ""]:
        r = await client.post(LIST, json=world.post_body(), headers={"X-CSRF-Token": token})
        assert r.status_code == 403, (token, r.text)
        assert "X-CSRF-Token" in _message(r)
    assert await _count(world, ScheduledPost) == 0


async def test_session_write_with_non_ascii_csrf_token_is_forbidden(world: World) -> None:
    client = world.anonymous()
    await _login(client, world, "editor")
    r = await client.post(LIST, json=world.post_body(), headers={"X-CSRF-Token": b"\xe9" * 43})
    assert r.status_code == 403, r.text
    assert await _count(world, ScheduledPost) == 0


async def test_session_write_with_the_csrf_token_succeeds(world: World) -> None:
    client = world.anonymous()
    login, _ = await _login(client, world, "editor")
    r = await client.post(
        LIST, json=world.post_body(), headers={"X-CSRF-Token": login.json()["csrfToken"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["createdBy"] == world.user_ids["editor"]
    async with world.db.transaction() as session:
        row = await session.get(ScheduledPost, r.json()["id"])
        assert row is not None
        assert row.created_by == world.user_ids["editor"]
        assert row.workspace_id == world.workspace_id


async def test_csrf_is_required_on_every_write_method(world: World) -> None:
    created = await world.api().post(LIST, json=world.post_body())
    post_id = created.json()["id"]
    client = world.anonymous()
    await _login(client, world, "owner")
    for method, path, body in [
        ("PATCH", f"{LIST}/{post_id}", {"notes": "x"}),
        ("DELETE", f"{LIST}/{post_id}", None),
        ("POST", f"{LIST}/{post_id}/submit-for-approval", None),
        ("POST", "/channels", {"platform": "sandbox", "name": "New"}),
        ("PATCH", f"/channels/{world.channel_id}", {"name": "Renamed"}),
        ("POST", "/auth/logout", None),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "X-CSRF-Token" in _message(r)
    still = await world.api().get(f"{LIST}/{post_id}")
    assert still.json()["status"] == "DRAFT"
    assert still.json()["notes"] is None
    channels = await world.api().get("/channels")
    assert [c["name"] for c in channels.json()["data"]] == ["Demo"]
    # The refused logout did not end the session.
    assert (await client.get("/auth/me")).status_code == 200


async def test_credentials_in_headers_take_no_csrf(world: World) -> None:
    """CSRF protects cookies, which browsers send by themselves; keys are sent on purpose."""
    r = await world.api().post(LIST, json=world.post_body())
    assert r.status_code == 201, r.text


# --- Signing out and expiry -----------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(world: World) -> None:
    client = world.anonymous()
    login, cookie = await _login(client, world, "editor")
    r = await client.post("/auth/logout", headers={"X-CSRF-Token": login.json()["csrfToken"]})
    assert r.status_code == 204, r.text
    assert r.content == b""
    cleared = r.headers["set-cookie"].lower()
    assert cleared.startswith(f"{SESSION_COOKIE}=")
    assert "max-age=0" in cleared
    assert await _count(world, UserSession) == 0

    # The browser drops the cookie; a stolen copy of it is worthless too.
    assert (await client.get(LIST)).status_code == 401
    replay = world.anonymous()
    replay.cookies.set(SESSION_COOKIE, cookie)
    r = await replay.get(LIST)
    assert r.status_code == 401, r.text
    assert "signed out" in _message(r)


async def test_logout_ends_only_that_session(world: World) -> None:
    first = world.anonymous()
    login, _ = await _login(first, world, "editor")
    second = world.anonymous()
    await _login(second, world, "editor")
    r = await first.post("/auth/logout", headers={"X-CSRF-Token": login.json()["csrfToken"]})
    assert r.status_code == 204, r.text
    assert (await second.get("/auth/me")).status_code == 200
    assert await _count(world, UserSession) == 1


async def test_logout_with_an_api_key_is_refused(world: World) -> None:
    r = await world.api().post("/auth/logout")
    assert r.status_code == 401, r.text
    assert "signed-in session" in _message(r)


async def test_expired_session_is_refused(world: World) -> None:
    client = world.anonymous()
    _, cookie = await _login(client, world, "editor")
    async with world.db.transaction() as session:
        await session.execute(
            update(UserSession)
            .where(UserSession.token_hash == _sha256(cookie))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await client.get(LIST)
    assert r.status_code == 401, r.text
    assert "expired" in _message(r)


async def test_expired_sessions_are_swept_at_the_next_login(world: World) -> None:
    _, stale = await _login(world.anonymous(), world, "editor")
    async with world.db.transaction() as session:
        await session.execute(
            update(UserSession).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    _, fresh = await _login(world.anonymous(), world, "viewer")
    async with world.db.transaction() as session:
        hashes = (await session.execute(select(UserSession.token_hash))).scalars().all()
    assert hashes == [_sha256(fresh)]
    assert _sha256(stale) not in hashes


async def test_unknown_session_cookie_is_refused(world: World) -> None:
    client = world.anonymous()
    client.cookies.set(SESSION_COOKIE, "made-up-session-token")
    r = await client.get(LIST)
    assert r.status_code == 401, r.text
    assert "sign in again" in _message(r)


# --- Storage --------------------------------------------------------------------------------


async def test_session_row_stores_only_the_hash_of_the_cookie(world: World) -> None:
    login, cookie = await _login(world.anonymous(), world, "editor")
    async with world.db.transaction() as session:
        rows = (await session.execute(select(UserSession.__table__))).all()
    assert len(rows) == 1
    row = rows[0]._mapping
    assert row["token_hash"] == _sha256(cookie)
    assert row["user_id"] == world.user_ids["editor"]
    assert row["workspace_id"] == world.workspace_id
    assert row["csrf_token"] == login.json()["csrfToken"]
    assert [c for c, v in row.items() if cookie in str(v)] == []
    expected_expiry = datetime.now(UTC) + timedelta(hours=12)
    assert abs(row["expires_at"] - expected_expiry) < timedelta(minutes=1)


# --- Production mode ------------------------------------------------------------------------


async def test_production_mode_cookie_is_secure(settings: Settings) -> None:
    production = Settings(
        mode="production",
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        secret_key=TEST_SECRET_KEY,
    )
    app = create_app(production)
    async with app.router.lifespan_context(app), World.build(app) as world:
        r = await world.anonymous().post(
            "/auth/login", json={"email": world.emails["owner"], "password": PASSWORD}
        )
    assert r.status_code == 200, r.text
    attributes = [p.strip().lower() for p in r.headers["set-cookie"].split(";")]
    assert "secure" in attributes
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
