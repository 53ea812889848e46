"""HTTP routes of /scheduled-posts: parse, authorise, call the service, shape the response."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response, status

from tidings.auth.deps import CurrentPrincipal, PrincipalApart
from tidings.auth.principal import Principal
from tidings.db.session import SessionDep, StateDep
from tidings.errors import RequestShapeError, ServiceUnavailable, TooManyRequests
from tidings.fetch import AtCapacity, OverRate
from tidings.paging import MAX_PAGE, PageCursor, PageLimit
from tidings.publishing.worker import platform_context
from tidings.scheduled_posts import service
from tidings.scheduled_posts.lifecycle import Action, PostStatus
from tidings.scheduled_posts.models import ScheduledPost
from tidings.scheduled_posts.schemas import (
    ApproveRequest,
    Instant,
    MediumData,
    PostEventList,
    PostEventOut,
    PublishAttemptList,
    PublishAttemptOut,
    RejectRequest,
    ResolveRequest,
    ScheduledPostCreate,
    ScheduledPostOut,
    ScheduledPostPage,
    ScheduledPostUpdate,
    ValidationOut,
    ValidationProblem,
)
from tidings.scheduled_posts.service import ActionRequest, PostFilter
from tidings.schemas import MessageBody
from tidings.state import AppState
from tidings.timefmt import utcnow

router = APIRouter(prefix="/scheduled-posts", tags=["scheduled posts"])
#: What a dry run may answer besides the usual errors: it fetches, so it is bounded.
BOUNDED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": MessageBody,
        "description": "Too many dry runs from the workspace (Retry-After)",
    },
    503: {"model": MessageBody, "description": "Too many at once, or too slow (Retry-After)"},
}


def to_document(post: ScheduledPost) -> ScheduledPostOut:
    """The API document of a post (its targets and their channels must be loaded)."""
    return ScheduledPostOut(
        id=post.id,
        orgId=post.workspace_id,
        type=post.type,
        media=post.media,
        mediaType=post.media_type,
        scheduledFor=post.scheduled_for,
        timezone=post.timezone,
        taskId=post.task_id,
        status=post.status,
        notes=post.notes,
        mediumsData={
            t.channel_id: MediumData(
                caption=t.caption,
                firstComment=t.first_comment,
                options=t.options or {},
                mediumType=t.channel.platform,
                mediumName=t.channel.name,
                failedToPublish=t.status is not None and t.status.value == "FAILED",
                status=t.status.value if t.status is not None else None,
                externalPostId=t.external_post_id,
                externalUrl=t.external_url,
                publishedAt=t.published_at,
                attemptCount=t.attempt_count,
                errorCode=t.error_code,
                errorMessage=t.error_message,
                firstCommentStatus=t.first_comment_status,
                firstCommentId=t.first_comment_id,
                firstCommentError=t.first_comment_error,
            )
            for t in post.targets
        },
        createdBy=post.created_by,
        approvedBy=post.approved_by,
        approvedAt=post.approved_at,
        rejectedBy=post.rejected_by,
        rejectedAt=post.rejected_at,
        createdAt=post.created_at,
        updatedAt=post.updated_at,
        revision=post.revision,
    )


# The revision, bare or as an entity tag (`7`, `"7"`, `W/"7"`), or `*` for any revision.
IF_MATCH = r'^[ \t]*(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})[ \t]*$'


def _expected_revision(if_match: str | None) -> int | None:
    """The revision an If-Match header names (its shape is checked by IF_MATCH); * is none."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    return None if text == "*" else int(text)


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=IF_MATCH,
        description='Optional: the revision you last read (`7`, `"7"` or `W/"7"`; `*` for '
        "any); the change is refused (409) if the post has changed since.",
    ),
]


@router.post("", response_model=ScheduledPostOut, status_code=status.HTTP_201_CREATED)
async def create_scheduled_post(
    body: ScheduledPostCreate, principal: CurrentPrincipal, session: SessionDep
) -> ScheduledPostOut:
    """Create a post as DRAFT (no checks) or WAITING_FOR_APPROVAL (full publish validation)."""
    return to_document(await service.create_post(session, principal, body, utcnow()))


@router.post("/validate", response_model=ValidationOut, responses=BOUNDED)
async def validate_scheduled_post(
    body: ScheduledPostCreate, principal: PrincipalApart, state: StateDep, live: bool = False
) -> ValidationOut:
    """A dry run of a post (the body of a create): every problem publishing would meet, at
    once, including its media as their servers describe them; `?live=true` also asks each
    platform (its quota, the token). Nothing is stored."""
    return await _dry_run(state, principal, body, live)


