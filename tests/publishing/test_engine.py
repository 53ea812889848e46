"""The worker end to end on both databases: approve, dispatch, publish through the sandbox,
and check the engine's state against the sandbox network's own record."""

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.world import World
from tidings.db.engine import Database
from tidings.publishing.models import PublishAttempt, Task, TaskKind, TaskStatus
from tidings.publishing.states import RetryPolicy
from tidings.publishing.worker import EngineConfig, Worker
from tidings.scheduled_posts.models import Target

FAST = EngineConfig(
    retry=RetryPolicy(
        max_attempts=4, base_delay=timedelta(milliseconds=10), max_delay=timedelta(milliseconds=40)
    ),
    poll_interval=timedelta(milliseconds=50),
)


def worker(world: World, **kw: Any) -> Worker:
    return Worker(world.db, config=kw.pop("config", FAST), name=kw.pop("name", "w-test"), **kw)


async def feed(world: World, channel_id: str) -> list[dict[str, Any]]:
    r = await world.api().get(f"/sandbox/channels/{channel_id}/posts")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def publish_now(world: World, channels: dict[str, dict[str, Any]]) -> str:
    """Create a post for `channels`, submit it, and have a reviewer publish it now."""
    r = await world.api().post(
        "/scheduled-posts",
        json=world.post_body(status="WAITING_FOR_APPROVAL", channels=channels),
    )
    assert r.status_code == 201, r.text
    post_id: str = r.json()["id"]
    reviewer = await world.person("reviewer")
    r = await reviewer.post(f"/scheduled-posts/{post_id}/publish")
    assert r.status_code == 200, r.text
    return post_id


async def document(world: World, post_id: str) -> dict[str, Any]:
    r = await world.api().get(f"/scheduled-posts/{post_id}")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_a_post_is_published_to_every_channel(world: World) -> None:
    second = await world.add_channel("Second")
    post_id = await publish_now(
        world,
        {world.channel_id: {"caption": "One"}, second: {"caption": "Two"}},
    )
    await worker(world).run_until_idle()
    doc = await document(world, post_id)
    assert doc["status"] == "PUBLISHED"
    for channel_id, caption in ((world.channel_id, "One"), (second, "Two")):
        [live] = await feed(world, channel_id)
        assert live["caption"] == caption
        medium = doc["mediumsData"][channel_id]
        assert medium["status"] == "PUBLISHED"
        assert medium["externalPostId"] == live["id"]
        assert medium["attemptCount"] == 1
        assert medium["failedToPublish"] is False
        assert medium["publishedAt"] is not None


async def test_mixed_outcomes_make_a_partially_published_post(world: World) -> None:
    refused = await world.add_channel("Banned", permanent_error="ACCOUNT_BANNED")
    post_id = await publish_now(
        world, {world.channel_id: {"caption": "ok"}, refused: {"caption": "no"}}
    )
    await worker(world).run_until_idle()
    doc = await document(world, post_id)
    assert doc["status"] == "PARTIALLY_PUBLISHED"
    bad = doc["mediumsData"][refused]
    assert (bad["status"], bad["errorCode"], bad["failedToPublish"]) == (
        "FAILED",
        "ACCOUNT_BANNED",
        True,
    )
    assert await feed(world, refused) == []


async def test_all_failing_makes_a_failed_post(world: World) -> None:
    refused = await world.add_channel("Banned", permanent_error="NOPE")
    post_id = await publish_now(world, {refused: {"caption": "no"}})
    await worker(world).run_until_idle()
    assert (await document(world, post_id))["status"] == "FAILED"


async def test_transient_errors_are_retried_until_published(world: World) -> None:
    flaky = await world.add_channel("Flaky", fail_first=2)
    post_id = await publish_now(world, {flaky: {"caption": "eventually"}})
    await worker(world).run_until_idle()
    medium = (await document(world, post_id))["mediumsData"][flaky]
    assert (medium["status"], medium["attemptCount"]) == ("PUBLISHED", 3)
    assert len(await feed(world, flaky)) == 1
    async with world.db.transaction() as session:
        attempts = (
            await session.execute(
                select(PublishAttempt.outcome, PublishAttempt.error_code).order_by(
                    PublishAttempt.id
                )
            )
        ).all()
    assert [(a.value, c) for a, c in attempts] == [
        ("FAILED", "SANDBOX_UNAVAILABLE"),
        ("FAILED", "SANDBOX_UNAVAILABLE"),
        ("PUBLISHED", None),
    ]


