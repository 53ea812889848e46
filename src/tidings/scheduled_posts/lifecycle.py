"""The lifecycle of a scheduled post as one pure table: (status, action, actor) → status.

Endpoints and jobs ask `transition()` and never decide a status themselves. Refusals are
typed: `ActorForbidden` (the actor may never do this; HTTP 403) is checked before
`StatusConflict` (not from this status; HTTP 409), so an API key asking to approve is told
that approval is human whatever state the post is in.
"""

from collections.abc import Mapping
from enum import StrEnum


class PostStatus(StrEnum):
    DRAFT = "DRAFT"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    REJECTED = "REJECTED"
    SCHEDULED = "SCHEDULED"
    PUBLISHING = "PUBLISHING"
    PUBLISHED = "PUBLISHED"
    PARTIALLY_PUBLISHED = "PARTIALLY_PUBLISHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class Action(StrEnum):
    CREATE = "create"
    EDIT = "edit"
    MOVE_TO_DRAFT = "move-to-draft"
    SUBMIT = "submit-for-approval"
    REJECT = "reject"
    APPROVE = "approve"
    PUBLISH_NOW = "publish"
    REVERT = "revert"
    CANCEL = "cancel"
    DELETE = "delete"
    RESOLVE = "resolve"  # a person settles a target whose outcome is UNKNOWN


class Actor(StrEnum):
    """Who acts: an API key, or a signed-in person by workspace role."""

    API_KEY = "api_key"
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


S = PostStatus
A = Action

#: Statuses a new post may be created in.
CREATABLE: frozenset[PostStatus] = frozenset({S.DRAFT, S.WAITING_FOR_APPROVAL})

_COMPOSE = frozenset({A.CREATE, A.EDIT, A.MOVE_TO_DRAFT, A.SUBMIT, A.DELETE})
_REVIEW = frozenset({A.REJECT, A.APPROVE, A.PUBLISH_NOW, A.RESOLVE})
_UNSCHEDULE = frozenset({A.REVERT, A.CANCEL})

#: What each actor may ever do. Approving and publishing now are human decisions, so API
#: keys never may; a key may reject (an automated brand-safety check, say).
PERMISSIONS: Mapping[Actor, frozenset[Action]] = {
    Actor.OWNER: frozenset(Action),
    Actor.ADMIN: frozenset(Action),
    Actor.EDITOR: _COMPOSE | _UNSCHEDULE,
    Actor.REVIEWER: _REVIEW | _UNSCHEDULE,
    Actor.VIEWER: frozenset(),
    Actor.API_KEY: _COMPOSE | _UNSCHEDULE | {A.REJECT},
}

_EVERY_STATUS_BUT_PUBLISHING: dict[PostStatus, PostStatus] = {
    s: s for s in PostStatus if s is not S.PUBLISHING
}

#: For each action on an existing post: from-status → to-status.
TRANSITIONS: Mapping[Action, Mapping[PostStatus, PostStatus]] = {
    A.EDIT: {
        S.DRAFT: S.DRAFT,
        S.REJECTED: S.REJECTED,
        S.WAITING_FOR_APPROVAL: S.WAITING_FOR_APPROVAL,
    },
    A.MOVE_TO_DRAFT: {
        S.DRAFT: S.DRAFT,
        S.REJECTED: S.DRAFT,
        S.WAITING_FOR_APPROVAL: S.DRAFT,
    },
    A.SUBMIT: {S.DRAFT: S.WAITING_FOR_APPROVAL, S.REJECTED: S.WAITING_FOR_APPROVAL},
    A.REJECT: {S.WAITING_FOR_APPROVAL: S.REJECTED},
    A.APPROVE: {S.WAITING_FOR_APPROVAL: S.SCHEDULED},
    A.PUBLISH_NOW: {S.WAITING_FOR_APPROVAL: S.SCHEDULED, S.SCHEDULED: S.SCHEDULED},
    A.REVERT: {S.SCHEDULED: S.DRAFT},
    A.CANCEL: {S.SCHEDULED: S.CANCELED},
    A.DELETE: _EVERY_STATUS_BUT_PUBLISHING,
    A.RESOLVE: {S.PUBLISHING: S.PUBLISHING},  # the engine then derives the post's status
}

#: Transitions after which the post must pass full publish validation.
VALIDATED: frozenset[tuple[Action, PostStatus]] = frozenset(
    {
        (A.SUBMIT, S.DRAFT),
        (A.SUBMIT, S.REJECTED),
        (A.EDIT, S.WAITING_FOR_APPROVAL),
        (A.APPROVE, S.WAITING_FOR_APPROVAL),
        (A.PUBLISH_NOW, S.WAITING_FOR_APPROVAL),
        (A.PUBLISH_NOW, S.SCHEDULED),
    }
)

_HUMAN_ONLY = frozenset({A.APPROVE, A.PUBLISH_NOW, A.RESOLVE})


class TransitionRefused(Exception):
    """An action the lifecycle does not allow; `message` is meant for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActorForbidden(TransitionRefused):
    """The actor may never take this action."""


class StatusConflict(TransitionRefused):
    """The action is not allowed from the post's current status."""


def allowed_actors(action: Action) -> list[Actor]:
    return [actor for actor in Actor if action in PERMISSIONS[actor]]


def authorize(action: Action, actor: Actor) -> None:
    """Raise `ActorForbidden` unless `actor` may take `action` at all."""
    if action in PERMISSIONS[actor]:
        return
    who = [a.value for a in allowed_actors(action) if a is not Actor.API_KEY]
    if actor is Actor.API_KEY and action in _HUMAN_ONLY:
        raise ActorForbidden(
            f"{action.value} is a human decision: API keys cannot {action.value}; "
            f"a signed-in person with role {', '.join(who)} can"
        )
    if actor is Actor.API_KEY:
        raise ActorForbidden(f"API keys cannot {action.value} posts")
    raise ActorForbidden(
        f"role {actor.value} cannot {action.value} posts; role {', '.join(who)} can"
    )


def allowed_from(action: Action) -> list[PostStatus]:
    """The statuses from which `action` is allowed, in lifecycle order."""
    if action is A.CREATE:
        return []
    return [s for s in PostStatus if s in TRANSITIONS[action]]


def transition(status: PostStatus, action: Action, actor: Actor) -> PostStatus:
    """The status a post in `status` moves to when `actor` takes `action`, or a refusal."""
    if action is A.CREATE:
        raise ValueError("CREATE has no from-status; use initial_status()")
    authorize(action, actor)
    table = TRANSITIONS[action]
    if status in table:
        return table[status]
    if action in (A.EDIT, A.MOVE_TO_DRAFT) and status is S.SCHEDULED:
        raise StatusConflict(
            f"cannot {action.value} a post in status SCHEDULED: revert it first "
            "(POST /scheduled-posts/{id}/revert moves it back to DRAFT)"
        )
    allowed = ", ".join(s.value for s in allowed_from(action))
    raise StatusConflict(
        f"cannot {action.value} a post in status {status.value}; allowed from: {allowed}"
    )


def initial_status(requested: PostStatus, actor: Actor) -> PostStatus:
    """The status a new post is created in (DRAFT or WAITING_FOR_APPROVAL)."""
    authorize(A.CREATE, actor)
    if requested not in CREATABLE:
        raise StatusConflict(f"a post cannot be created in status {requested.value}")
    return requested


def needs_publish_validation(action: Action, from_status: PostStatus) -> bool:
    """Whether taking `action` from `from_status` must run full publish validation."""
    return (action, from_status) in VALIDATED
