"""API key scopes: one table says which route needs which, every API route is in it, a key
without the scope is refused (403 naming it) before anything is done, new keys get posts
and channels (read and write), keys made before scopes got the same; on both databases."""

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select, text

from tests.world import World
from tidings.app import metrics_reader
from tidings.auth.deps import current_principal, principal_apart
from tidings.auth.models import ApiKey
from tidings.auth.scopes import DEFAULT_SCOPES, ROUTE_SCOPES, Scope
from tidings.db import migrate
from tidings.db.engine import Database
from tidings.scheduled_posts.models import ScheduledPost

LIST = "/scheduled-posts"
DEFAULT = ["posts:read", "posts:write", "channels:read", "channels:write"]


def _authenticates(dependant: Dependant) -> bool:
    return any(
        d.call in (current_principal, principal_apart, metrics_reader) or _authenticates(d)
        for d in dependant.dependencies
    )


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every route a key can reach: those that authenticate with `CurrentPrincipal`."""
    routes = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and _authenticates(route.dependant):
            routes.update((method, str(route.path)) for method in route.methods or ())
    return routes


async def _key(world: World, *scopes: str, signing: str = "request") -> httpx.AsyncClient:
    owner = await world.person("owner")
    body: dict[str, Any] = {"name": "scoped", "signing": signing}
    if scopes:
        body["scopes"] = list(scopes)
    r = await owner.post("/api-keys", json=body)
    assert r.status_code == 201, r.text
    return world.bearer(r.json()["token"])


def test_every_api_route_has_a_decided_scope(app: FastAPI) -> None:
    """A new route is closed to keys until it is in the table; the table names no route
    that does not exist."""
    routes = _api_routes(app)
    assert {("POST", LIST), ("GET", "/members"), ("PUT", "/platform-apps/{platform}")} <= routes
    assert routes == set(ROUTE_SCOPES)


def test_default_scopes_are_posts_and_channels() -> None:
    assert [s.value for s in Scope if s in DEFAULT_SCOPES] == DEFAULT


async def test_a_key_without_the_scope_is_refused_on_every_route(world: World) -> None:
    """For each scoped route: a key with every other scope is refused, naming the missing
    one; a key with only that scope gets past the scope check."""
    for scope in Scope:
        others = [s.value for s in Scope if s is not scope]
        lacking, having = await _key(world, *others), await _key(world, scope.value)
        for (method, path), needed in ROUTE_SCOPES.items():
            if needed is not scope:
                continue
            url = re.sub(r"\{[^}]+\}", "dummy_00000000", path)
            body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            refused = await lacking.request(method, url, **body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json() == {
                "message": f"this API key lacks the {scope.value} scope needed for "
                f"{method} {path}; an owner or admin can create a key with it"
            }
            passed = await having.request(method, url, **body)
            assert "scope" not in passed.text, (method, path, passed.text)
            assert passed.status_code != 403, (method, path, passed.text)


async def test_a_read_only_key_reads_but_writes_nothing(world: World) -> None:
    created = await world.api().post(LIST, json=world.post_body())
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    reader = await _key(world, "posts:read")
    listed = await reader.get(LIST)
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["data"]] == [post_id]
    for method, path, body in [
        ("POST", LIST, world.post_body()),
        ("PATCH", f"{LIST}/{post_id}", {"notes": "changed"}),
        ("POST", f"{LIST}/{post_id}/submit-for-approval", None),
        ("DELETE", f"{LIST}/{post_id}", None),
    ]:
        r = await reader.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "lacks the posts:write scope" in r.json()["message"]
    r = await reader.get("/channels")
    assert r.status_code == 403
    assert "lacks the channels:read scope" in r.json()["message"]
    async with world.db.transaction(write=False) as session:
        posts = (await session.execute(select(ScheduledPost))).scalars().all()
        assert [(p.id, p.status.value, p.notes, p.deleted_at) for p in posts] == [
            (post_id, "DRAFT", None, None)
        ]


async def test_a_new_key_has_the_default_scopes(world: World) -> None:
    key = await _key(world)
    assert (await key.get(LIST)).status_code == 200
    assert (await key.post(LIST, json=world.post_body())).status_code == 201
    assert (await key.get("/channels")).status_code == 200
    r = await key.patch(f"/channels/{world.channel_id}", json={"name": "Renamed"})
    assert r.status_code == 200, r.text
    r = await key.get("/members")
    assert r.status_code == 403
    assert r.json() == {
        "message": "this API key lacks the workspace:read scope needed for GET /members; "
        "an owner or admin can create a key with it"
    }
    # No scope for who-am-I; approving stays refused as a human decision, whatever the scope.
    assert (await key.get("/auth/me")).status_code == 200
    created = (await key.post(LIST, json=world.post_body(status="WAITING_FOR_APPROVAL"))).json()
    r = await key.post(f"{LIST}/{created['id']}/approve")
    assert r.status_code == 403
    assert "human decision" in r.json()["message"]


async def test_scopes_and_signing_are_chosen_listed_and_checked(world: World) -> None:
    owner = await world.person("owner")
    r = await owner.post(
        "/api-keys",
        json={"name": "metrics", "signing": "date", "scopes": ["workspace:read", "posts:read"]},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["signing"], r.json()["scopes"]) == ("date", ["posts:read", "workspace:read"])
    listed = {k["id"]: k for k in (await owner.get("/api-keys")).json()["data"]}
    assert listed[r.json()["id"]]["scopes"] == ["posts:read", "workspace:read"]
    assert listed[r.json()["id"]]["signing"] == "date"
    async with world.db.transaction(write=False) as session:
        key = await session.get(ApiKey, r.json()["id"])
        assert key is not None
        assert (key.signing.value, key.scopes) == ("date", ["posts:read", "workspace:read"])
    for bad, path in [
        ({"scopes": ["apps:write"]}, ["scopes", 0]),
        ({"scopes": []}, ["scopes"]),
        ({"signing": "sha1"}, ["signing"]),
    ]:
        r = await owner.post("/api-keys", json={"name": "bad", **bad})
        assert r.status_code == 422, r.text
        assert r.json()["error"][0]["path"] == path
    async with world.db.transaction(write=False) as session:
        names = (await session.execute(select(ApiKey.name))).scalars().all()
        assert sorted(names) == ["metrics", "tests"]


async def test_the_settings_form_creates_a_date_signing_key_with_chosen_scopes(
    world: World,
) -> None:
    owner = await world.person("owner")
    page = await owner.get("/app/settings")
    assert page.status_code == 200
    assert 'name="signing"' in page.text
    for scope in Scope:
        assert f'value="{scope.value}"' in page.text
    r = await owner.post(
        "/app/settings/keys",
        data={"name": "dynamo", "signing": "date", "scope": ["posts:read", "posts:write"]},
    )
    assert r.status_code == 201, r.text
    assert "the date alone" in r.text
    assert "x-signature</code> is the HMAC-SHA256 of <code>x-date</code>" in r.text
    async with world.db.transaction(write=False) as session:
        key = (await session.execute(select(ApiKey).where(ApiKey.name == "dynamo"))).scalar_one()
        assert (key.signing.value, key.scopes) == ("date", ["posts:read", "posts:write"])
    # A viewer's forged form is refused for who they are, whatever it asks for.
    viewer = await world.person("viewer")
    r = await viewer.post("/app/settings/keys", data={"name": "mole", "scope": "nonsense"})
    assert r.status_code == 403, r.text
    # No scope ticked, or an unknown one: nothing made, said on the page.
    for data, said in [
        ({"name": "none"}, "Give the key at least one scope"),
        ({"name": "odd", "scope": "apps:write"}, "Unknown scope 'apps:write'"),
    ]:
        r = await owner.post("/app/settings/keys", data=data)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/app/settings#keys"
        assert said in unquote(r.cookies["tidings_flash"]), r.cookies
    async with world.db.transaction(write=False) as session:
        names = (await session.execute(select(ApiKey.name))).scalars().all()
        assert sorted(names) == ["dynamo", "tests"]


def test_keys_made_before_scopes_get_the_defaults_and_sign_requests(database_url: str) -> None:
    async def add_old_key() -> None:
        db = Database.connect(database_url)
        try:
            async with db.transaction() as session:
                now = datetime.now(UTC)
                await session.execute(
                    text(
                        "INSERT INTO workspaces (id, name, timezone, created_at, updated_at) "
                        "VALUES ('ws_old', 'Old', 'UTC', :now, :now)"
                    ),
                    {"now": now},
                )
                await session.execute(
                    text(
                        "INSERT INTO api_keys (id, workspace_id, name, secret_encrypted, "
                        "created_at) VALUES ('key_old', 'ws_old', 'old', :sealed, :now)"
                    ),
                    {"sealed": b"sealed", "now": now},
                )
        finally:
            await db.dispose()

    async def read_key() -> tuple[str, list[str]]:
        db = Database.connect(database_url)
        try:
            async with db.transaction(write=False) as session:
                key = await session.get(ApiKey, "key_old")
                assert key is not None
                return key.signing.value, key.scopes
        finally:
            await db.dispose()

    migrate.downgrade(database_url, "0010")
    asyncio.run(add_old_key())
    migrate.upgrade(database_url)
    assert asyncio.run(read_key()) == ("request", DEFAULT)