async def test_transient_errors_give_up_after_the_bounded_attempts(world: World) -> None:
    down = await world.add_channel("Down", fail_first=99)
    post_id = await publish_now(world, {down: {"caption": "never"}})
    await worker(world).run_until_idle()
    medium = (await document(world, post_id))["mediumsData"][down]
    assert (medium["status"], medium["attemptCount"], medium["errorCode"]) == (
        "FAILED",
        4,
        "SANDBOX_UNAVAILABLE",
    )
    assert "gave up after 4 attempts" in medium["errorMessage"]


async def test_rate_limits_wait_for_the_reset(world: World) -> None:
    limited = await world.add_channel("Limited", rate_limit_first=1, retry_after_s=1)
    post_id = await publish_now(world, {limited: {"caption": "later"}})
    started = datetime.now(UTC)
    await worker(world).run_until_idle()
    [live] = await feed(world, limited)
    assert datetime.fromisoformat(live["publishedAt"]) >= started + timedelta(seconds=1)
    assert (await document(world, post_id))["status"] == "PUBLISHED"


async def test_auth_error_is_retried_once_after_a_refresh(world: World) -> None:
    expired = await world.add_channel("Expired", auth_expired_first=1)
    post_id = await publish_now(world, {expired: {"caption": "again"}})
    await worker(world).run_until_idle()
    assert (await document(world, post_id))["mediumsData"][expired]["status"] == "PUBLISHED"


async def test_auth_error_after_a_refresh_needs_reconnecting(world: World) -> None:
    expired = await world.add_channel("Expired", auth_expired_first=5)
    post_id = await publish_now(world, {expired: {"caption": "no"}})
    await worker(world).run_until_idle()
    medium = (await document(world, post_id))["mediumsData"][expired]
    assert (medium["status"], medium["errorCode"]) == ("FAILED", "SANDBOX_AUTH_EXPIRED")
    channel = (await world.api().get(f"/channels/{expired}")).json()
    assert channel["status"] == "NEEDS_RECONNECT"


async def test_a_lost_answer_is_reconciled_not_posted_twice(world: World) -> None:
    trap = await world.add_channel("Trap", accept_then_timeout=1)
    post_id = await publish_now(world, {trap: {"caption": "once"}})
    await worker(world).run_until_idle()
    [live] = await feed(world, trap)
    medium = (await document(world, post_id))["mediumsData"][trap]
    assert (medium["status"], medium["externalPostId"]) == ("PUBLISHED", live["id"])


async def test_a_lost_answer_that_cannot_be_looked_up_is_unknown(world: World) -> None:
    blind = await world.add_channel("Blind", accept_then_timeout=1, no_lookup=1)
    post_id = await publish_now(world, {blind: {"caption": "who knows"}})
    await worker(world).run_until_idle()
    doc = await document(world, post_id)
    assert doc["mediumsData"][blind]["status"] == "UNKNOWN"
    assert doc["status"] == "PUBLISHING"  # not final: a person must decide
    assert len(await feed(world, blind)) == 1  # it did go out, and is not sent again


async def test_a_worker_that_died_mid_call_is_reconciled_by_the_next(world: World) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "crash"}})
    first = worker(world, name="w-dies")
    # The fan-out, then the call goes out; simulate a death right after the network
    # accepted the post: the target stays PUBLISHING with an IN_FLIGHT attempt.
    [prepared] = (await first._dispatch(10)).calls
    from tidings.platforms.base import PlatformContext
    from tidings.platforms.sandbox import SandboxPlatform

    await SandboxPlatform().publish(PlatformContext(db=world.db), prepared.request)
    async with world.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.id == prepared.task.id)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    await worker(world, name="w-next").run_until_idle()
    [live] = await feed(world, world.channel_id)
    doc = await document(world, post_id)
    assert doc["status"] == "PUBLISHED"
    assert doc["mediumsData"][world.channel_id]["externalPostId"] == live["id"]


