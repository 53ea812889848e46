"""The dry run fetches only through the guarded fetcher, and no workspace's dry runs can
stall another's: forbidden addresses, who may dry-run, the per-workspace rate, the process's
bound on fetching at once, the dry run's deadline, /health under a full pool, and 32 drip
dry runs from one workspace while another lists its channels and publishes on time; on both
databases."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from tests.emulators.drip import DripServer
from tests.emulators.server import EmulatorServer, free_port
from tests.publishing.test_engine import FAST
from tests.world import World
from tidings.config import Settings
from tidings.publishing.worker import Worker


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test changes (by parametrizing this fixture)."""
    return {}


@pytest.fixture
def settings(settings: Settings, overrides: dict[str, Any]) -> Settings:
    return settings.model_copy(update=overrides)


def with_settings(**values: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("overrides", [values], ids=["settings"])


@pytest.fixture
def media() -> Iterator[tuple[str, Counter[str]]]:
    """A host of one small JPEG that counts the requests it gets."""
    app = FastAPI()
    received: Counter[str] = Counter()

    @app.api_route("/{name}", methods=["GET", "HEAD"])
    async def serve(name: str, request: Request) -> Response:
        received[name] += 1
        return Response(b"x" * 2_000, media_type="image/jpeg")

    with EmulatorServer(app) as server:
        yield server.url, received


@pytest.fixture
def drip() -> Iterator[DripServer]:
    with DripServer(every=0.5) as server:
        yield server


async def dry_run(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/scheduled-posts/validate", json=body)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        await asyncio.sleep(0.02)


def problem(rule: str, message: str) -> dict[str, Any]:
    return {"channelId": None, "rule": rule, "message": message}


@with_settings(fetch_allowed_networks="")
async def test_a_forbidden_address_is_a_problem_and_never_asked(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, received = media
    open_port, closed_port = int(url.rsplit(":", 1)[1]), free_port()
    answers = {}
    for port in (open_port, closed_port):
        r = await dry_run(world.api(), world.post_body(media=f"http://127.0.0.1:{port}/a.jpg"))
        assert r.status_code == 200, r.text
        answers[port] = r.json()
    for port, answer in answers.items():
        assert answer == {
            "valid": False,
            "problems": [
                problem(
                    "media.forbidden_address",
                    f"media http://127.0.0.1:{port}/a.jpg is not fetched: "
                    "its host is a loopback address",
                )
            ],
        }
    for url, reason in [
        ("http://2130706433/a.jpg", "its host is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "its host is a link-local address"),
        (
            "http://[::ffff:10.0.0.1]/a.jpg",
            "its host is a private address (inside an IPv6 address)",
        ),
        ("http://8.8.8.8:8080/a.jpg", "port 8080 is not fetched (only 80 and 443)"),
    ]:
        r = await dry_run(world.api(), world.post_body(media=url))
        assert r.status_code == 200, r.text
        expected = problem("media.forbidden_address", f"media {url} is not fetched: {reason}")
        assert r.json() == {"valid": False, "problems": [expected]}
    assert sum(received.values()) == 0


async def test_viewers_and_reviewers_cannot_dry_run(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, received = media
    body = world.post_body(media=f"{url}/a.jpg")
    r = await world.api().post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    for role in ("viewer", "reviewer"):
        person = await world.person(role)
        message = (
            f"role {role} cannot dry-run posts (a dry run fetches their media); "
            "role owner, admin, editor can"
        )
        r = await dry_run(person, body)
        assert (r.status_code, r.json()) == (403, {"message": message})
        r = await person.get(f"/scheduled-posts/{post_id}/validation")
        assert (r.status_code, r.json()) == (403, {"message": message})
    assert sum(received.values()) == 0
    editor = await world.person("editor")
    r = await dry_run(editor, body)
    assert (r.status_code, r.json()) == (200, {"valid": True, "problems": []})


@with_settings(dry_runs_per_minute=2)
async def test_dry_runs_are_limited_per_workspace(
    world: World, media: tuple[str, Counter[str]]
) -> None:
    url, received = media
    body = world.post_body(media=f"{url}/a.jpg")
    for _ in range(2):
        r = await dry_run(world.api(), body)
        assert (r.status_code, r.json()) == (200, {"valid": True, "problems": []})
    r = await dry_run(world.api(), body)
    assert r.status_code == 429
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert r.json() == {
        "message": f"too many dry runs: at most 2 per minute; try again in {wait} s"
    }
    assert received["a.jpg"] == 2
    async with World.build(world.app, name="Other") as other:
        r = await dry_run(other.api(), other.post_body(media=f"{url}/a.jpg"))
        assert (r.status_code, r.json()) == (200, {"valid": True, "problems": []})


@with_settings(fetch_max_concurrent=1, fetch_deadline_seconds=3)
async def test_a_process_fetching_all_it_may_answers_503_at_once(
    world: World, drip: DripServer, media: tuple[str, Counter[str]]
) -> None:
    slow = asyncio.create_task(dry_run(world.api(), world.post_body(media=f"{drip.url}/a.jpg")))
    await until(lambda: drip.requests == 1)
    started = time.monotonic()
    r = await dry_run(world.api(), world.post_body(media=f"{media[0]}/a.jpg"))
    # Refused, not queued: the answer comes while the slow one still holds the only slot
    # (and well within its deadline, with room for a collector's pause in a long run).
    assert not slow.done()
    assert time.monotonic() - started < 1.5
    assert (r.status_code, r.headers["Retry-After"]) == (503, "1")
    assert r.json() == {"message": "dry runs are busy: 1 already in progress; try again soon"}
    r = await slow
    assert r.status_code == 200, r.text
    assert r.json() == {
        "valid": False,
        "problems": [
            problem(
                "media.unreachable",
                f"media {drip.url}/a.jpg cannot be fetched "
                "(FetchDeadlineExceeded: no complete answer within 3 s)",
            )
        ],
    }
    r = await dry_run(world.api(), world.post_body(media=f"{media[0]}/a.jpg"))
    assert (r.status_code, r.json()) == (200, {"valid": True, "problems": []})


@with_settings(dry_run_deadline_seconds=0.5)
async def test_a_dry_run_has_a_deadline_of_its_own(world: World, drip: DripServer) -> None:
    assert (await world.api().get("/channels")).status_code == 200  # connections made
    started = time.monotonic()
    r = await dry_run(world.api(), world.post_body(media=f"{drip.url}/a.jpg"))
    # Not the drip's 500 s, nor the fetch's own 10 s: the dry run's 0.5 s (and some slack
    # for a busy machine).
    assert time.monotonic() - started < 2.0
    assert (r.status_code, r.headers["Retry-After"]) == (503, "5")
    assert r.json() == {"message": "the dry run took longer than 0.5 s; try again later"}


@with_settings(health_timeout_seconds=0.5)
async def test_health_answers_503_in_time_when_no_connection_is_free(world: World) -> None:
    pool: Any = world.db.engine.pool
    held = [await world.db.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        started = time.monotonic()
        r = await world.anonymous().get("/health")
        assert time.monotonic() - started < 1.5
    finally:
        for connection in held:
            await connection.close()
    assert r.status_code == 503
    assert r.json() == {
        "status": "unavailable",
        "database": "no answer within 0.5 s (connections exhausted or locked)",
    }


@with_settings(fetch_max_concurrent=64, dry_runs_per_minute=64, fetch_deadline_seconds=4)
async def test_drip_dry_runs_of_one_workspace_stall_nothing_of_another(
    world: World, drip: DripServer, caplog: pytest.LogCaptureFixture
) -> None:
    """32 dry runs from B, each on a server that drips a byte every 0.5 s, are all in flight
    (more than the database has connections) while A lists its channels and a post of A's,
    due in the middle, is published: A's answers all come within 1 s, the post on time."""
    stop = asyncio.Event()
    publisher = asyncio.create_task(Worker(world.db, config=FAST, name="w-iso").run(stop))
    due = datetime.now(UTC) + timedelta(seconds=2.5)
    post_id = await world.approved_for(due)
    try:
        async with World.build(world.app, name="B") as b:
            body = b.post_body(media=f"{drip.url}/a.jpg")
            flood = [asyncio.create_task(dry_run(b.api(), body)) for _ in range(32)]
            await until(lambda: drip.requests == 32)
            timings = []
            client = world.api()
            while not all(task.done() for task in flood):
                started = time.monotonic()
                r = await client.get("/channels")
                timings.append(time.monotonic() - started)
                assert r.status_code == 200, r.text
                assert [c["id"] for c in r.json()["data"]] == [world.channel_id]
                await asyncio.sleep(0.1)
            answers = [await task for task in flood]
        assert len(timings) >= 20
        assert max(timings) < 1.0
        unreachable = problem(
            "media.unreachable",
            f"media {drip.url}/a.jpg cannot be fetched "
            "(FetchDeadlineExceeded: no complete answer within 4 s)",
        )
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"valid": False, "problems": [unreachable]}
        for _ in range(100):
            r = await world.api().get(f"/scheduled-posts/{post_id}")
            if r.json()["status"] == "PUBLISHED":
                break
            await asyncio.sleep(0.05)
        medium = r.json()["mediumsData"][world.channel_id]
        assert (r.json()["status"], medium["status"]) == ("PUBLISHED", "PUBLISHED")
        published = datetime.fromisoformat(medium["publishedAt"])
        assert timedelta(0) <= published - due < timedelta(seconds=1)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        stop.set()
        await publisher
