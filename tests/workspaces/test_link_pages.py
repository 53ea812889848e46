"""The web pages behind the links, and the settings page's members part, over HTTP (the
browser test in tests/web/test_settings.py walks the same path in Chromium): on both
databases."""

import html
import re

import httpx
from sqlalchemy import select

from tests.workspaces.conftest import Inbox, body_of
from tests.world import PASSWORD, World
from tidings.auth.models import User
from tidings.workspaces.models import Membership

NEW_PASSWORD = "a brand new passphrase"


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def web_person(world: World, role: str) -> httpx.AsyncClient:
    client = world.anonymous()
    form = await client.get("/app/signin")
    r = await client.post(
        "/app/signin",
        data={
            "email": world.emails[role],
            "password": PASSWORD,
            "next": "/app",
            "csrf_token": csrf(form),
        },
    )
    assert r.status_code == 303, r.text
    return client


def shown_link(page: httpx.Response) -> str:
    found = re.search(r'id="shown-link" class="mono" readonly value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


async def test_invite_from_settings_then_join_with_a_new_password(world: World) -> None:
    owner = await web_person(world, "owner")
    settings = await owner.get("/app/settings")
    assert "Invite someone" in settings.text
    assert 'name="password"' not in settings.text.split('id="keys"')[0]
    r = await owner.post(
        "/app/settings/invitations",
        data={"csrf_token": csrf(settings), "email": "web@acme.example.com", "role": "reviewer"},
    )
    assert r.status_code == 201, r.text
    link = shown_link(r)
    assert link.startswith("http://127.0.0.1:8000/app/invitations/")
    path = link.removeprefix("http://127.0.0.1:8000")
    assert "Pending invitations" in r.text
    assert "web@acme.example.com" in r.text.split('id="invitations"')[1]
    # Shown once: the next view of the page no longer has it.
    assert link not in (await owner.get("/app/settings")).text

    anonymous = world.anonymous()
    page = await anonymous.get(path)
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Join Acme" in page.text
    assert "Choose a password" in page.text
    r = await anonymous.post(path, data={"password": "short", "confirm_password": "short"})
    assert r.status_code == 400
    assert "Password must be at least 8 characters" in r.text
    r = await anonymous.post(
        path, data={"password": NEW_PASSWORD, "confirm_password": "something else"}
    )
    assert r.status_code == 400
    assert "The password and its confirmation differ" in r.text
    r = await anonymous.post(
        path, data={"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/app/signin"
    login = await world.anonymous().post(
        "/auth/login", json={"email": "web@acme.example.com", "password": NEW_PASSWORD}
    )
    assert login.json()["role"] == "reviewer"
    # Used: the page says so, as an error page.
    r = await anonymous.get(path)
    assert r.status_code == 409
    assert "this invitation was used already" in r.text


async def test_an_existing_account_accepts_on_the_page_signed_in(world: World) -> None:
    async with World.build(world.app, name="Other") as other:
        email = other.emails["editor"]
        api_owner = await world.person("owner")
        r = await api_owner.post("/members/invitations", json={"email": email, "role": "viewer"})
        path = r.json()["link"].removeprefix("http://127.0.0.1:8000")
        page = await world.anonymous().get(path)
        assert "has a Tidings account: sign in with it, then accept" in page.text
        assert f"/app/signin?next={path}" in page.text
        assert 'name="password"' not in page.text

        invitee = await web_person(other, "editor")
        page = await invitee.get(path)
        assert "Accept the invitation" in page.text
        # Without the session's CSRF token, nothing happens.
        r = await invitee.post(path, data={})
        assert r.status_code == 403
        r = await invitee.post(path, data={"csrf_token": csrf(page)})
        assert r.status_code == 303, r.text
        async with world.db.reader() as session:
            roles = (
                await session.execute(
                    select(Membership.workspace_id, Membership.role)
                    .join(User, User.id == Membership.user_id)
                    .where(User.email == email)
                )
            ).all()
        assert sorted((ws, role.value) for ws, role in roles) == sorted(
            [(other.workspace_id, "editor"), (world.workspace_id, "viewer")]
        )


async def test_revoke_reset_link_and_own_password_from_settings(world: World) -> None:
    admin = await web_person(world, "admin")
    settings = await admin.get("/app/settings")
    token = csrf(settings)
    r = await admin.post(
        "/app/settings/invitations",
        data={"csrf_token": token, "email": "gone@acme.example.com", "role": "viewer"},
    )
    invitation_id = re.search(r"/app/settings/invitations/(inv_\w+)/revoke", r.text)
    assert invitation_id, r.text
    r = await admin.post(
        f"/app/settings/invitations/{invitation_id.group(1)}/revoke", data={"csrf_token": token}
    )
    assert r.status_code == 303
    page = await admin.get("/app/settings")
    assert "No invitations waiting." in page.text
    # An admin is offered no reset link for an owner, and is refused one anyway.
    assert f"Password reset link for {world.emails['owner']}" not in page.text
    r = await admin.post(
        f"/app/settings/members/{world.user_ids['owner']}/password-reset",
        data={"csrf_token": token},
    )
    assert r.status_code == 403
    r = await admin.post(
        f"/app/settings/members/{world.user_ids['viewer']}/password-reset",
        data={"csrf_token": token},
    )
    assert r.status_code == 201, r.text
    path = shown_link(r).removeprefix("http://127.0.0.1:8000")
    assert path.startswith("/app/password-reset/")
    viewer = await web_person(world, "viewer")
    anonymous = world.anonymous()
    page = await anonymous.get(path)
    assert world.emails["viewer"] in page.text
    r = await anonymous.post(
        path, data={"password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    )
    assert r.status_code == 303
    assert (await viewer.get("/app/settings")).status_code == 303  # signed out everywhere
    assert (await anonymous.get(path)).status_code == 409

    # Changing one's own password on the settings page.
    r = await admin.post(
        "/app/settings/password",
        data={
            "csrf_token": token,
            "current_password": "wrong one!",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert r.status_code == 303
    said = await admin.get("/app/settings")
    assert 'role="alert"' in said.text
    assert "The current password is not right" in said.text
    r = await admin.post(
        "/app/settings/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert r.status_code == 303
    assert (await admin.get("/app/settings")).status_code == 200
    login = await world.anonymous().post(
        "/auth/login", json={"email": world.emails["admin"], "password": NEW_PASSWORD}
    )
    assert login.status_code == 200


async def test_with_smtp_the_settings_page_mails_the_links(mail_world: World, smtp: Inbox) -> None:
    owner = await web_person(mail_world, "owner")
    token = csrf(await owner.get("/app/settings"))
    r = await owner.post(
        "/app/settings/invitations",
        data={"csrf_token": token, "email": "post@acme.example.com", "role": "editor"},
    )
    assert r.status_code == 303
    page = await owner.get("/app/settings")
    assert "Invitation e-mailed to post@acme.example.com (as editor)." in page.text
    assert 'id="shown-link"' not in page.text
    assert "/app/invitations/" not in page.text
    r = await owner.post(
        f"/app/settings/members/{mail_world.user_ids['viewer']}/password-reset",
        data={"csrf_token": token},
    )
    assert r.status_code == 303
    page = await owner.get("/app/settings")
    assert f"A password reset link was e-mailed to {mail_world.emails['viewer']}." in page.text
    assert [m.recipients for m in smtp.received] == [
        ["post@acme.example.com"],
        [mail_world.emails["viewer"]],
    ]
    assert "https://tidings.example.org/app/invitations/" in body_of(smtp.received[0].message)
    assert "https://tidings.example.org/app/password-reset/" in body_of(smtp.received[1].message)
