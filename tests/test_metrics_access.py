"""/metrics needs credentials: the metrics token (Bearer, for a scraper), an owner or admin
signed in, or an API key with `metrics:read`; anyone else is refused, and nothing is
rendered for them."""

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from tests.world import World, signature_headers
from tidings.app import create_app
from tidings.config import Settings

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def settings(database_url: str, settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})


async def test_metrics_without_credentials_is_401(world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = await world.anonymous().get("/metrics", headers=headers)
        assert r.status_code == 401
        assert set(r.json()) == {"message"}
        assert r.json()["message"]
        assert "tidings_" not in r.text


async def test_metrics_with_the_token_is_200(world: World) -> None:
    r = await world.anonymous().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert "tidings_tasks_due 0.0" in r.text.splitlines()


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_metrics_for_an_owner_or_admin_is_200(world: World, role: str) -> None:
    r = await (await world.person(role)).get("/metrics")
    assert r.status_code == 200, r.text
    assert "tidings_tasks_due 0.0" in r.text.splitlines()


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
async def test_metrics_for_anyone_else_signed_in_is_403(world: World, role: str) -> None:
    r = await (await world.person(role)).get("/metrics")
    assert r.status_code == 403
    assert r.json() == {
        "message": "reading metrics needs an owner or admin, an API key with metrics:read, "
        "or the metrics token"
    }


async def test_metrics_for_an_api_key_is_200_signed_or_bearer(world: World) -> None:
    bearer = await world.api().get("/metrics")
    assert bearer.status_code == 200, bearer.text
    signed = await world.anonymous().get(
        "/metrics", headers=signature_headers(world.key_id, world.key_secret, "GET", "/metrics")
    )
    assert signed.status_code == 200, signed.text


async def test_metrics_for_a_key_without_metrics_read_is_403(world: World) -> None:
    """New keys get posts and channels: reading the instance's metrics is asked for."""
    owner = await world.person("owner")
    made = await owner.post("/api-keys", json={"name": "default scopes"})
    assert made.status_code == 201, made.text
    assert "metrics:read" not in made.json()["scopes"]
    r = await world.bearer(made.json()["token"]).get("/metrics")
    assert r.status_code == 403
    assert "metrics:read" in r.json()["message"]
    assert "tidings_" not in r.text


async def test_without_a_configured_token_no_bearer_is_the_token(
    database_url: str, settings: Settings
) -> None:
    app: FastAPI = create_app(settings.model_copy(update={"metrics_token": None}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 401
    assert set(r.json()) == {"message"}