async def test_first_comment_is_posted_after_publishing(world: World) -> None:
    post_id = await publish_now(
        world, {world.channel_id: {"caption": "with comment", "firstComment": "#launch"}}
    )
    await worker(world).run_until_idle()
    [live] = await feed(world, world.channel_id)
    assert live["firstComment"] == "#launch"
    async with world.db.transaction() as session:
        target = (
            await session.execute(select(Target).where(Target.post_id == post_id))
        ).scalar_one()
        assert target.first_comment_status == "PUBLISHED"


async def test_a_post_due_too_long_ago_is_missed_not_published(world: World) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "late"}})
    async with world.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.post_id == post_id, Task.kind == TaskKind.PUBLISH_POST)
            .values(run_at=datetime.now(UTC) - timedelta(hours=25))
        )
    await worker(world).run_until_idle()
    doc = await document(world, post_id)
    assert doc["status"] == "FAILED"
    assert doc["mediumsData"][world.channel_id]["errorCode"] == "MISSED"
    assert await feed(world, world.channel_id) == []


async def test_a_post_approved_for_a_time_publishes_at_that_time(world: World) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    await world.approved_for(due)
    await worker(world).run_until_idle()
    [live] = await feed(world, world.channel_id)
    published = datetime.fromisoformat(live["publishedAt"])
    assert due <= published < due + timedelta(seconds=1)


async def test_a_reverted_post_is_not_published(world: World) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "changed my mind"}})
    reviewer = await world.person("reviewer")
    r = await reviewer.post(f"/scheduled-posts/{post_id}/revert")
    assert r.status_code == 200
    await worker(world).run_until_idle()
    assert await feed(world, world.channel_id) == []
    assert (await document(world, post_id))["status"] == "DRAFT"


async def test_a_post_that_started_publishing_cannot_be_reverted(world: World) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "going"}})
    w = worker(world)
    [_prepared] = (await w._dispatch(10)).calls  # fanned out; the call is about to go out
    reviewer = await world.person("reviewer")
    r: httpx.Response = await reviewer.post(f"/scheduled-posts/{post_id}/revert")
    assert r.status_code == 409
    assert "PUBLISHING" in r.json()["message"]


@pytest.mark.parametrize("status", [TaskStatus.DONE])
async def test_every_task_is_closed_after_publishing(world: World, status: TaskStatus) -> None:
    post_id = await publish_now(world, {world.channel_id: {"caption": "tidy"}})
    await worker(world).run_until_idle()
    async with world.db.transaction() as session:
        tasks = (await session.execute(select(Task).where(Task.post_id == post_id))).scalars()
        assert {(t.kind, t.status, t.locked_by) for t in tasks} == {
            (TaskKind.PUBLISH_POST, status, None),
            (TaskKind.PUBLISH_TARGET, status, None),
        }


async def test_the_attempt_ledger_is_readable(world: World) -> None:
    flaky = await world.add_channel("Flaky", fail_first=1)
    post_id = await publish_now(world, {flaky: {"caption": "twice", "firstComment": "hi"}})
    await worker(world).run_until_idle()
    r = await world.api().get(f"/scheduled-posts/{post_id}/attempts")
    assert r.status_code == 200
    rows = [
        (a["operation"], a["number"], a["outcome"], a["errorCode"], a["worker"])
        for a in r.json()["data"]
    ]
    assert rows == [
        ("publish", 1, "FAILED", "SANDBOX_UNAVAILABLE", "w-test"),
        ("publish", 2, "PUBLISHED", None, "w-test"),
        # fail_first counts per key on the network, so the comment fails once too.
        ("comment", 1, "FAILED", "SANDBOX_UNAVAILABLE", "w-test"),
        ("comment", 2, "PUBLISHED", None, "w-test"),
    ]
    assert all(a["endedAt"] >= a["startedAt"] for a in r.json()["data"])
    async with World.build(world.app, name="Other") as other:
        assert (await other.api().get(f"/scheduled-posts/{post_id}/attempts")).status_code == 404


