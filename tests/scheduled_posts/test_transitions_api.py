"""Every lifecycle transition of a scheduled post through the HTTP API.

Each allowed transition is taken by an actor who may take it, and checked three ways: the
status code, the returned document, and the rows (post, targets, tasks, audit events).
Every refused transition is checked too: (status, action) pairs the lifecycle does not allow
are 409 naming the current status, and (actor, action) pairs the roles do not allow are 403,
in both cases without touching the database.

The expected tables below are written from the contract (DESIGN.md §1 and the issue), not
read from `tidings.scheduled_posts.lifecycle`, so that the two are checked against each other.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tests.world import World, future
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import PostEvent, ScheduledPost, Target

DRAFT = "DRAFT"
WAITING = "WAITING_FOR_APPROVAL"
REJECTED = "REJECTED"
SCHEDULED = "SCHEDULED"
PUBLISHING = "PUBLISHING"
PUBLISHED = "PUBLISHED"
PARTIALLY_PUBLISHED = "PARTIALLY_PUBLISHED"
FAILED = "FAILED"
CANCELED = "CANCELED"

STATUSES = [
    DRAFT,
    WAITING,
    REJECTED,
    SCHEDULED,
    PUBLISHING,
    PUBLISHED,
    PARTIALLY_PUBLISHED,
    FAILED,
    CANCELED,
]
#: Statuses only the publishing engine reaches; tests put posts there with an UPDATE.
ENGINE_STATUSES = [PUBLISHING, PUBLISHED, PARTIALLY_PUBLISHED, FAILED]

ACTIONS = [
    "edit",
    "move-to-draft",
    "submit-for-approval",
    "reject",
    "approve",
    "publish",
    "revert",
    "cancel",
    "delete",
]

#: From which statuses each action is allowed (the contract).
ALLOWED_FROM: dict[str, set[str]] = {
    "edit": {DRAFT, REJECTED, WAITING},
    "move-to-draft": {REJECTED, WAITING},
    "submit-for-approval": {DRAFT, REJECTED},
    "reject": {WAITING},
    "approve": {WAITING},
    "publish": {WAITING, SCHEDULED},
    "revert": {SCHEDULED},
    "cancel": {SCHEDULED},
    "delete": set(STATUSES) - {PUBLISHING},
}
#: Pairs the contract is silent about (PATCH {"status": "DRAFT"} on a DRAFT is a no-op).
UNSPECIFIED = {(DRAFT, "move-to-draft")}

REFUSED_BY_STATUS = [
    (status, action)
    for status in STATUSES
    for action in ACTIONS
    if status not in ALLOWED_FROM[action] and (status, action) not in UNSPECIFIED
]

#: A status from which each action is allowed, to show a refusal is about the actor.
ALLOWED_STATUS_FOR = {
    "edit": DRAFT,
    "move-to-draft": WAITING,
    "submit-for-approval": DRAFT,
    "reject": WAITING,
    "approve": WAITING,
    "publish": WAITING,
    "revert": SCHEDULED,
    "cancel": SCHEDULED,
    "delete": DRAFT,
}

ACTORS = ["api_key", "owner", "admin", "editor", "reviewer", "viewer"]
_COMPOSE = {"create", "edit", "move-to-draft", "submit-for-approval", "delete"}
_REVIEW = {"reject", "approve", "publish"}
_UNSCHEDULE = {"revert", "cancel"}
#: What each actor may do (the contract).
MAY: dict[str, set[str]] = {
    "owner": _COMPOSE | _REVIEW | _UNSCHEDULE,
    "admin": _COMPOSE | _REVIEW | _UNSCHEDULE,
    "editor": _COMPOSE | _UNSCHEDULE,
    "reviewer": _REVIEW | _UNSCHEDULE,
    "viewer": set(),
    "api_key": _COMPOSE | _UNSCHEDULE | {"reject"},
}
FORBIDDEN = [
    (actor, action)
    for actor in ACTORS
    for action in ["create", *ACTIONS]
    if action not in MAY[actor]
]
#: The actor each action is taken by when the test is not about actors.
DEFAULT_ACTOR = {
    "edit": "api_key",
    "move-to-draft": "api_key",
    "submit-for-approval": "api_key",
    "reject": "reviewer",
    "approve": "reviewer",
    "publish": "reviewer",
    "revert": "api_key",
    "cancel": "api_key",
    "delete": "api_key",
}

DOCUMENT_FIELDS = {
    "id",
    "orgId",
    "type",
    "media",
    "mediaType",
    "scheduledFor",
    "timezone",
    "taskId",
    "status",
    "notes",
    "mediumsData",
    "createdBy",
    "approvedBy",
    "approvedAt",
    "rejectedBy",
    "createdAt",
    "updatedAt",
    "revision",
}
MEDIUM_FIELDS = {
    "caption",
    "firstComment",
    "options",
    "mediumType",
    "mediumName",
    "failedToPublish",
    "status",
    "externalPostId",
    "externalUrl",
    "publishedAt",
    "attemptCount",
    "errorCode",
    "errorMessage",
}


# --- helpers ---------------------------------------------------------------------------------


def instant(text: str) -> datetime:
    """A `...Z` instant of a document, as an aware datetime."""
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


class Actors:
    """One client per actor, signed in on first use."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def __call__(self, actor: str) -> httpx.AsyncClient:
        if actor not in self._clients:
            if actor == "api_key":
                self._clients[actor] = self.world.api()
            else:
                self._clients[actor] = await self.world.person(actor)
        return self._clients[actor]

    def actor_id(self, actor: str) -> str:
        return self.world.key_id if actor == "api_key" else self.world.user_ids[actor]


