"""Two requests racing on one post: exactly one decision wins, and the task queue agrees.

The requests run concurrently in the app (asyncio.gather over in-process clients), each in
its own transaction, on SQLite and on PostgreSQL. Whatever the interleaving, the database
must end with at most one live publish task, and it must be the one the post names.
"""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.world import World
from tidings.publishing.models import Task, TaskStatus
from tidings.scheduled_posts.models import PostEvent, ScheduledPost

WAITING = "WAITING_FOR_APPROVAL"
ROUNDS = 3


async def state_of(world: World, post_id: str) -> tuple[ScheduledPost, list[Task], list[str]]:
    """The post row, its tasks and its audit actions."""
    async with world.db.transaction() as session:
        post = (
            await session.execute(select(ScheduledPost).where(ScheduledPost.id == post_id))
        ).scalar_one()
        tasks = list((await session.execute(select(Task).where(Task.post_id == post_id))).scalars())
        actions = list(
            (
                await session.execute(
                    select(PostEvent.action)
                    .where(PostEvent.post_id == post_id)
                    .order_by(PostEvent.id)
                )
            ).scalars()
        )
        return post, tasks, actions


def assert_queue_agrees(post: ScheduledPost, tasks: list[Task]) -> None:
    """A live SCHEDULED post has exactly one live task, its taskId; any other post has none."""
    live = [t for t in tasks if t.status is not TaskStatus.CANCELED]
    if post.deleted_at is None and post.status == "SCHEDULED":
        assert len(live) == 1, [(t.id, t.status) for t in tasks]
        assert live[0].status is TaskStatus.PENDING
        assert live[0].id == post.task_id
        assert live[0].run_at == post.scheduled_for
    else:
        assert live == [], [(t.id, t.status) for t in tasks]


async def waiting_post(world: World) -> str:
    r = await world.api().post("/scheduled-posts", json=world.post_body(status=WAITING))
    assert r.status_code == 201, r.text
    post_id: str = r.json()["id"]
    return post_id


async def test_two_reviewers_approve_at_once(world: World) -> None:
    first, second = await world.person("reviewer"), await world.person("reviewer")
    for _ in range(ROUNDS):
        post_id = await waiting_post(world)
        url = f"/scheduled-posts/{post_id}/approve"

        responses = await asyncio.gather(first.post(url), second.post(url))

        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 409], [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200).json()
        loser = next(r for r in responses if r.status_code == 409).json()
        assert isinstance(loser["message"], str)
        assert winner["status"] == "SCHEDULED"

        post, tasks, actions = await state_of(world, post_id)
        assert post.status == "SCHEDULED"
        assert len([t for t in tasks if t.status is not TaskStatus.CANCELED]) == 1
        assert len(tasks) == 1  # the loser's task was never committed
        assert tasks[0].id == winner["taskId"] == post.task_id
        assert_queue_agrees(post, tasks)
        assert actions == ["create", "approve"]


async def test_same_revision_approvals_with_if_match(world: World) -> None:
    """Both reviewers read revision 1 and approve with If-Match: 1; one wins."""
    first, second = await world.person("reviewer"), await world.person("admin")
    post_id = await waiting_post(world)
    url = f"/scheduled-posts/{post_id}/approve"
    headers = {"If-Match": "1"}

    responses = await asyncio.gather(
        first.post(url, headers=headers), second.post(url, headers=headers)
    )

    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    post, tasks, actions = await state_of(world, post_id)
    assert len(tasks) == 1
    assert_queue_agrees(post, tasks)
    assert actions == ["create", "approve"]


def _call(client: httpx.AsyncClient, post_id: str, action: str) -> Any:
    url = f"/scheduled-posts/{post_id}"
    if action == "move-to-draft":
        return client.patch(url, json={"status": "DRAFT"})
    if action == "delete":
        return client.delete(url)
    if action == "reject":
        return client.post(f"{url}/reject", json={"notes": "No"})
    return client.post(f"{url}/{action}")


#: Two (actor, action) requests racing on one post in `start`, and the sets of status codes
#: that are acceptable whichever goes first. A loser may always get 409 (the post changed
#: under it); what must never happen is two winners whose effects disagree.
RACES = {
    "approve-vs-move-to-draft": (
        WAITING,
        ("reviewer", "approve"),
        ("api_key", "move-to-draft"),
        [{200, 409}],
    ),
    "approve-vs-reject": (WAITING, ("reviewer", "approve"), ("admin", "reject"), [{200, 409}]),
    # Deleting after the approval cancels the task; approving after the delete finds nothing.
    "approve-vs-delete": (
        WAITING,
        ("reviewer", "approve"),
        ("api_key", "delete"),
        [{200, 204}, {404, 204}, {409, 204}, {200, 409}],
    ),
    # Publishing now is allowed from WAITING and from SCHEDULED: both may succeed.
    "publish-vs-publish": (
        WAITING,
        ("reviewer", "publish"),
        ("owner", "publish"),
        [{200}, {200, 409}],
    ),
    "revert-vs-cancel": ("SCHEDULED", ("editor", "revert"), ("api_key", "cancel"), [{200, 409}]),
    "publish-vs-revert": (
        "SCHEDULED",
        ("reviewer", "publish"),
        ("api_key", "revert"),
        [{200}, {200, 409}],
    ),
}


@pytest.mark.parametrize("race", list(RACES))
async def test_racing_decisions_keep_the_queue_consistent(world: World, race: str) -> None:
    start, (actor_a, action_a), (actor_b, action_b), outcomes = RACES[race]
    clients = {
        actor: world.api() if actor == "api_key" else await world.person(actor)
        for actor in {actor_a, actor_b, "reviewer"}
    }
    for _ in range(ROUNDS):
        post_id = await waiting_post(world)
        if start == "SCHEDULED":
            r = await clients["reviewer"].post(f"/scheduled-posts/{post_id}/approve")
            assert r.status_code == 200, r.text

        responses = await asyncio.gather(
            _call(clients[actor_a], post_id, action_a),
            _call(clients[actor_b], post_id, action_b),
        )

        codes = {r.status_code for r in responses}
        assert codes in outcomes, [(r.status_code, r.text) for r in responses]
        post, tasks, actions = await state_of(world, post_id)
        assert_queue_agrees(post, tasks)
        succeeded = sum(r.status_code in (200, 204) for r in responses)
        setup = ["create"] if start == WAITING else ["create", "approve"]
        assert actions[: len(setup)] == setup
        assert len(actions) == len(setup) + succeeded