async def test_a_stopped_worker_finishes_its_calls_and_holds_no_lease(world: World) -> None:
    slow = await world.add_channel("Slow", latency_ms=400)
    post_id = await publish_now(world, {slow: {"caption": "interrupted"}})
    config = EngineConfig(poll_interval=timedelta(milliseconds=20), gc_pause=timedelta(seconds=10))
    w = worker(world, config=config)
    stop = asyncio.Event()
    running = asyncio.create_task(w.run(stop))
    for _ in range(300):
        async with world.db.transaction(write=False) as session:
            target = (
                await session.execute(select(Target).where(Target.post_id == post_id))
            ).scalar_one()
        if target.status is not None and target.status.value == "PUBLISHING":
            break
        await asyncio.sleep(0.01)
    stop.set()  # mid-call
    await running
    assert gc.isenabled()  # the collector's pause during the burst is over
    assert (await document(world, post_id))["status"] == "PUBLISHED"
    assert len(await feed(world, slow)) == 1
    async with world.db.transaction(write=False) as session:
        tasks = (await session.execute(select(Task).where(Task.post_id == post_id))).scalars()
        assert {(t.status, t.locked_by) for t in tasks} == {(TaskStatus.DONE, None)}


async def unknown_post(world: World) -> tuple[str, str]:
    blind = await world.add_channel("Blind", accept_then_timeout=1, no_lookup=1)
    post_id = await publish_now(world, {blind: {"caption": "who knows", "firstComment": "c"}})
    await worker(world).run_until_idle()
    assert (await document(world, post_id))["mediumsData"][blind]["status"] == "UNKNOWN"
    return post_id, blind


async def test_a_person_resolves_an_unknown_target_as_published(world: World) -> None:
    post_id, blind = await unknown_post(world)
    [live] = await feed(world, blind)
    reviewer = await world.person("reviewer")
    r = await reviewer.post(
        f"/scheduled-posts/{post_id}/targets/{blind}/resolve",
        json={"outcome": "PUBLISHED", "externalPostId": live["id"]},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "PUBLISHED"
    assert doc["mediumsData"][blind]["externalPostId"] == live["id"]
    await worker(world).run_until_idle()  # its first comment follows
    assert (await feed(world, blind))[0]["firstComment"] == "c"
    assert len(await feed(world, blind)) == 1


async def test_a_person_resolves_an_unknown_target_by_retrying(world: World) -> None:
    post_id, blind = await unknown_post(world)
    reviewer = await world.person("reviewer")
    r = await reviewer.post(
        f"/scheduled-posts/{post_id}/targets/{blind}/resolve", json={"outcome": "RETRY"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["mediumsData"][blind]["status"] == "PENDING"
    await worker(world).run_until_idle()
    doc = await document(world, post_id)
    assert doc["status"] == "PUBLISHED"
    assert len(await feed(world, blind)) == 2  # the person chose to publish it again


async def test_resolving_is_for_people_and_unknown_targets_only(world: World) -> None:
    post_id, blind = await unknown_post(world)
    url = f"/scheduled-posts/{post_id}/targets/{blind}/resolve"
    r = await world.api().post(url, json={"outcome": "RETRY"})
    assert r.status_code == 403
    assert "human decision" in r.json()["message"]
    editor = await world.person("editor")
    assert (await editor.post(url, json={"outcome": "RETRY"})).status_code == 403
    reviewer = await world.person("reviewer")
    r = await reviewer.post(url, json={"outcome": "MAYBE"})
    assert r.status_code == 422
    assert r.json()["error"][0]["path"] == ["outcome"]
    assert (await reviewer.post(url, json={"outcome": "PUBLISHED"})).status_code == 200
    r = await reviewer.post(url, json={"outcome": "RETRY"})
    assert r.status_code == 409
    assert r.json()["message"] == (
        "cannot resolve a post in status PUBLISHED; allowed from: PUBLISHING"
    )


async def test_only_an_unknown_target_is_resolved_by_hand(world: World) -> None:
    blind = await world.add_channel("Blind", accept_then_timeout=1, no_lookup=1)
    post_id = await publish_now(
        world, {blind: {"caption": "?"}, world.channel_id: {"caption": "fine"}}
    )
    await worker(world).run_until_idle()
    reviewer = await world.person("reviewer")
    base = f"/scheduled-posts/{post_id}/targets"
    r = await reviewer.post(f"{base}/{world.channel_id}/resolve", json={"outcome": "RETRY"})
    assert r.status_code == 409
    assert r.json()["message"] == (
        f"channel {world.channel_id} is PUBLISHED; only an UNKNOWN target is resolved by hand"
    )
    r = await reviewer.post(f"{base}/ch_nope/resolve", json={"outcome": "RETRY"})
    assert r.status_code == 404
    assert (await document(world, post_id))["status"] == "PUBLISHING"


async def test_health_follows_the_workers_and_the_lag(world: World) -> None:
    w = worker(world, config=EngineConfig(poll_interval=timedelta(milliseconds=20)))
    stop = asyncio.Event()
    running = asyncio.create_task(w.run(stop))
    try:
        for _ in range(100):
            r = await world.anonymous().get("/health")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.02)
        body = r.json()
        assert (r.status_code, body["workers"], body["tasksDue"]) == (200, 1, 0)
        assert body["heartbeatAgeSeconds"] < 5
    finally:
        stop.set()
        await running
    # The worker stopped and removed its beat; a task two minutes overdue is reported too.
    post_id = await publish_now(world, {world.channel_id: {"caption": "stuck"}})
    async with world.db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.post_id == post_id)
            .values(run_at=datetime.now(UTC) - timedelta(minutes=2))
        )
    r = await world.anonymous().get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["tasksDue"] == 1
    assert 119 < body["oldestOverdueSeconds"] < 200
    assert any(p.startswith("due work has waited") for p in body["problems"])


