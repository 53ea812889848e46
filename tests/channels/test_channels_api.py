"""Channels over the API: who may add and change them, and what they must look like."""

import pytest
from sqlalchemy import select

from tests.world import World
from tidings.channels.models import Channel


async def test_api_key_adds_a_sandbox_channel_with_options(world: World) -> None:
    r = await world.api().post(
        "/channels",
        json={"platform": "sandbox", "name": "  Launch feed ", "options": {"fail_first": 2}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("ch_")
    assert (body["platform"], body["name"], body["status"], body["options"]) == (
        "sandbox",
        "Launch feed",
        "ACTIVE",
        {"fail_first": 2},
    )
    async with world.db.transaction() as session:
        stored = await session.get(Channel, body["id"])
        assert stored is not None
        assert stored.workspace_id == world.workspace_id
        assert stored.options == {"fail_first": 2}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"platform": "myspace", "name": "x"}, ["platform"]),
        ({"platform": "sandbox", "name": "   "}, ["name"]),
        ({"platform": "sandbox"}, ["name"]),
        ({"platform": "sandbox", "name": "x", "options": {"k": [1, 2]}}, ["options", "k"]),
        ({"platform": "sandbox", "name": "x", "colour": "red"}, ["colour"]),
    ],
)
async def test_malformed_channel_is_422_and_not_stored(
    world: World, body: dict[str, object], path: list[object]
) -> None:
    r = await world.api().post("/channels", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"][0]["path"][: len(path)] == path
    async with world.db.transaction() as session:
        ids = (await session.execute(select(Channel.id))).scalars().all()
    assert ids == [world.channel_id]


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
async def test_only_owners_admins_and_keys_manage_channels(world: World, role: str) -> None:
    person = await world.person(role)
    r = await person.post("/channels", json={"platform": "sandbox", "name": "Nope"})
    assert r.status_code == 403
    assert r.json() == {
        "message": f"role {role} cannot manage channels; owner or admin can",
    }
    r = await person.patch(f"/channels/{world.channel_id}", json={"status": "DISABLED"})
    assert r.status_code == 403
    async with world.db.transaction() as session:
        channel = await session.get(Channel, world.channel_id)
        assert channel is not None
        assert channel.status.value == "ACTIVE"


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_owners_and_admins_disable_rename_and_re_enable(world: World, role: str) -> None:
    person = await world.person(role)
    url = f"/channels/{world.channel_id}"
    r = await person.patch(url, json={"status": "DISABLED", "name": "Paused"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["name"]) == ("DISABLED", "Paused")
    r = await person.patch(url, json={"status": "ACTIVE", "options": {"latency_ms": 5}})
    assert (r.json()["status"], r.json()["options"]) == ("ACTIVE", {"latency_ms": 5})
    assert (await person.get(url)).json()["name"] == "Paused"


async def test_status_can_only_be_set_to_active_or_disabled(world: World) -> None:
    r = await world.api().patch(f"/channels/{world.channel_id}", json={"status": "NEEDS_RECONNECT"})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["status"]


async def test_listing_shows_every_channel_of_the_workspace(world: World) -> None:
    second = await world.add_channel("Second")
    r = await world.api().get("/channels")
    assert r.status_code == 200
    assert [(c["id"], c["name"]) for c in r.json()["data"]] == [
        (world.channel_id, "Demo"),
        (second, "Second"),
    ]


async def test_unknown_channel_is_404(world: World) -> None:
    r = await world.api().get("/channels/ch_missing")
    assert r.status_code == 404
    assert r.json() == {"message": "channel ch_missing not found"}


async def test_health_without_a_worker_is_503(world: World) -> None:
    r = await world.anonymous().get("/health")
    assert r.status_code == 503
    body = r.json()
    assert (body["status"], body["database"], body["workers"]) == ("unavailable", "ok", 0)
    assert body["problems"][0].startswith("no worker has a fresh heartbeat")


async def test_a_workspace_has_at_most_the_configured_channels(world: World) -> None:
    settings = world.state.settings
    world.state.settings = settings.model_copy(update={"max_channels_per_workspace": 2})
    try:
        api = world.api()
        r = await api.post("/channels", json={"platform": "sandbox", "name": "Second"})
        assert r.status_code == 201, r.text
        r = await api.post("/channels", json={"platform": "sandbox", "name": "Third"})
        assert r.status_code == 409
        assert r.json() == {
            "message": "the workspace has reached its limit of 2 channels "
            "(TIDINGS_MAX_CHANNELS_PER_WORKSPACE)"
        }
        names = [c["name"] for c in (await api.get("/channels")).json()["data"]]
        assert names == ["Demo", "Second"]
    finally:
        world.state.settings = settings
