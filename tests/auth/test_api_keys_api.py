"""Managing API keys (`/api-keys`): owners and admins, signed in, list, create and revoke;
the secret is shown once; a revoked key no longer authenticates; keys cannot manage keys;
on both databases."""

from tests.world import World, signature_headers

DEFAULT_SCOPES = ["posts:read", "posts:write", "channels:read", "channels:write"]


async def test_create_shows_the_secret_once_and_it_works(world: World) -> None:
    admin = await world.person("admin")
    r = await admin.post("/api-keys", json={"name": " zapier "})
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["name"] == "zapier"
    assert issued["token"] == f"{issued['id']}.{issued['secret']}"
    listed = (await admin.get("/api-keys")).json()["data"]
    assert [k["id"] for k in listed] == [issued["id"], world.key_id]
    assert set(listed[0]) == {"id", "name", "createdAt", "revokedAt", "signing", "scopes"}
    assert (issued["signing"], issued["scopes"]) == ("request", DEFAULT_SCOPES)
    assert (listed[0]["signing"], listed[0]["scopes"]) == ("request", DEFAULT_SCOPES)
    assert issued["secret"] not in str(listed)
    # Both ways of using it work.
    bearer = world.anonymous()
    r = await bearer.get("/auth/me", headers={"Authorization": f"Bearer {issued['token']}"})
    assert r.json()["apiKeyId"] == issued["id"]
    r = await world.anonymous().get(
        "/channels", headers=signature_headers(issued["id"], issued["secret"], "GET", "/channels")
    )
    assert r.status_code == 200, r.text


async def test_a_revoked_key_no_longer_authenticates(world: World) -> None:
    owner = await world.person("owner")
    issued = (await owner.post("/api-keys", json={"name": "old"})).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert (await world.anonymous().get("/channels", headers=headers)).status_code == 200
    assert (await owner.delete(f"/api-keys/{issued['id']}")).status_code == 204
    r = await world.anonymous().get("/channels", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"message": "API key has been revoked"}
    listed = {k["id"]: k for k in (await owner.get("/api-keys")).json()["data"]}
    assert listed[issued["id"]]["revokedAt"] is not None
    assert listed[world.key_id]["revokedAt"] is None
    # Revoking again changes nothing; an unknown key is not found.
    assert (await owner.delete(f"/api-keys/{issued['id']}")).status_code == 204
    assert (await owner.delete("/api-keys/key_nothing")).status_code == 404


async def test_who_may_manage_keys(world: World) -> None:
    for role in ("editor", "reviewer", "viewer"):
        person = await world.person(role)
        assert (await person.get("/api-keys")).status_code == 403
        assert (await person.post("/api-keys", json={"name": "x"})).status_code == 403
        assert (await person.delete(f"/api-keys/{world.key_id}")).status_code == 403
    key = world.api()
    r = await key.get("/api-keys")
    assert r.status_code == 403
    assert "API keys cannot manage API keys" in r.json()["message"]
    assert (await key.post("/api-keys", json={"name": "x"})).status_code == 403
    assert (await key.delete(f"/api-keys/{world.key_id}")).status_code == 403
    # The key still works: nothing was revoked.
    assert (await key.get("/channels")).status_code == 200


async def test_bad_key_input_and_other_workspaces(world: World) -> None:
    owner = await world.person("owner")
    r = await owner.post("/api-keys", json={"name": "  "})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["name"]
    assert (await owner.post("/api-keys", json={})).status_code == 422
    assert (await owner.post("/api-keys", json={"name": "a", "secret": "mine"})).status_code == 422
    async with World.build(world.app, name="Other") as other:
        r = await owner.delete(f"/api-keys/{other.key_id}")
        assert r.status_code == 404
        assert (await other.api().get("/channels")).status_code == 200
        assert other.key_id not in str((await owner.get("/api-keys")).json())