async def test_metrics_count_what_was_published_and_the_lag(world: World) -> None:
    refused = await world.add_channel("Banned", permanent_error="NO")
    await publish_now(world, {world.channel_id: {"caption": "a"}, refused: {"caption": "b"}})
    await worker(world, metrics=world.state.metrics).run_until_idle()
    r = await (await world.person("owner")).get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = set(r.text.splitlines())
    for expected in (
        "tidings_tasks_claimed_total 3.0",  # the post's task and two targets
        "tidings_targets_published_total 1.0",
        "tidings_targets_failed_total 1.0",
        "tidings_dispatch_lag_seconds_count 2.0",
        'tidings_targets{status="PUBLISHED"} 1.0',
        'tidings_targets{status="FAILED"} 1.0',
        "tidings_tasks_due 0.0",
    ):
        assert expected in lines, expected


async def test_a_sleeping_worker_is_woken_by_a_new_task(world: World, database_url: str) -> None:
    """PostgreSQL: another process's commit wakes it (LISTEN/NOTIFY), here through a separate
    engine. SQLite (one process): the approving request wakes it directly."""
    slow_poll = EngineConfig(poll_interval=timedelta(seconds=30))
    other_process = Database.connect(database_url)
    w = Worker(other_process, config=slow_poll, name="w-asleep")
    if world.db.is_sqlite:
        world.state.wakers.append(w.wake)
    stop = asyncio.Event()
    running = asyncio.create_task(w.run(stop))
    try:
        await asyncio.sleep(0.5)  # it has looked, found nothing due, and gone to sleep
        started = datetime.now(UTC)
        await publish_now(world, {world.channel_id: {"caption": "wake up"}})
        for _ in range(100):
            if await feed(world, world.channel_id):
                break
            await asyncio.sleep(0.05)
        [live] = await feed(world, world.channel_id)
        assert datetime.fromisoformat(live["publishedAt"]) - started < timedelta(seconds=3)
    finally:
        stop.set()
        await running
        await other_process.dispose()


async def test_a_claim_takes_and_locks_only_what_it_can_run(world: World) -> None:
    """A due post weighs as many calls as it has targets: a claim worth 20 calls takes two
    posts of ten targets. On PostgreSQL the rows a claim reads stay locked until it commits,
    so a claim that read more than it took would leave another worker, claiming meanwhile,
    with nothing; here the other worker gets two posts of its own."""
    channels = [world.channel_id] + [await world.add_channel(f"Extra {n}") for n in range(9)]
    for n in range(6):
        await publish_now(world, {c: {"caption": f"post {n}"} for c in channels})
    first, second = worker(world, name="w-first"), worker(world, name="w-second")
    async with world.db.transaction() as session:
        taken = await first._claim(session, 20, datetime.now(UTC))
        assert [t.kind for t in taken] == [TaskKind.PUBLISH_POST] * 2
        if not world.db.is_sqlite:  # SQLite has one writer at a time: nothing to lock
            async with world.db.transaction() as other:
                theirs = await second._claim(other, 20, datetime.now(UTC))
                assert len(theirs) == 2
                assert not {t.id for t in theirs} & {t.id for t in taken}
    async with world.db.transaction() as session:
        rest = await second._claim(session, 1000, datetime.now(UTC))
    assert len(rest) == (4 if world.db.is_sqlite else 2)