@pytest.fixture
def actors(world: World) -> Actors:
    return Actors(world)


async def take(
    client: httpx.AsyncClient, world: World, post_id: str, action: str, **extra: Any
) -> httpx.Response:
    """Take `action` on a post the way a client would."""
    url = f"/scheduled-posts/{post_id}"
    if action == "edit":
        body = extra.get("body") or {"channels": {world.channel_id: {"caption": "Edited"}}}
        return await client.patch(url, json=body)
    if action == "move-to-draft":
        return await client.patch(url, json={"status": "DRAFT"})
    if action == "delete":
        return await client.delete(url)
    if action == "reject":
        return await client.post(f"{url}/reject", json={"notes": extra.get("notes", "Off brand")})
    if action == "approve" and "body" in extra:
        return await client.post(f"{url}/approve", json=extra["body"])
    return await client.post(f"{url}/{action}")


async def create(world: World, actors: Actors, status: str = DRAFT, **overrides: Any) -> str:
    body = world.post_body(**overrides)
    if status != DRAFT:
        body["status"] = status
    r = await (await actors("api_key")).post("/scheduled-posts", json=body)
    assert r.status_code == 201, r.text
    post_id: str = r.json()["id"]
    return post_id


#: The state the engine leaves a post's publish task in, for each engine status.
ENGINE_TASK_STATUS = {
    PUBLISHING: TaskStatus.RUNNING,
    PUBLISHED: TaskStatus.DONE,
    PARTIALLY_PUBLISHED: TaskStatus.DONE,
    FAILED: TaskStatus.FAILED,
}


async def set_status_in_db(world: World, post_id: str, status: str) -> None:
    """Play the engine: move a scheduled post (and its task) on to an engine status."""
    async with world.db.transaction() as session:
        await session.execute(
            update(ScheduledPost)
            .where(ScheduledPost.id == post_id)
            .values(status=PostStatus(status))
        )
        await session.execute(
            update(Task).where(Task.post_id == post_id).values(status=ENGINE_TASK_STATUS[status])
        )


async def post_in(world: World, actors: Actors, status: str) -> str:
    """A post of the world in `status`, reached through the API where the API can."""
    if status == DRAFT:
        return await create(world, actors)
    post_id = await create(world, actors, WAITING)
    if status == WAITING:
        return post_id
    if status == REJECTED:
        r = await take(await actors("reviewer"), world, post_id, "reject")
        assert r.status_code == 200, r.text
        return post_id
    r = await take(await actors("reviewer"), world, post_id, "approve")
    assert r.status_code == 200, r.text
    if status == SCHEDULED:
        return post_id
    if status == CANCELED:
        r = await take(await actors("api_key"), world, post_id, "cancel")
        assert r.status_code == 200, r.text
        return post_id
    assert status in ENGINE_STATUSES
    await set_status_in_db(world, post_id, status)
    return post_id


async def post_row(world: World, post_id: str) -> ScheduledPost:
    """The post's row, deleted or not."""
    async with world.db.transaction() as session:
        query = select(ScheduledPost).where(ScheduledPost.id == post_id)
        return (await session.execute(query)).scalar_one()


async def tasks_of(world: World, post_id: str) -> list[Task]:
    async with world.db.transaction() as session:
        query = select(Task).where(Task.post_id == post_id).order_by(Task.id)
        return list((await session.execute(query)).scalars())


async def targets_of(world: World, post_id: str) -> list[Target]:
    async with world.db.transaction() as session:
        query = select(Target).where(Target.post_id == post_id).order_by(Target.position)
        return list((await session.execute(query)).scalars())


