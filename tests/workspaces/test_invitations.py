"""Invitations (`/members/invitations`, `/invitations/accept`): people join only through a
single-use, expiring link, and what an inviter is told never depends on whether an address
has an account elsewhere; on both databases."""

import asyncio
import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.emulators.server import free_port
from tests.workspaces.conftest import Inbox, app_mailing_to, body_of
from tests.world import PASSWORD, World
from tidings.auth.models import User
from tidings.config import Settings
from tidings.workspaces.models import Invitation, Membership

NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"^http://127\.0\.0\.1:8000/app/invitations/([A-Za-z0-9_-]{43})$")


def token_of(link: str) -> str:
    found = LINK.match(link)
    assert found, link
    return found.group(1)


async def invitations_in_db(world: World) -> list[Invitation]:
    async with world.db.reader() as session:
        return list((await session.execute(select(Invitation).order_by(Invitation.id))).scalars())


async def memberships_of(world: World, email: str) -> list[tuple[str, str]]:
    async with world.db.reader() as session:
        rows = await session.execute(
            select(Membership.workspace_id, Membership.role)
            .join(User, User.id == Membership.user_id)
            .where(User.email == email)
            .order_by(Membership.workspace_id)
        )
        return [(ws, role.value) for ws, role in rows.all()]


async def user_count(world: World) -> int:
    async with world.db.reader() as session:
        return len(list((await session.execute(select(User.id))).all()))


async def sign_in(world: World, email: str, password: str) -> httpx.Response:
    return await world.anonymous().post("/auth/login", json={"email": email, "password": password})


