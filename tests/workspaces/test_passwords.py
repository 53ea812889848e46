"""Passwords after sign-up: changing your own (`POST /auth/password`), and a reset link an
owner or admin makes for a member (`POST /members/{id}/password-reset`, used with
`POST /auth/password-reset`); a new password ends the person's other sign-ins. On both
databases."""

import hashlib
import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update

from tests.workspaces.conftest import Inbox, body_of
from tests.world import PASSWORD, World
from tidings.auth.models import UserSession
from tidings.workspaces.models import PasswordReset

NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"^http://127\.0\.0\.1:8000/app/password-reset/([A-Za-z0-9_-]{43})$")


async def sign_in(world: World, role: str, password: str) -> httpx.Response:
    return await world.anonymous().post(
        "/auth/login", json={"email": world.emails[role], "password": password}
    )


async def sessions_of(world: World, user_id: str) -> int:
    async with world.db.reader() as session:
        found = await session.scalar(
            select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id)
        )
        return int(found or 0)


async def test_changing_your_password_ends_your_other_sign_ins(world: World) -> None:
    me = await world.person("editor")
    elsewhere = await world.person("editor")
    r = await me.post(
        "/auth/password", json={"currentPassword": "not it at all", "newPassword": NEW_PASSWORD}
    )
    assert r.status_code == 403
    assert r.json() == {"message": "the current password is not right"}
    r = await me.post("/auth/password", json={"currentPassword": PASSWORD, "newPassword": "short"})
    assert r.status_code == 400
    assert r.json() == {"message": "password must be at least 8 characters"}
    r = await me.post("/auth/password", json={"currentPassword": PASSWORD})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["newPassword"]
    assert (await sign_in(world, "editor", PASSWORD)).status_code == 200
    assert await sessions_of(world, world.user_ids["editor"]) == 3

    r = await me.post(
        "/auth/password", json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert r.status_code == 204, r.text
    assert (await me.get("/auth/me")).status_code == 200
    assert (await elsewhere.get("/auth/me")).status_code == 401
    assert await sessions_of(world, world.user_ids["editor"]) == 1
    assert (await sign_in(world, "editor", PASSWORD)).status_code == 401
    assert (await sign_in(world, "editor", NEW_PASSWORD)).status_code == 200
    # A key stands for no one; a session's write needs its CSRF token.
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    assert (await world.api().post("/auth/password", json=body)).status_code == 401
    del me.headers["X-CSRF-Token"]
    assert (await me.post("/auth/password", json=body)).status_code == 403


async def test_an_admin_reset_link_sets_a_password_once(world: World) -> None:
    admin = await world.person("admin")
    editor = await world.person("editor")
    editor_id = world.user_ids["editor"]
    before = datetime.now(UTC)
    r = await admin.post(f"/members/{editor_id}/password-reset")
    assert r.status_code == 201, r.text
    issued = r.json()
    found = LINK.match(issued["link"])
    assert found, issued
    token = found.group(1)
    assert issued == {
        "userId": editor_id,
        "email": world.emails["editor"],
        "expiresAt": issued["expiresAt"],
        "link": issued["link"],
        "mailed": False,
    }
    expires = datetime.fromisoformat(issued["expiresAt"])
    assert before + timedelta(hours=24) <= expires <= datetime.now(UTC) + timedelta(hours=24)
    async with world.db.reader() as session:
        [stored] = (await session.execute(select(PasswordReset))).scalars().all()
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # Nothing changes until the person uses it.
    assert (await editor.get("/auth/me")).status_code == 200

    anonymous = world.anonymous()
    r = await anonymous.post("/auth/password-reset", json={"token": token, "newPassword": "short"})
    assert r.status_code == 400
    r = await anonymous.post(
        "/auth/password-reset", json={"token": "y" * 43, "newPassword": NEW_PASSWORD}
    )
    assert r.status_code == 404
    assert r.json() == {"message": "this password reset link is not valid; ask for a new one"}
    assert (await sign_in(world, "editor", PASSWORD)).status_code == 200

    r = await anonymous.post(
        "/auth/password-reset", json={"token": token, "newPassword": NEW_PASSWORD}
    )
    assert r.status_code == 204, r.text
    assert (await editor.get("/auth/me")).status_code == 401
    assert await sessions_of(world, editor_id) == 0
    assert (await sign_in(world, "editor", NEW_PASSWORD)).status_code == 200
    assert (await sign_in(world, "editor", PASSWORD)).status_code == 401
    r = await anonymous.post(
        "/auth/password-reset", json={"token": token, "newPassword": "yet another one"}
    )
    assert r.status_code == 409
    assert r.json() == {"message": "this password reset link was used already"}

    # An expired link, and a newer link that replaces an unused one.
    first = (await admin.post(f"/members/{editor_id}/password-reset")).json()["link"]
    second = (await admin.post(f"/members/{editor_id}/password-reset")).json()["link"]
    r = await anonymous.post(
        "/auth/password-reset",
        json={"token": first.rsplit("/", 1)[1], "newPassword": "yet another one"},
    )
    assert r.status_code == 404
    async with world.db.transaction() as session:
        await session.execute(
            update(PasswordReset).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await anonymous.post(
        "/auth/password-reset",
        json={"token": second.rsplit("/", 1)[1], "newPassword": "yet another one"},
    )
    assert r.status_code == 409
    assert r.json() == {"message": "this password reset link has expired; ask for a new one"}
    assert (await sign_in(world, "editor", NEW_PASSWORD)).status_code == 200


async def test_who_may_make_reset_links(world: World) -> None:
    admin, owner = await world.person("admin"), await world.person("owner")
    r = await admin.post(f"/members/{world.user_ids['owner']}/password-reset")
    assert r.status_code == 403
    assert r.json() == {"message": "only an owner can reset an owner's password"}
    for role in ("editor", "reviewer", "viewer"):
        person = await world.person(role)
        r = await person.post(f"/members/{world.user_ids['viewer']}/password-reset")
        assert r.status_code == 403
    assert (
        await world.api().post(f"/members/{world.user_ids['viewer']}/password-reset")
    ).status_code == 403
    assert (await owner.post(f"/members/{world.user_ids['admin']}/password-reset")).status_code == (
        201
    )
    async with World.build(world.app, name="Other") as other:
        stranger = other.user_ids["viewer"]
        r = await owner.post(f"/members/{stranger}/password-reset")
        assert r.status_code == 404
        # A person who is in another workspace too gets their link by mail only: a link shown
        # to this workspace's admin would open the other workspace to them.
        invite = await (await other.person("owner")).post(
            "/members/invitations", json={"email": world.emails["viewer"], "role": "viewer"}
        )
        accepted = await (await world.person("viewer")).post(
            "/invitations/accept", json={"token": invite.json()["link"].rsplit("/", 1)[1]}
        )
        assert accepted.status_code == 200, accepted.text
        r = await owner.post(f"/members/{world.user_ids['viewer']}/password-reset")
        assert r.status_code == 409
        assert "also a member of another workspace" in r.json()["message"]
    async with world.db.reader() as session:
        resets = (await session.execute(select(PasswordReset.user_id))).scalars().all()
        assert list(resets) == [world.user_ids["admin"]]


async def test_with_smtp_the_reset_link_is_mailed_to_the_person(
    mail_world: World, smtp: Inbox
) -> None:
    admin = await mail_world.person("admin")
    r = await admin.post(f"/members/{mail_world.user_ids['viewer']}/password-reset")
    assert r.status_code == 201, r.text
    assert (r.json()["link"], r.json()["mailed"]) == (None, True)
    [received] = smtp.received
    assert received.recipients == [mail_world.emails["viewer"]]
    assert received.message["Subject"] == "Set a new Tidings password"
    found = re.search(
        r"https://tidings\.example\.org/app/password-reset/([A-Za-z0-9_-]{43})\s",
        body_of(received.message),
    )
    assert found
    r = await mail_world.anonymous().post(
        "/auth/password-reset", json={"token": found.group(1), "newPassword": NEW_PASSWORD}
    )
    assert r.status_code == 204
    login = await mail_world.anonymous().post(
        "/auth/login", json={"email": mail_world.emails["viewer"], "password": NEW_PASSWORD}
    )
    assert login.status_code == 200