async def events_of(world: World, post_id: str) -> list[PostEvent]:
    async with world.db.transaction() as session:
        query = select(PostEvent).where(PostEvent.post_id == post_id).order_by(PostEvent.id)
        return list((await session.execute(query)).scalars())


async def snapshot(world: World, post_id: str) -> dict[str, Any]:
    return await world.snapshot(post_id)


async def post_count(world: World) -> int:
    async with world.db.transaction() as session:
        query = select(func.count()).where(ScheduledPost.workspace_id == world.workspace_id)
        return int((await session.execute(query.select_from(ScheduledPost))).scalar_one())


def assert_scheduled_task(post: ScheduledPost, tasks: list[Task]) -> Task:
    """The post has exactly one live publish task, its `taskId`, due at `scheduledFor`."""
    live = [t for t in tasks if t.status is not TaskStatus.CANCELED]
    assert len(live) == 1, [(t.id, t.status) for t in tasks]
    task = live[0]
    assert task.status is TaskStatus.PENDING
    assert task.kind is TaskKind.PUBLISH_POST
    assert task.id == post.task_id
    assert task.workspace_id == post.workspace_id
    assert task.run_at == post.scheduled_for
    return task


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "status"),
    [
        ("api_key", None),
        ("owner", DRAFT),
        ("admin", WAITING),
        ("editor", WAITING),
        ("api_key", WAITING),
    ],
)
async def test_create(world: World, actors: Actors, actor: str, status: str | None) -> None:
    body = world.post_body()
    body["channels"][world.channel_id]["firstComment"] = "First!"
    if status is not None:
        body["status"] = status
    r = await (await actors(actor)).post("/scheduled-posts", json=body)

    assert r.status_code == 201, r.text
    doc = r.json()
    assert set(doc) >= DOCUMENT_FIELDS
    assert doc["id"].startswith("post_")
    assert doc["orgId"] == world.workspace_id
    assert doc["status"] == (status or DRAFT)
    assert doc["type"] == "POST"
    assert doc["media"] == body["media"]
    assert doc["mediaType"] == "IMAGE"
    assert instant(doc["scheduledFor"]) == datetime.fromisoformat(body["scheduledFor"])
    assert doc["taskId"] is None
    assert doc["createdBy"] == actors.actor_id(actor)
    assert doc["approvedBy"] is None
    assert doc["approvedAt"] is None
    assert doc["rejectedBy"] is None
    assert doc["revision"] == 1
    assert instant(doc["createdAt"]) == instant(doc["updatedAt"])
    assert list(doc["mediumsData"]) == [world.channel_id]
    medium = doc["mediumsData"][world.channel_id]
    assert set(medium) >= MEDIUM_FIELDS
    assert medium["caption"] == "Hello from Tidings"
    assert medium["firstComment"] == "First!"
    assert medium["options"] == {}
    assert medium["mediumType"] == "sandbox"
    assert medium["mediumName"] == "Demo"
    assert medium["failedToPublish"] is False
    assert medium["status"] is None
    assert medium["attemptCount"] == 0
    for name in ("externalPostId", "externalUrl", "publishedAt", "errorCode", "errorMessage"):
        assert medium[name] is None

    row = await post_row(world, doc["id"])
    assert row.status == (status or DRAFT)
    assert row.workspace_id == world.workspace_id
    assert row.deleted_at is None
    assert row.created_by == actors.actor_id(actor)
    assert [t.channel_id for t in await targets_of(world, doc["id"])] == [world.channel_id]
    assert await tasks_of(world, doc["id"]) == []
    (event,) = await events_of(world, doc["id"])
    assert (event.action, event.from_status, event.to_status) == ("create", None, doc["status"])
    assert event.actor_id == actors.actor_id(actor)

    r = await (await actors(actor)).get(f"/scheduled-posts/{doc['id']}")
    assert r.status_code == 200
    assert r.json() == doc


@pytest.mark.parametrize(
    "status", [SCHEDULED, REJECTED, CANCELED, PUBLISHED, PUBLISHING, FAILED, "draft", "", None]
)
async def test_create_in_another_status_is_422(
    world: World, actors: Actors, status: str | None
) -> None:
    r = await (await actors("api_key")).post(
        "/scheduled-posts", json=world.post_body(status=status)
    )
    assert r.status_code == 422, r.text
    (error,) = r.json()["error"]
    assert set(error) == {"message", "path", "type", "context"}
    assert error["path"] == ["status"]
    assert await post_count(world) == 0


