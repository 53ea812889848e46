"""The lifecycle table, checked exhaustively against the contract written out as literals."""

import itertools

import pytest

from tidings.scheduled_posts.lifecycle import (
    Action,
    Actor,
    ActorForbidden,
    PostStatus,
    StatusConflict,
    initial_status,
    needs_publish_validation,
    transition,
)

S, A = PostStatus, Action

# The contract, spelled out independently of the implementation's tables.
EXPECTED_MOVES: dict[tuple[PostStatus, Action], PostStatus] = {
    (S.DRAFT, A.EDIT): S.DRAFT,
    (S.REJECTED, A.EDIT): S.REJECTED,
    (S.WAITING_FOR_APPROVAL, A.EDIT): S.WAITING_FOR_APPROVAL,
    (S.DRAFT, A.MOVE_TO_DRAFT): S.DRAFT,
    (S.REJECTED, A.MOVE_TO_DRAFT): S.DRAFT,
    (S.WAITING_FOR_APPROVAL, A.MOVE_TO_DRAFT): S.DRAFT,
    (S.DRAFT, A.SUBMIT): S.WAITING_FOR_APPROVAL,
    (S.REJECTED, A.SUBMIT): S.WAITING_FOR_APPROVAL,
    (S.WAITING_FOR_APPROVAL, A.REJECT): S.REJECTED,
    (S.WAITING_FOR_APPROVAL, A.APPROVE): S.SCHEDULED,
    (S.WAITING_FOR_APPROVAL, A.PUBLISH_NOW): S.SCHEDULED,
    (S.SCHEDULED, A.PUBLISH_NOW): S.SCHEDULED,
    (S.SCHEDULED, A.REVERT): S.DRAFT,
    (S.SCHEDULED, A.CANCEL): S.CANCELED,
    **{(s, A.DELETE): s for s in PostStatus if s is not S.PUBLISHING},
    (S.PUBLISHING, A.RESOLVE): S.PUBLISHING,
}

COMPOSE = {A.CREATE, A.EDIT, A.MOVE_TO_DRAFT, A.SUBMIT, A.DELETE}
EXPECTED_PERMISSIONS: dict[Actor, set[Action]] = {
    Actor.OWNER: set(Action),
    Actor.ADMIN: set(Action),
    Actor.EDITOR: COMPOSE | {A.REVERT, A.CANCEL},
    Actor.REVIEWER: {A.REJECT, A.APPROVE, A.PUBLISH_NOW, A.RESOLVE, A.REVERT, A.CANCEL},
    Actor.VIEWER: set(),
    Actor.API_KEY: COMPOSE | {A.REVERT, A.CANCEL, A.REJECT},
}

EXISTING_POST_ACTIONS = [a for a in Action if a is not A.CREATE]


@pytest.mark.parametrize(
    ("status", "action", "actor"),
    list(itertools.product(PostStatus, EXISTING_POST_ACTIONS, Actor)),
)
def test_every_status_action_actor_combination(
    status: PostStatus, action: Action, actor: Actor
) -> None:
    if action not in EXPECTED_PERMISSIONS[actor]:
        with pytest.raises(ActorForbidden):
            transition(status, action, actor)
    elif (status, action) in EXPECTED_MOVES:
        assert transition(status, action, actor) is EXPECTED_MOVES[(status, action)]
    else:
        with pytest.raises(StatusConflict) as refused:
            transition(status, action, actor)
        assert status.value in refused.value.message


def test_refusal_message_names_the_allowed_statuses() -> None:
    with pytest.raises(StatusConflict) as refused:
        transition(S.DRAFT, A.APPROVE, Actor.REVIEWER)
    assert refused.value.message == (
        "cannot approve a post in status DRAFT; allowed from: WAITING_FOR_APPROVAL"
    )


@pytest.mark.parametrize("action", [A.EDIT, A.MOVE_TO_DRAFT])
def test_editing_a_scheduled_post_says_revert_it_first(action: Action) -> None:
    with pytest.raises(StatusConflict, match="revert it first"):
        transition(S.SCHEDULED, action, Actor.EDITOR)


@pytest.mark.parametrize("action", [A.APPROVE, A.PUBLISH_NOW, A.RESOLVE])
def test_api_keys_are_told_approval_is_human(action: Action) -> None:
    with pytest.raises(ActorForbidden, match="human decision"):
        transition(S.WAITING_FOR_APPROVAL, action, Actor.API_KEY)


def test_permission_is_checked_before_status() -> None:
    # A viewer asking to approve a DRAFT is refused for who it is, not for the status.
    with pytest.raises(ActorForbidden, match="role viewer cannot approve"):
        transition(S.DRAFT, A.APPROVE, Actor.VIEWER)


@pytest.mark.parametrize("actor", list(Actor))
@pytest.mark.parametrize("requested", list(PostStatus))
def test_initial_status(requested: PostStatus, actor: Actor) -> None:
    if A.CREATE not in EXPECTED_PERMISSIONS[actor]:
        with pytest.raises(ActorForbidden):
            initial_status(requested, actor)
    elif requested in (S.DRAFT, S.WAITING_FOR_APPROVAL):
        assert initial_status(requested, actor) is requested
    else:
        with pytest.raises(StatusConflict):
            initial_status(requested, actor)


def test_create_is_not_a_transition() -> None:
    with pytest.raises(ValueError, match="initial_status"):
        transition(S.DRAFT, A.CREATE, Actor.OWNER)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(PostStatus, Action)))
def test_publish_validation_runs_exactly_where_a_post_becomes_publishable(
    status: PostStatus, action: Action
) -> None:
    expected = (status, action) in {
        (S.DRAFT, A.SUBMIT),
        (S.REJECTED, A.SUBMIT),
        (S.WAITING_FOR_APPROVAL, A.EDIT),
        (S.WAITING_FOR_APPROVAL, A.APPROVE),
        (S.WAITING_FOR_APPROVAL, A.PUBLISH_NOW),
        (S.SCHEDULED, A.PUBLISH_NOW),
    }
    assert needs_publish_validation(action, status) is expected