async def test_an_invitation_is_accepted_once_with_a_new_password(world: World) -> None:
    admin = await world.person("admin")
    before = datetime.now(UTC)
    r = await admin.post(
        "/members/invitations", json={"email": " New@Acme.example.com ", "role": "editor"}
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    token = token_of(issued["link"])
    assert issued == {
        "id": issued["id"],
        "email": "new@acme.example.com",
        "role": "editor",
        "invitedBy": world.user_ids["admin"],
        "createdAt": issued["createdAt"],
        "expiresAt": issued["expiresAt"],
        "link": issued["link"],
        "mailed": False,
    }
    assert issued["id"].startswith("inv_")
    expires = datetime.fromisoformat(issued["expiresAt"])
    assert before + timedelta(days=7) <= expires <= datetime.now(UTC) + timedelta(days=7)
    # Only the token's hash is stored.
    [stored] = await invitations_in_db(world)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(vars(stored))
    listed = (await admin.get("/members/invitations")).json()["data"]
    assert listed == [{k: v for k, v in issued.items() if k not in ("link", "mailed")}]
    # Nobody is added until the link is used.
    assert await memberships_of(world, "new@acme.example.com") == []

    r = await world.anonymous().post(
        "/invitations/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert r.status_code == 200, r.text
    joined = r.json()
    assert joined == {
        "workspaceId": world.workspace_id,
        "userId": joined["userId"],
        "email": "new@acme.example.com",
        "role": "editor",
    }
    signed = await sign_in(world, "new@acme.example.com", NEW_PASSWORD)
    assert signed.status_code == 200, signed.text
    assert signed.json()["role"] == "editor"
    assert await memberships_of(world, "new@acme.example.com") == [(world.workspace_id, "editor")]

    # Single use.
    again = await world.anonymous().post(
        "/invitations/accept", json={"token": token, "password": "another password"}
    )
    assert again.status_code == 409
    assert again.json() == {"message": "this invitation was used already"}
    [stored] = await invitations_in_db(world)
    assert (stored.accepted_by, stored.accepted_at is not None) == (joined["userId"], True)
    assert (await admin.get("/members/invitations")).json() == {"data": [], "nextCursor": None}
    assert (await sign_in(world, "new@acme.example.com", "another password")).status_code == 401


async def test_wrong_revoked_replaced_and_expired_links_add_no_one(world: World) -> None:
    owner = await world.person("owner")
    users = await user_count(world)
    anonymous = world.anonymous()

    r = await anonymous.post("/invitations/accept", json={"token": "x" * 43, "password": PASSWORD})
    assert r.status_code == 404
    assert r.json() == {"message": "this invitation link is not valid; ask for a new one"}

    body = {"email": "late@acme.example.com", "role": "viewer"}
    first = (await owner.post("/members/invitations", json=body)).json()
    # A new invitation to the same address replaces the pending one.
    second = (await owner.post("/members/invitations", json=body)).json()
    r = await anonymous.post(
        "/invitations/accept", json={"token": token_of(first["link"]), "password": PASSWORD}
    )
    assert r.status_code == 409
    assert r.json() == {"message": "this invitation was revoked; ask for a new one"}
    listed = (await owner.get("/members/invitations")).json()["data"]
    assert [i["id"] for i in listed] == [second["id"]]

    # A password too short, or none, is refused and leaves the link usable.
    token = token_of(second["link"])
    r = await anonymous.post("/invitations/accept", json={"token": token, "password": "short"})
    assert r.status_code == 400
    assert r.json() == {"message": "password must be at least 8 characters"}
    r = await anonymous.post("/invitations/accept", json={"token": token})
    assert r.status_code == 400
    assert r.json() == {"message": "choose a password to accept the invitation"}
    r = await anonymous.post("/invitations/accept", json={"token": token, "extra": 1})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["extra"]

    # Revoked.
    assert (await owner.delete(f"/members/invitations/{second['id']}")).status_code == 204
    r = await anonymous.post("/invitations/accept", json={"token": token, "password": PASSWORD})
    assert r.status_code == 409
    assert r.json() == {"message": "this invitation was revoked; ask for a new one"}
    assert (await owner.get("/members/invitations")).json() == {"data": [], "nextCursor": None}

    # Expired.
    third = (await owner.post("/members/invitations", json=body)).json()
    async with world.db.transaction() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == third["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await owner.get("/members/invitations")).json() == {"data": [], "nextCursor": None}
    r = await anonymous.post(
        "/invitations/accept", json={"token": token_of(third["link"]), "password": PASSWORD}
    )
    assert r.status_code == 409
    assert r.json() == {"message": "this invitation has expired; ask for a new one"}

    assert await user_count(world) == users
    assert await memberships_of(world, "late@acme.example.com") == []


async def test_an_existing_account_accepts_signed_in_as_itself(world: World) -> None:
    owner = await world.person("owner")
    async with World.build(world.app, name="Other") as other:
        email = other.emails["viewer"]
        r = await owner.post("/members/invitations", json={"email": email, "role": "reviewer"})
        assert r.status_code == 201, r.text
        token = token_of(r.json()["link"])

        # Whoever holds the link cannot set that account's password.
        r = await world.anonymous().post(
            "/invitations/accept", json={"token": token, "password": NEW_PASSWORD}
        )
        assert r.status_code == 409
        assert r.json() == {
            "message": f"{email} has a Tidings account already: sign in with it, then accept"
        }
        assert (await sign_in(world, email, NEW_PASSWORD)).status_code == 401
        assert await memberships_of(world, email) == [(other.workspace_id, "viewer")]

        # Signed in as someone else: refused.
        stranger = await other.person("editor")
        r = await stranger.post("/invitations/accept", json={"token": token})
        assert r.status_code == 403
        assert r.json()["message"].startswith(f"this invitation is for {email}")
        # A session's write still needs its CSRF token.
        bare = await other.person("viewer")
        del bare.headers["X-CSRF-Token"]
        r = await bare.post("/invitations/accept", json={"token": token})
        assert r.status_code == 403
        assert r.json() == {"message": "missing or invalid X-CSRF-Token header"}

        invitee = await other.person("viewer")
        r = await invitee.post("/invitations/accept", json={"token": token})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "workspaceId": world.workspace_id,
            "userId": other.user_ids["viewer"],
            "email": email,
            "role": "reviewer",
        }
        assert sorted(await memberships_of(world, email)) == sorted(
            [(other.workspace_id, "viewer"), (world.workspace_id, "reviewer")]
        )
        # Their password is their own still.
        signed = await world.anonymous().post(
            "/auth/login",
            json={"email": email, "password": PASSWORD, "workspaceId": world.workspace_id},
        )
        assert signed.json()["role"] == "reviewer"


async def test_inviting_an_account_of_another_workspace_tells_nothing(world: World) -> None:
    """An owner of B cannot learn, nor use, that an address has an account in A."""
    async with World.build(world.app, name="B") as b:
        owner_b = await b.person("owner")
        taken = world.emails["owner"]
        answers = []
        for email in (taken, "nobody-yet@acme.example.com"):
            r = await owner_b.post("/members/invitations", json={"email": email, "role": "owner"})
            answers.append(r)
        assert [r.status_code for r in answers] == [201, 201]
        shapes = [
            {k: (v if k in ("role", "mailed", "invitedBy") else type(v).__name__)}
            for r in answers
            for k, v in r.json().items()
        ]
        assert shapes[: len(shapes) // 2] == shapes[len(shapes) // 2 :]
        # A's owner is not in B, and their password was never asked for.
        assert await memberships_of(world, taken) == [(world.workspace_id, "owner")]
        # The old way in, adding a member with a password, is gone.
        r = await owner_b.post(
            "/members", json={"email": taken, "password": "guess", "role": "owner"}
        )
        assert r.status_code == 405
        assert await memberships_of(world, taken) == [(world.workspace_id, "owner")]


async def test_who_may_invite_and_revoke(world: World) -> None:
    body = {"email": "x@acme.example.com", "role": "viewer"}
    for role in ("editor", "reviewer", "viewer"):
        person = await world.person(role)
        r = await person.post("/members/invitations", json=body)
        assert r.status_code == 403
        assert r.json() == {"message": f"role {role} cannot manage members; owner or admin can"}
        assert (await person.get("/members/invitations")).status_code == 403
    key = world.api()
    assert (await key.post("/members/invitations", json=body)).status_code == 403
    assert (await key.get("/members/invitations")).status_code == 403

    admin, owner = await world.person("admin"), await world.person("owner")
    r = await admin.post("/members/invitations", json={**body, "role": "owner"})
    assert r.status_code == 403
    assert r.json() == {"message": "only an owner can invite an owner"}
    r = await owner.post("/members/invitations", json={**body, "role": "owner"})
    assert r.status_code == 201
    owners_invitation = r.json()["id"]
    r = await admin.delete(f"/members/invitations/{owners_invitation}")
    assert r.status_code == 403
    assert r.json() == {"message": "only an owner can revoke an invitation to be an owner"}
    r = await admin.post("/members/invitations", json={**body, "email": "y@acme.example.com"})
    assert r.status_code == 201
    assert (await admin.delete(f"/members/invitations/{r.json()['id']}")).status_code == 204
    for role in ("editor", "viewer"):
        person = await world.person(role)
        r = await person.delete(f"/members/invitations/{owners_invitation}")
        assert r.status_code == 403
    assert [i["id"] for i in (await owner.get("/members/invitations")).json()["data"]] == [
        owners_invitation
    ]

    # Input.
    r = await owner.post("/members/invitations", json={"email": "nobody", "role": "viewer"})
    assert r.status_code == 400
    assert r.json() == {"message": "'nobody' is not an email address"}
    r = await owner.post("/members/invitations", json={"email": "a@b.example", "role": "king"})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["role"]
    r = await owner.post(
        "/members/invitations", json={"email": world.emails["viewer"], "role": "viewer"}
    )
    assert r.status_code == 409
    assert r.json() == {
        "message": f"{world.emails['viewer']} is already a member of this workspace"
    }
    # Another workspace's invitation is not found here.
    async with World.build(world.app, name="Other") as other:
        theirs = await (await other.person("owner")).post("/members/invitations", json=body)
        r = await owner.delete(f"/members/invitations/{theirs.json()['id']}")
        assert r.status_code == 404
        assert r.json() == {"message": f"invitation {theirs.json()['id']} not found"}
    assert (await owner.delete("/members/invitations/inv_nope")).status_code == 404


async def test_with_smtp_the_link_is_mailed_to_the_address_only(
    mail_world: World, smtp: Inbox
) -> None:
    admin = await mail_world.person("admin")
    r = await admin.post(
        "/members/invitations", json={"email": "Mailed@Acme.example.com", "role": "reviewer"}
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    assert (issued["link"], issued["mailed"]) == (None, True)
    [received] = smtp.received
    assert received.recipients == ["mailed@acme.example.com"]
    assert received.sender == "noreply@tidings.test"
    assert received.message["To"] == "mailed@acme.example.com"
    assert received.message["From"] == "Tidings <noreply@tidings.test>"
    assert received.message["Subject"] == "You are invited to Acme on Tidings"
    text = body_of(received.message)
    found = re.search(r"https://tidings\.example\.org/app/invitations/([A-Za-z0-9_-]{43})\s", text)
    assert found, text
    assert "as reviewer" in text
    r = await mail_world.anonymous().post(
        "/invitations/accept", json={"token": found.group(1), "password": NEW_PASSWORD}
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "reviewer"
    # A refused invitation sends nothing.
    r = await admin.post("/members/invitations", json={"email": "bad", "role": "viewer"})
    assert r.status_code == 400
    assert len(smtp.received) == 1


async def test_a_mail_server_that_is_down_loses_no_invitation(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Delivery is after the commit: the invitation stands, the failure is logged, and the
    inviter can invite again once the server is back."""
    down = f"smtp://127.0.0.1:{free_port()}?from=noreply@tidings.test&timeout=2"
    async with app_mailing_to(settings, down) as app, World.build(app) as world:
        owner = await world.person("owner")
        with caplog.at_level(logging.ERROR, logger="tidings.mail"):
            r = await owner.post(
                "/members/invitations", json={"email": "far@acme.example.com", "role": "viewer"}
            )
        assert r.status_code == 201, r.text
        assert (r.json()["link"], r.json()["mailed"]) == (None, True)
        assert [i.email for i in await invitations_in_db(world)] == ["far@acme.example.com"]
        assert any("mail to far@acme.example.com not delivered" in m for m in caplog.messages), (
            caplog.messages
        )


async def test_pending_invitations_are_paged_newest_first(world: World) -> None:
    owner = await world.person("owner")
    made = []
    for n in range(5):
        r = await owner.post(
            "/members/invitations", json={"email": f"p{n}@acme.example.com", "role": "viewer"}
        )
        made.append(r.json()["id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await owner.get("/members/invitations", params=params)).json()
        seen += [i["id"] for i in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert (seen, pages) == (made[::-1], 3)
    r = await owner.get("/members/invitations", params={"limit": 0})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["query", "limit"]


async def test_one_link_accepted_twice_at_once_adds_one_account(world: World) -> None:
    owner = await world.person("owner")
    r = await owner.post(
        "/members/invitations", json={"email": "race@acme.example.com", "role": "viewer"}
    )
    token = token_of(r.json()["link"])
    answers = await asyncio.gather(
        *(
            world.anonymous().post(
                "/invitations/accept", json={"token": token, "password": f"password number {n}"}
            )
            for n in range(2)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    assert await memberships_of(world, "race@acme.example.com") == [(world.workspace_id, "viewer")]