# --- allowed transitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "actor"),
    [(DRAFT, "api_key"), (REJECTED, "editor"), (WAITING, "owner"), (WAITING, "admin")],
)
async def test_edit(world: World, actors: Actors, status: str, actor: str) -> None:
    post_id = await post_in(world, actors, status)
    before = await post_row(world, post_id)
    body = {"notes": "v2", "channels": {world.channel_id: {"caption": "Edited"}}}

    r = await take(await actors(actor), world, post_id, "edit", body=body)

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == status
    assert doc["notes"] == "v2"
    assert doc["mediumsData"][world.channel_id]["caption"] == "Edited"
    assert doc["revision"] == before.revision + 1
    row = await post_row(world, post_id)
    assert row.status == status
    assert row.notes == "v2"
    assert row.revision == before.revision + 1
    assert row.updated_at > before.updated_at
    assert [t.caption for t in await targets_of(world, post_id)] == ["Edited"]
    assert await tasks_of(world, post_id) == []
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("edit", status, status)
    assert event.actor_id == actors.actor_id(actor)


@pytest.mark.parametrize(
    ("status", "actor"),
    [(REJECTED, "api_key"), (WAITING, "editor"), (WAITING, "admin"), (REJECTED, "owner")],
)
async def test_move_to_draft(world: World, actors: Actors, status: str, actor: str) -> None:
    post_id = await post_in(world, actors, status)
    before = await post_row(world, post_id)

    r = await take(await actors(actor), world, post_id, "move-to-draft")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == DRAFT
    assert doc["revision"] == before.revision + 1
    assert doc["mediumsData"][world.channel_id]["caption"] == "Hello from Tidings"
    row = await post_row(world, post_id)
    assert row.status == DRAFT
    assert row.revision == before.revision + 1
    assert await tasks_of(world, post_id) == []
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("move-to-draft", status, DRAFT)
    assert event.actor_id == actors.actor_id(actor)


@pytest.mark.parametrize(
    ("status", "actor"),
    [(DRAFT, "api_key"), (REJECTED, "editor"), (DRAFT, "admin"), (REJECTED, "owner")],
)
async def test_submit_for_approval(world: World, actors: Actors, status: str, actor: str) -> None:
    post_id = await post_in(world, actors, status)

    r = await take(await actors(actor), world, post_id, "submit-for-approval")

    assert r.status_code == 200, r.text
    assert r.json()["status"] == WAITING
    row = await post_row(world, post_id)
    assert row.status == WAITING
    assert row.task_id is None
    assert await tasks_of(world, post_id) == []
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == (
        "submit-for-approval",
        status,
        WAITING,
    )
    assert event.actor_id == actors.actor_id(actor)


@pytest.mark.parametrize("actor", ["reviewer", "api_key", "admin", "owner"])
async def test_reject(world: World, actors: Actors, actor: str) -> None:
    post_id = await post_in(world, actors, WAITING)

    r = await take(await actors(actor), world, post_id, "reject", notes="Too salesy, tone down")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == REJECTED
    assert doc["notes"] == "Too salesy, tone down"
    assert doc["rejectedBy"] == actors.actor_id(actor)
    assert doc["taskId"] is None
    row = await post_row(world, post_id)
    assert row.status == REJECTED
    assert row.notes == "Too salesy, tone down"
    assert row.rejected_by == actors.actor_id(actor)
    assert row.rejected_at is not None
    assert await tasks_of(world, post_id) == []
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("reject", WAITING, REJECTED)
    assert event.notes == "Too salesy, tone down"
    assert event.actor_id == actors.actor_id(actor)

    # The creator reads the notes on the post.
    r = await (await actors("api_key")).get(f"/scheduled-posts/{post_id}")
    assert r.json()["notes"] == "Too salesy, tone down"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"notes": 5}, id="number"),
        pytest.param({"notes": None}, id="null"),
        pytest.param({"notes": []}, id="list"),
        pytest.param({"notes": ""}, id="empty"),
        pytest.param({"notes": "   "}, id="blank"),
        pytest.param({"notes": "\n\t "}, id="whitespace"),
    ],
)
async def test_reject_needs_notes(world: World, actors: Actors, body: dict[str, Any]) -> None:
    post_id = await post_in(world, actors, WAITING)
    before = await snapshot(world, post_id)

    r = await (await actors("reviewer")).post(f"/scheduled-posts/{post_id}/reject", json=body)

    assert r.status_code == 422, r.text
    errors = r.json()["error"]
    assert errors
    for error in errors:
        assert set(error) == {"message", "path", "type", "context"}
        assert error["path"] == ["notes"]
        assert isinstance(error["message"], str)
        assert error["message"]
    assert await snapshot(world, post_id) == before


