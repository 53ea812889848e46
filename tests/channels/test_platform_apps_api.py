"""A workspace's own apps on the platforms (`/platform-apps`): set by signed-in owners and
admins (never by an API key), listed by them and by keys with channels:read, secrets sealed
and never returned, one workspace never sees another's; on both databases."""

from sqlalchemy import select

from tests.world import World
from tidings.channels.models import PlatformApp


async def test_set_replace_list_and_delete(world: World) -> None:
    api = await world.person("admin")
    r = await api.put(
        "/platform-apps/instagram", json={"clientId": "123", "clientSecret": "secret one"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["clientId"] == "123"
    assert "clientSecret" not in r.json()
    r = await api.put(
        "/platform-apps/instagram", json={"clientId": "456", "clientSecret": "secret two"}
    )
    assert r.json()["clientId"] == "456"
    await api.put(
        "/platform-apps/threads", json={"clientId": "789", "clientSecret": "secret three"}
    )
    r = await api.get("/platform-apps")
    assert [(a["platform"], a["clientId"]) for a in r.json()["data"]] == [
        ("instagram", "456"),
        ("threads", "789"),
    ]
    async with world.db.transaction(write=False) as session:
        app = await session.get(PlatformApp, (world.workspace_id, "instagram"))
        assert app is not None
        assert b"secret two" not in app.client_secret  # (a space is never in base64)
        assert world.state.box.open(app.client_secret) == "secret two"
    assert (await api.delete("/platform-apps/threads")).status_code == 204
    assert (await api.delete("/platform-apps/threads")).status_code == 404
    assert [a["platform"] for a in (await api.get("/platform-apps")).json()["data"]] == [
        "instagram"
    ]


async def test_refusals(world: World) -> None:
    api = await world.person("owner")
    body = {"clientId": "1", "clientSecret": "s"}
    assert (await api.put("/platform-apps/sandbox", json=body)).status_code == 400
    assert (await api.put("/platform-apps/myspace", json=body)).status_code == 400
    r = await api.put("/platform-apps/instagram", json={"clientId": " ", "clientSecret": "s"})
    assert r.status_code == 422
    r = await api.put("/platform-apps/instagram", json={"clientId": "1"})
    assert r.status_code == 422
    for role in ("editor", "reviewer", "viewer"):
        person = await world.person(role)
        assert (await person.put("/platform-apps/instagram", json=body)).status_code == 403
        assert (await person.get("/platform-apps")).status_code == 403
    async with World.build(world.app, name="Other") as other:
        other_owner = await other.person("owner")
        assert (await other_owner.put("/platform-apps/facebook", json=body)).status_code == 200
    assert (await api.get("/platform-apps")).json()["data"] == []
    async with world.db.transaction(write=False) as session:
        rows = (await session.execute(select(PlatformApp.workspace_id))).scalars().all()
    assert world.workspace_id not in rows


async def test_keys_cannot_set_or_remove_platform_apps_whatever_their_scopes(
    world: World,
) -> None:
    """The app decides where every later connection's consent goes and which secret it
    uses: a key (the world's has every scope) is refused, and nothing changes."""
    owner = await world.person("owner")
    body = {"clientId": "ours", "clientSecret": "our-secret"}
    assert (await owner.put("/platform-apps/instagram", json=body)).status_code == 200
    key = world.api()
    r = await key.put(
        "/platform-apps/instagram", json={"clientId": "attacker", "clientSecret": "theirs"}
    )
    assert r.status_code == 403, r.text
    assert r.json() == {
        "message": "API keys cannot set or remove platform apps; an owner or admin can, signed in"
    }
    r = await key.put("/platform-apps/threads", json=body)
    assert r.status_code == 403, r.text
    r = await key.delete("/platform-apps/instagram")
    assert r.status_code == 403, r.text
    # Listing (client ids only) stays open to keys with channels:read.
    listed = await key.get("/platform-apps")
    assert listed.status_code == 200, listed.text
    assert [(a["platform"], a["clientId"]) for a in listed.json()["data"]] == [
        ("instagram", "ours")
    ]
    async with world.db.transaction(write=False) as session:
        apps = (
            (
                await session.execute(
                    select(PlatformApp).where(PlatformApp.workspace_id == world.workspace_id)
                )
            )
            .scalars()
            .all()
        )
        assert [(a.platform, a.client_id) for a in apps] == [("instagram", "ours")]
        assert world.state.box.open(apps[0].client_secret) == "our-secret"
