"""Free-form parts of a post are bounded: platform options in size and depth, the channels a
post adds up to over PATCHes; a refusal is a 422 at the field's path and stores nothing; on
both databases."""

from typing import Any

from sqlalchemy import func, select

from tests.world import World
from tidings.channels.models import Channel
from tidings.scheduled_posts.models import ScheduledPost

DEEP = {"a": {"b": {"c": {"d": {"e": 1}}}}}  # five levels
DEEPEST_ALLOWED = {"a": {"b": {"c": [1, 2]}}}  # four levels


def big(size: int) -> dict[str, Any]:
    """Options that are exactly `size` bytes as compact JSON."""
    return {"x": "y" * (size - len('{"x":""}'))}


async def post_count(world: World) -> int:
    async with world.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(ScheduledPost)) or 0)


async def test_options_at_the_bounds_are_stored(world: World) -> None:
    api = world.api()
    for options in (big(16 * 1024), DEEPEST_ALLOWED):
        body = world.post_body(channels={world.channel_id: {"caption": "c", "options": options}})
        r = await api.post("/scheduled-posts", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["mediumsData"][world.channel_id]["options"] == options


async def test_options_too_large_are_422_and_nothing_is_stored(world: World) -> None:
    api = world.api()
    body = world.post_body(
        channels={world.channel_id: {"caption": "c", "options": big(16 * 1024 + 1)}}
    )
    r = await api.post("/scheduled-posts", json=body)
    assert r.status_code == 422
    assert r.json() == {
        "error": [
            {
                "message": "must be at most 16384 bytes as JSON (this is 16385)",
                "path": ["channels", world.channel_id, "options"],
                "type": "json_too_large",
                "context": {"max_bytes": 16384, "size": 16385},
            }
        ]
    }
    assert await post_count(world) == 0


async def test_options_too_deep_are_422_and_nothing_is_stored(world: World) -> None:
    api = world.api()
    body = world.post_body(channels={world.channel_id: {"caption": "c", "options": DEEP}})
    r = await api.post("/scheduled-posts", json=body)
    assert r.status_code == 422
    assert r.json() == {
        "error": [
            {
                "message": "must nest at most 4 levels deep",
                "path": ["channels", world.channel_id, "options"],
                "type": "json_too_deep",
                "context": {"max_depth": 4},
            }
        ]
    }
    assert await post_count(world) == 0


async def test_a_patch_with_options_too_large_changes_nothing(world: World) -> None:
    api = world.api()
    r = await api.post("/scheduled-posts", json=world.post_body())
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    before = await world.snapshot(post_id)
    for options in (big(16 * 1024 + 1), DEEP):
        r = await api.patch(
            f"/scheduled-posts/{post_id}",
            json={"channels": {world.channel_id: {"options": options}}},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"][0]["path"] == ["channels", world.channel_id, "options"]
    assert await world.snapshot(post_id) == before


async def test_patches_cannot_add_up_to_more_than_50_channels(world: World) -> None:
    api = world.api()
    ids = [await world.add_channel(f"c{i}") for i in range(50)]  # 51 with the world's
    first = {cid: {"caption": "c"} for cid in ids[:30]}
    r = await api.post("/scheduled-posts", json={"channels": first})
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    before = await world.snapshot(post_id)
    more = {cid: {"caption": "c"} for cid in [*ids[30:], world.channel_id]}
    r = await api.patch(f"/scheduled-posts/{post_id}", json={"channels": more})
    assert r.status_code == 422
    assert r.json() == {
        "error": [
            {
                "message": "a post has at most 50 channels; remove some (set them to null) first",
                "path": ["channels"],
                "type": "too_long",
                "context": {},
            }
        ]
    }
    assert await world.snapshot(post_id) == before
    # Removing one while adding one is fine.
    more[ids[0]] = None  # type: ignore[assignment]
    r = await api.patch(f"/scheduled-posts/{post_id}", json={"channels": more})
    assert r.status_code == 200, r.text
    assert len(r.json()["mediumsData"]) == 50


async def test_channel_options_too_large_are_422_and_not_stored(world: World) -> None:
    api = world.api()
    r = await api.post(
        "/channels", json={"platform": "sandbox", "name": "Big", "options": big(16 * 1024 + 1)}
    )
    assert r.status_code == 422
    assert r.json()["error"] == [
        {
            "message": "must be at most 16384 bytes as JSON (this is 16385)",
            "path": ["options"],
            "type": "json_too_large",
            "context": {"max_bytes": 16384, "size": 16385},
        }
    ]
    r = await api.patch(f"/channels/{world.channel_id}", json={"options": big(16 * 1024 + 1)})
    assert r.status_code == 422
    assert r.json()["error"][0]["type"] == "json_too_large"
    async with world.db.transaction() as session:
        channels = (await session.execute(select(Channel))).scalars().all()
        assert [(c.name, c.options) for c in channels] == [("Demo", {})]


async def test_long_workspace_id_or_channel_filter_is_422(world: World) -> None:
    r = await world.anonymous().post(
        "/auth/login",
        json={"email": world.emails["owner"], "password": "x", "workspaceId": "w" * 41},
    )
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["workspaceId"]
    r = await world.api().get("/scheduled-posts", params={"channelId": "c" * 41})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["query", "channelId"]