async def test_reject_without_a_body_is_422(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    before = await snapshot(world, post_id)

    r = await (await actors("reviewer")).post(f"/scheduled-posts/{post_id}/reject")

    assert r.status_code == 422, r.text
    assert r.json()["error"]
    assert await snapshot(world, post_id) == before


async def test_reject_without_a_body_points_at_notes(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)

    r = await (await actors("reviewer")).post(f"/scheduled-posts/{post_id}/reject")

    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["error"]] == [["notes"]]


@pytest.mark.parametrize("actor", ["reviewer", "admin", "owner"])
async def test_approve(world: World, actors: Actors, actor: str) -> None:
    other = await world.add_channel("Second")
    channels = {
        world.channel_id: {"caption": "Hello"},
        other: {"caption": "Hello again", "firstComment": "1st"},
    }
    post_id = await create(world, actors, WAITING, channels=channels)
    before = await post_row(world, post_id)
    t0 = datetime.now(UTC)

    r = await take(await actors(actor), world, post_id, "approve")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == SCHEDULED
    assert doc["approvedBy"] == actors.actor_id(actor)
    assert t0 <= instant(doc["approvedAt"]) <= datetime.now(UTC)
    assert instant(doc["scheduledFor"]) == before.scheduled_for
    assert doc["revision"] == before.revision + 1
    assert {cid: m["status"] for cid, m in doc["mediumsData"].items()} == {
        world.channel_id: "PENDING",
        other: "PENDING",
    }

    row = await post_row(world, post_id)
    assert row.status == SCHEDULED
    assert row.approved_by == actors.actor_id(actor)
    assert row.approved_at is not None
    assert row.scheduled_for == before.scheduled_for
    tasks = await tasks_of(world, post_id)
    assert len(tasks) == 1
    task = assert_scheduled_task(row, tasks)
    assert doc["taskId"] == task.id
    assert task.run_at == before.scheduled_for
    assert [t.status for t in await targets_of(world, post_id)] == ["PENDING", "PENDING"]
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("approve", WAITING, SCHEDULED)
    assert (event.actor_type, event.actor_id) == ("user", actors.actor_id(actor))


