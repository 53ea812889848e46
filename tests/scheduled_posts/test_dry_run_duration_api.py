"""The dry run holds each video's length, read from its container over HTTP, against the
bounds of each target's platform for the post's type; on both databases."""

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulators.server import EmulatorServer
from tests.platforms.connectors import account_channel
from tests.scheduled_posts.test_dry_run_api import dry_run, rules
from tests.scheduled_posts.videos import MB, VirtualFile, media_host, mp4_file
from tests.world import World

FILES = {
    "30s.mp4": ("video/mp4", mp4_file(30, moov_first=True, media=2 * MB)),
    "100s.mp4": ("video/mp4", mp4_file(100, moov_first=False, media=50 * MB)),
    "2s.mp4": ("video/mp4", mp4_file(2, moov_first=False, media=100_000)),
    "6min.mp4": ("video/mp4", mp4_file(360, moov_first=True, media=1 * MB)),
    "raw.mp4": ("video/mp4", VirtualFile(b"not a movie at all", 1000)),
}


@pytest.fixture
def media() -> Iterator[tuple[str, Counter[str]]]:
    app, sent = media_host(FILES)
    with EmulatorServer(app) as server:
        yield server.url, sent


async def channels(world: World) -> dict[str, str]:
    return {
        name: await account_channel(world, name, f"{name}-account", f"{name}-token")
        for name in ("facebook", "instagram", "threads")
    }


def video_post(url: str, channel_ids: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "type": "POST",
        "media": url,
        "mediaType": "VIDEO",
        "channels": {cid: {"caption": "Watch this"} for cid in channel_ids},
    } | fields


async def test_a_reel_over_90_s_is_too_long_for_facebook_not_for_instagram(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, sent = media
    ids = await channels(world)
    body = video_post(f"{url}/100s.mp4", [ids["facebook"], ids["instagram"]], type="REEL")
    result = await dry_run(world, world.post_body(**body))
    assert rules(result) == [(ids["facebook"], "facebook.video_duration")]
    [problem] = result["problems"]
    assert problem["message"] == (
        f"channel {ids['facebook']}: {url}/100s.mp4 is 100 s long; facebook takes reels of "
        "3 s to 90 s"
    )
    assert sent["100s.mp4"] <= 1024  # of a 50 MB file whose movie box is at its end


async def test_stories_and_threads_have_their_own_bounds(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, _ = media
    ids = await channels(world)
    story = video_post(f"{url}/100s.mp4", [ids["instagram"], ids["facebook"]], type="STORY")
    result = await dry_run(world, world.post_body(**story))
    assert rules(result) == sorted(
        [
            (ids["instagram"], "instagram.video_duration"),
            (ids["facebook"], "facebook.video_duration"),
        ]
    )
    for problem in result["problems"]:
        platform = "instagram" if problem["channelId"] == ids["instagram"] else "facebook"
        assert problem["message"].endswith(
            f"100s.mp4 is 100 s long; {platform} takes video stories of 3 s to 60 s"
        )
    long_thread = video_post(f"{url}/6min.mp4", [ids["threads"], ids["instagram"]])
    result = await dry_run(world, world.post_body(**long_thread))
    assert rules(result) == [(ids["threads"], "threads.video_duration")]
    assert result["problems"][0]["message"].endswith(
        "6min.mp4 is 6 min long; threads takes videos of at most 5 min"
    )


async def test_too_short_fine_and_unknown_lengths(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, _ = media
    ids = await channels(world)
    short = video_post(f"{url}/2s.mp4", [ids["instagram"], ids["threads"]], type="REEL")
    # (Threads has no reels: its own rule says so; it has no lower bound on length.)
    result = await dry_run(world, world.post_body(**short))
    assert rules(result) == [
        (ids["instagram"], "instagram.video_duration"),
        (ids["threads"], "threads.post_type"),
    ]
    assert "2s.mp4 is 2 s long; instagram takes videos of 3 s to 15 min" in str(result)
    fine = video_post(f"{url}/30s.mp4", list(ids.values()), type="REEL")
    fine["channels"].pop(ids["threads"])
    assert await dry_run(world, world.post_body(**fine)) == {"valid": True, "problems": []}
    unknown = video_post(f"{url}/raw.mp4", [ids["facebook"]], type="REEL")
    assert await dry_run(world, world.post_body(**unknown)) == {"valid": True, "problems": []}


async def test_a_stored_post_is_checked_the_same(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, _ = media
    ids = await channels(world)
    body = world.post_body(**video_post(f"{url}/100s.mp4", [ids["facebook"]], type="REEL"))
    r = await world.api().post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    r = await world.api().get(f"/scheduled-posts/{r.json()['id']}/validation")
    assert r.status_code == 200, r.text
    assert [p["rule"] for p in r.json()["problems"]] == ["facebook.video_duration"]
