"""People and roles (`/members`; joining is by invitation, see test_invitations.py), the
workspace's settings (`/workspace`) and a person's own timezone (`PATCH /auth/me`): owners
and admins manage, everyone (and keys) reads, the last owner stays; on both databases."""

from typing import Any

from tests.world import PASSWORD, World


def BAD_ZONE(name: str) -> dict[str, Any]:
    """The request-shape error of a timezone that is not an IANA zone."""
    message = f"{name!r} is not an IANA time zone (e.g. Europe/Paris)"
    return {
        "message": f"Value error, {message}",
        "path": ["timezone"],
        "type": "value_error",
        "context": {"error": message},
    }


async def test_everyone_and_keys_list_members_owners_first(world: World) -> None:
    for client in [world.api(), await world.person("viewer")]:
        r = await client.get("/members")
        assert r.status_code == 200, r.text
        members = r.json()["data"]
        assert [m["role"] for m in members] == ["owner", "admin", "editor", "reviewer", "viewer"]
        assert members[0] == {
            "userId": world.user_ids["owner"],
            "email": world.emails["owner"],
            "role": "owner",
            "timezone": None,
            "joinedAt": members[0]["joinedAt"],
        }
        assert all("password" not in str(m) for m in members)


async def test_an_admin_invites_changes_and_removes_a_member(world: World) -> None:
    admin = await world.person("admin")
    r = await admin.post(
        "/members/invitations", json={"email": " New@Acme.example.com ", "role": "editor"}
    )
    assert r.status_code == 201, r.text
    token = r.json()["link"].rsplit("/", 1)[1]
    r = await world.anonymous().post(
        "/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    new = r.json()
    assert (new["email"], new["role"]) == ("new@acme.example.com", "editor")
    # The new person signs in with the password they chose.
    signed = await world.anonymous().post(
        "/auth/login", json={"email": "new@acme.example.com", "password": PASSWORD}
    )
    assert signed.json()["role"] == "editor"
    r = await admin.patch(f"/members/{new['userId']}", json={"role": "reviewer"})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "reviewer"
    # Removing them ends their sign-in to the workspace at once.
    assert (await admin.delete(f"/members/{new['userId']}")).status_code == 204
    session_client = world.anonymous()
    session_client.cookies = signed.cookies
    assert (await session_client.get("/auth/me")).status_code == 401
    assert (await admin.delete(f"/members/{new['userId']}")).status_code == 404
    emails = [m["email"] for m in (await admin.get("/members")).json()["data"]]
    assert "new@acme.example.com" not in emails


async def test_refusals_by_role_and_key(world: World) -> None:
    body = {"email": "x@acme.example.com", "role": "viewer"}
    target = world.user_ids["viewer"]
    for role in ("editor", "reviewer", "viewer"):
        person = await world.person(role)
        assert (await person.post("/members/invitations", json=body)).status_code == 403
        r = await person.patch(f"/members/{target}", json={"role": "admin"})
        assert r.status_code == 403
        assert r.json()["message"] == f"role {role} cannot manage members; owner or admin can"
        assert (await person.delete(f"/members/{target}")).status_code == 403
        assert (await person.patch("/workspace", json={"timezone": "UTC"})).status_code == 403
    key = world.api()
    assert (await key.post("/members/invitations", json=body)).status_code == 403
    assert (await key.delete(f"/members/{target}")).status_code == 403
    assert (await key.patch("/workspace", json={"name": "X"})).status_code == 403
    # An admin neither makes, demotes nor removes an owner.
    admin = await world.person("admin")
    r = await admin.post("/members/invitations", json={**body, "role": "owner"})
    assert r.status_code == 403
    assert (await admin.patch(f"/members/{target}", json={"role": "owner"})).status_code == 403
    owner_id = world.user_ids["owner"]
    assert (await admin.patch(f"/members/{owner_id}", json={"role": "admin"})).status_code == 403
    assert (await admin.delete(f"/members/{owner_id}")).status_code == 403
    # Nothing changed.
    roles = {m["userId"]: m["role"] for m in (await key.get("/members")).json()["data"]}
    assert roles[target] == "viewer"
    assert roles[owner_id] == "owner"


async def test_the_last_owner_is_never_removed_or_demoted(world: World) -> None:
    owner = await world.person("owner")
    me = world.user_ids["owner"]
    r = await owner.patch(f"/members/{me}", json={"role": "admin"})
    assert r.status_code == 409
    assert "last owner" in r.json()["message"]
    assert (await owner.delete(f"/members/{me}")).status_code == 409
    # With a second owner, the first may step down.
    admin_id = world.user_ids["admin"]
    assert (await owner.patch(f"/members/{admin_id}", json={"role": "owner"})).status_code == 200
    r = await owner.patch(f"/members/{me}", json={"role": "admin"})
    assert r.status_code == 200, r.text
    second = await world.person("admin")  # the admin is now the only owner
    r = await second.delete(f"/members/{admin_id}")
    assert r.status_code == 409


async def test_bad_member_input(world: World) -> None:
    # (Inviting has its own tests in test_invitations.py.)
    owner = await world.person("owner")
    assert (await owner.patch("/members/usr_nobody", json={"role": "viewer"})).status_code == 404
    r = await owner.patch(f"/members/{world.user_ids['viewer']}", json={"role": "viewer", "x": 1})
    assert r.status_code == 422
    # Another workspace's member is not found here.
    async with World.build(world.app, name="Other") as other:
        stranger = other.user_ids["viewer"]
        r = await owner.patch(f"/members/{stranger}", json={"role": "admin"})
        assert r.status_code == 404
        assert (await owner.delete(f"/members/{stranger}")).status_code == 404


async def test_the_workspace_name_and_timezone(world: World) -> None:
    viewer = await world.person("viewer")
    r = await viewer.get("/workspace")
    assert r.json() == {"id": world.workspace_id, "name": "Acme", "timezone": "UTC"}
    admin = await world.person("admin")
    r = await admin.patch("/workspace", json={"timezone": "Europe/Paris", "name": " Acme Inc "})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": world.workspace_id, "name": "Acme Inc", "timezone": "Europe/Paris"}
    r = await admin.patch("/workspace", json={"timezone": "Mars/Olympus"})
    assert r.status_code == 422
    assert r.json() == {"error": [BAD_ZONE("Mars/Olympus")]}
    assert (await admin.patch("/workspace", json={"name": "  "})).status_code == 422
    assert (await viewer.get("/workspace")).json()["timezone"] == "Europe/Paris"


async def test_a_persons_own_timezone(world: World) -> None:
    viewer = await world.person("viewer")
    r = await viewer.patch("/auth/me", json={"timezone": "America/New_York"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "userId": world.user_ids["viewer"],
        "timezone": "America/New_York",
        "effectiveTimezone": "America/New_York",
    }
    members = (await viewer.get("/members")).json()["data"]
    assert {m["email"]: m["timezone"] for m in members}[
        world.emails["viewer"]
    ] == "America/New_York"
    r = await viewer.patch("/auth/me", json={"timezone": " Nowhere/Land "})
    assert r.status_code == 422
    assert r.json() == {"error": [BAD_ZONE("Nowhere/Land")]}
    members = (await viewer.get("/members")).json()["data"]
    assert {m["email"]: m["timezone"] for m in members}[world.emails["viewer"]] == (
        "America/New_York"
    )
    r = await viewer.patch("/auth/me", json={"timezone": None})
    assert r.json()["timezone"] is None
    assert r.json()["effectiveTimezone"] == "UTC"
    assert (await viewer.patch("/auth/me", json={"zone": "UTC"})).status_code == 422
    # A key stands for no person.
    assert (await world.api().patch("/auth/me", json={"timezone": "UTC"})).status_code == 401