async def test_approve_with_a_new_scheduled_for(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    new_time = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)

    r = await take(
        await actors("reviewer"),
        world,
        post_id,
        "approve",
        body={"scheduledFor": new_time.isoformat().replace("+00:00", "Z")},
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == SCHEDULED
    assert r.json()["scheduledFor"] == new_time.isoformat().replace("+00:00", "Z")
    row = await post_row(world, post_id)
    assert row.scheduled_for == new_time
    assert assert_scheduled_task(row, await tasks_of(world, post_id)).run_at == new_time


async def test_approve_after_scheduled_for_has_passed(world: World, actors: Actors) -> None:
    """A post waited too long for approval: 400 unless the reviewer picks a new time."""
    post_id = await post_in(world, actors, WAITING)
    passed = datetime.now(UTC) - timedelta(minutes=5)
    async with world.db.transaction() as session:
        await session.execute(
            update(ScheduledPost).where(ScheduledPost.id == post_id).values(scheduled_for=passed)
        )
    reviewer = await actors("reviewer")
    before = await snapshot(world, post_id)

    for body in (None, {}, {"scheduledFor": None}, {"scheduledFor": future(-1)}):
        if body is None:
            r = await reviewer.post(f"/scheduled-posts/{post_id}/approve")
        else:
            r = await reviewer.post(f"/scheduled-posts/{post_id}/approve", json=body)
        assert r.status_code == 400, (body, r.text)
        assert "scheduledFor" in r.json()["message"]
        assert await snapshot(world, post_id) == before

    new_time = future(2)
    r = await take(reviewer, world, post_id, "approve", body={"scheduledFor": new_time})

    assert r.status_code == 200, r.text
    assert r.json()["status"] == SCHEDULED
    assert instant(r.json()["scheduledFor"]) == datetime.fromisoformat(new_time)
    row = await post_row(world, post_id)
    assert row.status == SCHEDULED
    assert row.scheduled_for == datetime.fromisoformat(new_time)
    assert_scheduled_task(row, await tasks_of(world, post_id))


@pytest.mark.parametrize(
    ("status", "actor"),
    [(WAITING, "reviewer"), (SCHEDULED, "admin"), (WAITING, "owner"), (SCHEDULED, "reviewer")],
)
async def test_publish_now(world: World, actors: Actors, status: str, actor: str) -> None:
    post_id = await post_in(world, actors, status)
    old_tasks = await tasks_of(world, post_id)
    t0 = datetime.now(UTC)

    r = await take(await actors(actor), world, post_id, "publish")

    t1 = datetime.now(UTC)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == SCHEDULED
    assert t0 <= instant(doc["scheduledFor"]) <= t1
    assert doc["approvedBy"] == actors.actor_id(actor)
    row = await post_row(world, post_id)
    assert row.status == SCHEDULED
    assert t0 <= row.scheduled_for <= t1  # type: ignore[operator]
    tasks = await tasks_of(world, post_id)
    task = assert_scheduled_task(row, tasks)
    assert doc["taskId"] == task.id
    assert t0 <= task.run_at <= t1
    # A post that was already scheduled has its old task cancelled, not left to run too.
    assert {t.id for t in old_tasks} <= {t.id for t in tasks}
    for old in old_tasks:
        assert next(t for t in tasks if t.id == old.id).status is TaskStatus.CANCELED
    assert len(tasks) == len(old_tasks) + 1
    assert [t.status for t in await targets_of(world, post_id)] == ["PENDING"]
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("publish", status, SCHEDULED)


async def test_publish_now_when_scheduled_for_has_passed(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    async with world.db.transaction() as session:
        await session.execute(
            update(ScheduledPost)
            .where(ScheduledPost.id == post_id)
            .values(scheduled_for=datetime.now(UTC) - timedelta(hours=1))
        )

    r = await take(await actors("reviewer"), world, post_id, "publish")

    assert r.status_code == 200, r.text
    row = await post_row(world, post_id)
    assert row.status == SCHEDULED
    assert_scheduled_task(row, await tasks_of(world, post_id))


@pytest.mark.parametrize("actor", ["api_key", "editor", "reviewer", "admin", "owner"])
async def test_revert(world: World, actors: Actors, actor: str) -> None:
    post_id = await post_in(world, actors, SCHEDULED)
    (task,) = await tasks_of(world, post_id)

    r = await take(await actors(actor), world, post_id, "revert")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == DRAFT
    assert doc["taskId"] is None
    assert doc["mediumsData"][world.channel_id]["status"] is None
    row = await post_row(world, post_id)
    assert row.status == DRAFT
    assert row.task_id is None
    (after,) = await tasks_of(world, post_id)
    assert after.id == task.id
    assert after.status is TaskStatus.CANCELED
    assert [t.status for t in await targets_of(world, post_id)] == [None]
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("revert", SCHEDULED, DRAFT)
    assert event.actor_id == actors.actor_id(actor)

    # Reverted to DRAFT, it can be edited and submitted again.
    api = await actors("api_key")
    assert (await take(api, world, post_id, "edit")).status_code == 200
    assert (await take(api, world, post_id, "submit-for-approval")).status_code == 200


@pytest.mark.parametrize("actor", ["api_key", "editor", "reviewer", "admin", "owner"])
async def test_cancel(world: World, actors: Actors, actor: str) -> None:
    post_id = await post_in(world, actors, SCHEDULED)
    (task,) = await tasks_of(world, post_id)

    r = await take(await actors(actor), world, post_id, "cancel")

    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == CANCELED
    assert doc["mediumsData"][world.channel_id]["status"] == "CANCELED"
    row = await post_row(world, post_id)
    assert row.status == CANCELED
    assert row.deleted_at is None
    (after,) = await tasks_of(world, post_id)
    assert after.id == task.id
    assert after.status is TaskStatus.CANCELED
    assert [t.status for t in await targets_of(world, post_id)] == ["CANCELED"]
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status, event.to_status) == ("cancel", SCHEDULED, CANCELED)
    # A canceled post stays readable.
    assert (await (await actors("viewer")).get(f"/scheduled-posts/{post_id}")).status_code == 200


DELETERS = ["api_key", "editor", "admin", "owner"]


@pytest.mark.parametrize(
    ("status", "actor"),
    [
        (s, DELETERS[i % len(DELETERS)])
        for i, s in enumerate(s for s in STATUSES if s != PUBLISHING)
    ],
)
async def test_delete(world: World, actors: Actors, status: str, actor: str) -> None:
    post_id = await post_in(world, actors, status)
    keep_id = await create(world, actors)
    tasks_before = await tasks_of(world, post_id)
    api = await actors("api_key")

    r = await (await actors(actor)).delete(f"/scheduled-posts/{post_id}")

    assert r.status_code == 204, r.text
    assert r.content == b""
    row = await post_row(world, post_id)
    assert row.deleted_at is not None
    tasks = await tasks_of(world, post_id)
    assert [t.id for t in tasks] == [t.id for t in tasks_before]
    # Nothing of a deleted post may still run.
    assert all(t.status is not TaskStatus.PENDING for t in tasks)
    if status == SCHEDULED:
        assert [t.status for t in tasks] == [TaskStatus.CANCELED]
    event = (await events_of(world, post_id))[-1]
    assert (event.action, event.from_status) == ("delete", status)
    assert event.actor_id == actors.actor_id(actor)

    for client in (api, await actors("owner")):
        r = await client.get(f"/scheduled-posts/{post_id}")
        assert r.status_code == 404, r.text
        assert "message" in r.json()
        listed = await client.get("/scheduled-posts", params={"limit": 100})
        assert [p["id"] for p in listed.json()["data"]] == [keep_id]
        listed = await client.get("/scheduled-posts", params={"status": status})
        assert post_id not in [p["id"] for p in listed.json()["data"]]
        assert (await client.get(f"/scheduled-posts/{post_id}/events")).status_code == 404
    # Once deleted, a post takes no more actions.
    for action in ("edit", "submit-for-approval", "revert", "delete"):
        assert (await take(api, world, post_id, action)).status_code == 404


async def test_journey_audit_trail_and_revisions(world: World, actors: Actors) -> None:
    """A full round trip; every change bumps the revision and leaves one audit event."""
    api, editor, reviewer = (
        await actors("api_key"),
        await actors("editor"),
        await actors("reviewer"),
    )
    r = await api.post("/scheduled-posts", json=world.post_body())
    post_id = r.json()["id"]
    steps: list[tuple[httpx.AsyncClient, str, str, str, str | None]] = [
        (editor, "submit-for-approval", "editor", WAITING, None),
        (reviewer, "reject", "reviewer", REJECTED, "Fix the caption"),
        (api, "move-to-draft", "api_key", DRAFT, None),
        (editor, "edit", "editor", DRAFT, None),
        (api, "submit-for-approval", "api_key", WAITING, None),
        (reviewer, "approve", "reviewer", SCHEDULED, None),
        (editor, "revert", "editor", DRAFT, None),
        (api, "submit-for-approval", "api_key", WAITING, None),
        (reviewer, "publish", "reviewer", SCHEDULED, None),
        (api, "cancel", "api_key", CANCELED, None),
        (editor, "delete", "editor", CANCELED, None),
    ]
    revisions = [1]
    for client, action, _, to_status, notes in steps:
        kwargs = {"notes": notes} if notes else {}
        r = await take(client, world, post_id, action, **kwargs)
        assert r.status_code in (200, 204), (action, r.text)
        row = await post_row(world, post_id)
        assert row.status == to_status, action
        assert row.revision > revisions[-1], action
        revisions.append(row.revision)
        if r.status_code == 200:
            assert r.json()["status"] == to_status, action
            assert r.json()["revision"] == row.revision, action

    events = await events_of(world, post_id)
    expected_from = [None, DRAFT, WAITING, REJECTED, DRAFT, DRAFT, WAITING, SCHEDULED, DRAFT]
    expected_from += [WAITING, SCHEDULED, CANCELED]
    assert [
        (e.action, e.actor_type, e.actor_id, e.from_status, e.to_status, e.notes) for e in events
    ] == [
        ("create", "api_key", world.key_id, None, DRAFT, None),
        *[
            (
                action,
                "api_key" if who == "api_key" else "user",
                actors.actor_id(who),
                expected_from[i + 1],
                to_status,
                notes,
            )
            for i, (_, action, who, to_status, notes) in enumerate(steps)
        ],
    ]
    # Each event records the revision its change produced.
    assert [e.revision for e in events] == revisions
    # Exactly one publish task was ever live at a time; none is live after cancel + delete.
    tasks = await tasks_of(world, post_id)
    assert len(tasks) == 2
    assert all(t.status is TaskStatus.CANCELED for t in tasks)


@pytest.mark.parametrize("action", ["publish", "approve-with-new-time"])
async def test_one_action_is_one_revision(world: World, actors: Actors, action: str) -> None:
    post_id = await post_in(world, actors, WAITING)
    reviewer = await actors("reviewer")
    if action == "publish":
        r = await take(reviewer, world, post_id, "publish")
    else:
        r = await take(reviewer, world, post_id, "approve", body={"scheduledFor": future(3)})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2


async def test_events_endpoint(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    await take(await actors("reviewer"), world, post_id, "reject", notes="Needs a link")

    r = await (await actors("viewer")).get(f"/scheduled-posts/{post_id}/events")

    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [
        (e["action"], e["actorType"], e["actorId"], e["fromStatus"], e["toStatus"], e["notes"])
        for e in data
    ] == [
        ("create", "api_key", world.key_id, None, WAITING, None),
        ("reject", "user", world.user_ids["reviewer"], WAITING, REJECTED, "Needs a link"),
    ]


# --- refusals by status ----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "action"), REFUSED_BY_STATUS)
async def test_refused_by_status(world: World, actors: Actors, status: str, action: str) -> None:
    post_id = await post_in(world, actors, status)
    before = await snapshot(world, post_id)

    r = await take(await actors(DEFAULT_ACTOR[action]), world, post_id, action)

    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert isinstance(message, str)
    assert status in message
    if status == SCHEDULED and action in ("edit", "move-to-draft"):
        assert "revert it first" in message
    else:
        for allowed in ALLOWED_FROM[action]:
            assert allowed in message, (allowed, message)
    assert await snapshot(world, post_id) == before


# --- refusals by actor -----------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "action"), FORBIDDEN)
async def test_refused_by_actor(world: World, actors: Actors, actor: str, action: str) -> None:
    client = await actors(actor)
    if action == "create":
        for status in (DRAFT, WAITING):
            r = await client.post("/scheduled-posts", json=world.post_body(status=status))
            assert r.status_code == 403, r.text
            assert isinstance(r.json()["message"], str)
        assert await post_count(world) == 0
        return
    post_id = await post_in(world, actors, ALLOWED_STATUS_FOR[action])
    before = await snapshot(world, post_id)

    r = await take(client, world, post_id, action)

    assert r.status_code == 403, r.text
    assert set(r.json()) == {"message"}
    assert isinstance(r.json()["message"], str)
    assert r.json()["message"]
    assert await snapshot(world, post_id) == before


@pytest.mark.parametrize(
    ("actor", "action", "status"),
    [
        ("api_key", "approve", DRAFT),
        ("api_key", "approve", SCHEDULED),
        ("api_key", "publish", CANCELED),
        ("api_key", "publish", PUBLISHED),
        ("editor", "approve", REJECTED),
        ("editor", "reject", SCHEDULED),
        ("reviewer", "edit", SCHEDULED),
        ("reviewer", "delete", PUBLISHING),
        ("reviewer", "submit-for-approval", WAITING),
        ("viewer", "cancel", DRAFT),
        ("viewer", "edit", PUBLISHED),
        ("viewer", "revert", WAITING),
    ],
)
async def test_forbidden_beats_status_conflict(
    world: World, actors: Actors, actor: str, action: str, status: str
) -> None:
    post_id = await post_in(world, actors, status)
    before = await snapshot(world, post_id)

    r = await take(await actors(actor), world, post_id, action)

    assert r.status_code == 403, r.text
    assert await snapshot(world, post_id) == before


@pytest.mark.parametrize(("actor", "action"), [("api_key", "approve"), ("viewer", "edit")])
async def test_forbidden_beats_revision_mismatch(
    world: World, actors: Actors, actor: str, action: str
) -> None:
    post_id = await post_in(world, actors, WAITING)
    client = await actors(actor)
    client.headers["If-Match"] = "99"

    r = await take(client, world, post_id, action)

    assert r.status_code == 403, r.text


async def test_api_key_refusal_says_approval_is_human(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    for action in ("approve", "publish"):
        r = await take(await actors("api_key"), world, post_id, action)
        assert r.status_code == 403
        assert "human" in r.json()["message"]


async def test_viewer_can_read(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, SCHEDULED)
    viewer = await actors("viewer")
    assert (await viewer.get(f"/scheduled-posts/{post_id}")).status_code == 200
    assert [p["id"] for p in (await viewer.get("/scheduled-posts")).json()["data"]] == [post_id]
    assert (await viewer.get(f"/scheduled-posts/{post_id}/events")).status_code == 200


async def test_other_workspace_cannot_see_or_act(world: World, actors: Actors) -> None:
    post_id = await post_in(world, actors, WAITING)
    before = await snapshot(world, post_id)
    async with World.build(world.app, name="Rival") as rival:
        api, owner = rival.api(), await rival.person("owner")
        assert (await api.get(f"/scheduled-posts/{post_id}")).status_code == 404
        assert (await api.get("/scheduled-posts")).json()["data"] == []
        for client, action in [
            (api, "edit"),
            (api, "reject"),
            (api, "delete"),
            (owner, "approve"),
            (owner, "publish"),
        ]:
            r = await take(client, rival, post_id, action)
            assert r.status_code == 404, (action, r.text)
    assert await snapshot(world, post_id) == before