@router.get("", response_model=ScheduledPostPage)
async def list_scheduled_posts(
    principal: CurrentPrincipal,
    session: SessionDep,
    status_: Annotated[list[PostStatus] | None, Query(alias="status")] = None,
    channel_id: Annotated[str | None, Query(alias="channelId", max_length=40)] = None,
    scheduled_from: Annotated[Instant | None, Query(alias="from")] = None,
    scheduled_to: Annotated[Instant | None, Query(alias="to")] = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> ScheduledPostPage:
    """List live posts, newest first; `from` ≤ scheduledFor < `to`; page with `nextCursor`."""
    filters = PostFilter(
        statuses=status_ or (),
        channel_id=channel_id,
        scheduled_from=scheduled_from,
        scheduled_to=scheduled_to,
    )
    posts, next_cursor = await service.list_posts(
        session, principal.workspace_id, filters, limit=limit, cursor=cursor
    )
    return ScheduledPostPage(data=[to_document(p) for p in posts], nextCursor=next_cursor)


@router.get("/{post_id}", response_model=ScheduledPostOut)
async def get_scheduled_post(
    post_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ScheduledPostOut:
    """Read one post."""
    return to_document(await service.get_post(session, principal.workspace_id, post_id))


@router.patch("/{post_id}", response_model=ScheduledPostOut)
async def update_scheduled_post(
    post_id: str,
    body: ScheduledPostUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    if_match: IfMatch = None,
) -> ScheduledPostOut:
    """Change some fields; `status: "DRAFT"` moves a REJECTED or WAITING post back to draft."""
    post = await service.update_post(
        session, principal, post_id, body, utcnow(), _expected_revision(if_match)
    )
    return to_document(post)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_scheduled_post(
    post_id: str, principal: CurrentPrincipal, session: SessionDep, if_match: IfMatch = None
) -> Response:
    """Soft-delete a post; a scheduled post's publish task is cancelled with it."""
    request = ActionRequest(Action.DELETE, expected_revision=_expected_revision(if_match))
    await service.act(session, principal, post_id, request, utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _act(
    session: SessionDep,
    principal: CurrentPrincipal,
    post_id: str,
    request: ActionRequest,
) -> ScheduledPostOut:
    return to_document(await service.act(session, principal, post_id, request, utcnow()))


@router.post("/{post_id}/submit-for-approval", response_model=ScheduledPostOut)
async def submit_for_approval(
    post_id: str, principal: CurrentPrincipal, session: SessionDep, if_match: IfMatch = None
) -> ScheduledPostOut:
    """DRAFT or REJECTED → WAITING_FOR_APPROVAL, after full publish validation."""
    request = ActionRequest(Action.SUBMIT, expected_revision=_expected_revision(if_match))
    return await _act(session, principal, post_id, request)


@router.post("/{post_id}/reject", response_model=ScheduledPostOut)
async def reject(
    post_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    body: RejectRequest | None = None,
    if_match: IfMatch = None,
) -> ScheduledPostOut:
    """WAITING_FOR_APPROVAL → REJECTED, with notes the creator will read."""
    if body is None:
        # A missing body is missing notes: say so at the field, as for `{}`.
        raise RequestShapeError("Field required", ["notes"], "missing")
    request = ActionRequest(
        Action.REJECT, notes=body.notes, expected_revision=_expected_revision(if_match)
    )
    return await _act(session, principal, post_id, request)


@router.post("/{post_id}/approve", response_model=ScheduledPostOut)
async def approve(
    post_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    body: ApproveRequest | None = None,
    if_match: IfMatch = None,
) -> ScheduledPostOut:
    """WAITING_FOR_APPROVAL → SCHEDULED; a signed-in reviewer, admin or owner only."""
    request = ActionRequest(
        Action.APPROVE,
        scheduled_for=body.scheduledFor if body else None,
        expected_revision=_expected_revision(if_match),
    )
    background.add_task(state.wake_workers)  # runs after the commit, once the response is out
    return await _act(session, principal, post_id, request)


@router.post("/{post_id}/publish", response_model=ScheduledPostOut)
async def publish_now(
    post_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    if_match: IfMatch = None,
) -> ScheduledPostOut:
    """Approve and make due now (from WAITING_FOR_APPROVAL or SCHEDULED); people only."""
    request = ActionRequest(Action.PUBLISH_NOW, expected_revision=_expected_revision(if_match))
    background.add_task(state.wake_workers)  # runs after the commit, once the response is out
    return await _act(session, principal, post_id, request)


@router.post("/{post_id}/revert", response_model=ScheduledPostOut)
async def revert(
    post_id: str, principal: CurrentPrincipal, session: SessionDep, if_match: IfMatch = None
) -> ScheduledPostOut:
    """SCHEDULED → DRAFT; its publish task is cancelled."""
    request = ActionRequest(Action.REVERT, expected_revision=_expected_revision(if_match))
    return await _act(session, principal, post_id, request)


@router.post("/{post_id}/cancel", response_model=ScheduledPostOut)
async def cancel(
    post_id: str, principal: CurrentPrincipal, session: SessionDep, if_match: IfMatch = None
) -> ScheduledPostOut:
    """SCHEDULED → CANCELED; its publish task is cancelled."""
    request = ActionRequest(Action.CANCEL, expected_revision=_expected_revision(if_match))
    return await _act(session, principal, post_id, request)


@router.get("/{post_id}/validation", response_model=ValidationOut, responses=BOUNDED)
async def validation_of_scheduled_post(
    post_id: str, principal: PrincipalApart, state: StateDep, live: bool = False
) -> ValidationOut:
    """The dry run of a stored post, as `POST /scheduled-posts/validate`."""
    return await _dry_run(state, principal, post_id, live)


async def _dry_run(
    state: AppState, principal: Principal, post: ScheduledPostCreate | str, live: bool
) -> ValidationOut:
    """Read in a short transaction, close it, then fetch: waiting on a server (a slow one,
    or one that drips on purpose) holds no connection, so no workspace can stall another.
    Bounded per workspace (429), per process (503) and in time (503)."""
    service.authorize_dry_run(principal)
    settings, gate = state.settings, state.fetch_gate
    try:
        gate.admit(principal.workspace_id)
    except OverRate as exc:
        message = f"too many dry runs: {exc.message}"
        raise TooManyRequests(message, retry_after=exc.retry_after) from None
    context = platform_context(settings, state.db) if live else None
    deadline = settings.dry_run_deadline_seconds
    try:
        async with gate.slot(), asyncio.timeout(deadline):
            async with state.db.transaction(write=False) as session:
                plan = await service.dry_run_plan(session, principal.workspace_id, post)
            # The transaction is closed: what follows waits on the network holding nothing.
            problems = await service.dry_run(
                plan, utcnow(), fetch=settings.fetch_policy, live=context
            )
    except AtCapacity as exc:
        raise ServiceUnavailable(f"dry runs are busy: {exc.message}", retry_after=1) from None
    except TimeoutError:
        raise ServiceUnavailable(
            f"the dry run took longer than {deadline:g} s; try again later", retry_after=5
        ) from None
    finally:
        if context is not None:
            await context.aclose()
    return ValidationOut(
        valid=not problems,
        problems=[
            ValidationProblem(channelId=p.channel_id, rule=p.rule, message=p.message)
            for p in problems
        ],
    )


@router.get("/{post_id}/events", response_model=PostEventList)
async def list_events(
    post_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = MAX_PAGE,
    cursor: PageCursor = None,
) -> PostEventList:
    """The post's audit trail, oldest first: every action, who took it, and the status it
    led to; page with `nextCursor`."""
    events, next_cursor = await service.list_events(
        session, principal.workspace_id, post_id, limit=limit, cursor=cursor
    )
    return PostEventList(
        nextCursor=next_cursor,
        data=[
            PostEventOut(
                id=e.id,
                action=e.action,
                actorType=e.actor_type,
                actorId=e.actor_id,
                fromStatus=e.from_status,
                toStatus=e.to_status,
                notes=e.notes,
                revision=e.revision,
                createdAt=e.created_at,
            )
            for e in events
        ],
    )


@router.get("/{post_id}/attempts", response_model=PublishAttemptList)
async def list_attempts(
    post_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = MAX_PAGE,
    cursor: PageCursor = None,
) -> PublishAttemptList:
    """The publishing ledger, oldest first: each platform call, when, its outcome and
    error; page with `nextCursor`."""
    attempts, next_cursor = await service.list_attempts(
        session, principal.workspace_id, post_id, limit=limit, cursor=cursor
    )
    return PublishAttemptList(
        nextCursor=next_cursor,
        data=[
            PublishAttemptOut(
                id=a.id,
                channelId=a.channel_id,
                operation=a.operation,
                number=a.number,
                worker=a.worker,
                startedAt=a.started_at,
                endedAt=a.ended_at,
                outcome=a.outcome.value,
                errorKind=a.error_kind,
                errorCode=a.error_code,
                errorMessage=a.error_message,
                requestId=a.request_id,
            )
            for a in attempts
        ],
    )


@router.post("/{post_id}/targets/{channel_id}/resolve", response_model=ScheduledPostOut)
async def resolve_target(
    post_id: str,
    channel_id: str,
    body: ResolveRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> ScheduledPostOut:
    """Settle a target whose outcome is UNKNOWN (people only): PUBLISHED, or RETRY."""
    post = await service.resolve_target(session, principal, post_id, channel_id, body, utcnow())
    background.add_task(state.wake_workers)
    return to_document(post)
