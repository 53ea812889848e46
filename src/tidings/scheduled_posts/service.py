"""Use cases of scheduled posts. Every function takes the caller's session and only flushes."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tidings.auth.principal import Principal
from tidings.channels.service import channels_by_id, facts
from tidings.errors import BadRequest, Conflict, Forbidden, NotFound, RequestShapeError
from tidings.fetch import FetchPolicy
from tidings.ids import new_id
from tidings.paging import entity_page
from tidings.platforms import get_platform
from tidings.platforms.base import (
    ChannelFacts,
    PlatformContext,
    PostContent,
    Problem,
    Published,
    TargetContent,
    media_items,
)
from tidings.publishing.models import PublishAttempt, TaskKind
from tidings.publishing.service import (
    cancel_post_tasks,
    derived_post_status,
    enqueue_publish,
    enqueue_target_task,
    mark_published,
)
from tidings.publishing.states import TargetStatus
from tidings.scheduled_posts import lifecycle
from tidings.scheduled_posts.lifecycle import Action, Actor, PostStatus
from tidings.scheduled_posts.media_check import media_problems
from tidings.scheduled_posts.models import PostEvent, ScheduledPost, Target
from tidings.scheduled_posts.rows import PostRow
from tidings.scheduled_posts.schemas import (
    MAX_CHANNELS,
    ChannelEntry,
    ResolveRequest,
    ScheduledPostCreate,
    ScheduledPostUpdate,
)
from tidings.scheduled_posts.validation import summarize, validate_for_publish

_NOT_NULL_ON_PATCH = ("type", "channels", "status")


def _post_query(workspace_id: str, post_id: str) -> Select[ScheduledPost]:
    return (
        select(ScheduledPost)
        .where(
            ScheduledPost.id == post_id,
            ScheduledPost.workspace_id == workspace_id,
            ScheduledPost.deleted_at.is_(None),
        )
        .options(selectinload(ScheduledPost.targets).selectinload(Target.channel))
    )


async def get_post(
    session: AsyncSession, workspace_id: str, post_id: str, *, for_update: bool = False
) -> ScheduledPost:
    """A live post of the workspace, with its targets and their channels loaded.

    Other workspaces' posts are simply not found: ids never leak across workspaces.
    `for_update` locks the row on PostgreSQL for the rest of the transaction.
    """
    query = _post_query(workspace_id, post_id)
    if for_update:
        query = query.with_for_update(of=ScheduledPost)
    post = (await session.execute(query)).scalar_one_or_none()
    if post is None:
        raise NotFound(f"scheduled post {post_id} not found")
    return post


def _take(post: ScheduledPost, action: Action, principal: Principal) -> PostStatus:
    """Ask the lifecycle table where `action` leads, as an HTTP-shaped error if nowhere."""
    try:
        return lifecycle.transition(post.status, action, principal.actor)
    except lifecycle.ActorForbidden as exc:
        raise Forbidden(exc.message) from None
    except lifecycle.StatusConflict as exc:
        raise Conflict(exc.message, status=post.status.value) from None


def _check_revision(post: ScheduledPost, expected: int | None) -> None:
    if expected is not None and expected != post.revision:
        raise Conflict(
            f"revision mismatch: If-Match names revision {expected} but the post is at "
            f"revision {post.revision}; reload it and try again"
        )


def content_of(post: ScheduledPost | PostRow) -> tuple[PostContent, list[TargetContent]]:
    """The plain values publish validation and connectors work on."""
    content = PostContent(
        type=post.type,
        media=media_items(post.media),
        media_type=post.media_type,
        scheduled_for=post.scheduled_for,
    )
    targets = [
        TargetContent(
            channel_id=t.channel_id,
            caption=t.caption,
            first_comment=t.first_comment,
            options=dict(t.options or {}),
        )
        for t in post.targets
    ]
    return content, targets


def _ensure_publishable(post: ScheduledPost, now: datetime, *, require_future: bool = True) -> None:
    content, targets = content_of(post)
    channels = {
        t.channel_id: facts(t.channel)
        for t in post.targets
        if t.channel.workspace_id == post.workspace_id
    }
    problems = validate_for_publish(content, targets, channels, now, require_future=require_future)
    if problems:
        raise BadRequest(
            summarize(problems),
            problems=[
                {"channelId": p.channel_id, "rule": p.rule, "message": p.message} for p in problems
            ],
        )


def _record(
    session: AsyncSession,
    post: ScheduledPost,
    action: Action,
    principal: Principal,
    from_status: PostStatus | None,
    now: datetime,
    notes: str | None = None,
) -> None:
    session.add(
        PostEvent(
            id=new_id("evt"),
            post=post,
            action=action.value,
            actor_type=principal.actor_type,
            actor_id=principal.actor_id,
            from_status=from_status,
            to_status=post.status,
            notes=notes,
            revision=post.revision,
            created_at=now,
        )
    )


async def _new_targets(
    session: AsyncSession,
    workspace_id: str,
    entries: Mapping[str, ChannelEntry],
    first_position: int,
) -> list[Target]:
    """Targets for channels new to a post; each channel must exist in the workspace."""
    channels = await channels_by_id(session, workspace_id, list(entries))
    unknown = [cid for cid in entries if cid not in channels]
    if unknown:
        raise BadRequest(
            f"channel {', '.join(unknown)} does not exist in this workspace "
            "(GET /channels lists them)"
        )
    return [
        Target(
            channel_id=cid,
            channel=channels[cid],
            position=first_position + i,
            caption=entry.caption,
            first_comment=entry.firstComment,
            options=dict(entry.options or {}),
        )
        for i, (cid, entry) in enumerate(entries.items())
    ]


def _media_json(body: ScheduledPostCreate | ScheduledPostUpdate) -> Any:
    return body.model_dump(mode="json", include={"media"}, exclude_none=False).get("media")


async def create_post(
    session: AsyncSession, principal: Principal, body: ScheduledPostCreate, now: datetime
) -> ScheduledPost:
    try:
        status = lifecycle.initial_status(PostStatus(body.status), principal.actor)
    except lifecycle.ActorForbidden as exc:
        raise Forbidden(exc.message) from None
    post = ScheduledPost(
        id=new_id("post"),
        workspace_id=principal.workspace_id,
        type=body.type,
        media=_media_json(body),
        media_type=body.mediaType,
        scheduled_for=body.scheduledFor,
        timezone=body.timezone,
        status=status,
        notes=body.notes,
        created_by=principal.actor_id,
        created_at=now,
        updated_at=now,
        revision=1,
    )
    post.targets = await _new_targets(session, principal.workspace_id, body.channels, 0)
    if status is PostStatus.WAITING_FOR_APPROVAL:
        _ensure_publishable(post, now)
    session.add(post)
    _record(session, post, Action.CREATE, principal, None, now)
    await session.flush()
    return post


def _merge_target(target: Target, entry: ChannelEntry) -> None:
    fields = entry.model_fields_set
    if "caption" in fields:
        target.caption = entry.caption
    if "firstComment" in fields:
        target.first_comment = entry.firstComment
    if "options" in fields:
        target.options = dict(entry.options or {})


async def _apply_channel_changes(
    session: AsyncSession, post: ScheduledPost, changes: Mapping[str, ChannelEntry | None]
) -> None:
    existing = {t.channel_id: t for t in post.targets}
    added: dict[str, ChannelEntry] = {}
    for cid, entry in changes.items():
        if entry is None:
            if cid in existing:
                post.targets.remove(existing[cid])
        elif cid in existing:
            _merge_target(existing[cid], entry)
        else:
            added[cid] = entry
    if added:
        next_position = max((t.position for t in post.targets), default=-1) + 1
        post.targets.extend(await _new_targets(session, post.workspace_id, added, next_position))
    if len(post.targets) > MAX_CHANNELS:
        # Each PATCH is bounded by its schema; this bounds what they add up to.
        raise RequestShapeError(
            f"a post has at most {MAX_CHANNELS} channels; remove some (set them to null) first",
            ["channels"],
            "too_long",
        )


def _reject_explicit_nulls(body: ScheduledPostUpdate) -> None:
    for name in _NOT_NULL_ON_PATCH:
        if name in body.model_fields_set and getattr(body, name) is None:
            raise RequestShapeError(f"{name} cannot be null", [name], "null_not_allowed")


async def update_post(
    session: AsyncSession,
    principal: Principal,
    post_id: str,
    body: ScheduledPostUpdate,
    now: datetime,
    expected_revision: int | None = None,
) -> ScheduledPost:
    """PATCH: move back to draft and/or edit fields; WAITING posts are re-validated."""
    _reject_explicit_nulls(body)
    post = await get_post(session, principal.workspace_id, post_id, for_update=True)
    from_status = post.status
    fields = body.model_fields_set - {"status"}
    if body.status is not None:
        post.status = _take(post, Action.MOVE_TO_DRAFT, principal)
    if fields or body.status is None:
        post.status = _take(post, Action.EDIT, principal)
    _check_revision(post, expected_revision)
    if not fields and post.status is from_status:
        return post  # nothing to change: no new revision, no event
    post.touch(now)
    if body.status is not None:
        _clear_approval(post)
    if "type" in fields and body.type is not None:
        post.type = body.type
    if "media" in fields:
        post.media = _media_json(body)
    if "mediaType" in fields:
        post.media_type = body.mediaType
    if "scheduledFor" in fields:
        post.scheduled_for = body.scheduledFor
    if "timezone" in fields:
        post.timezone = body.timezone
    if "notes" in fields:
        post.notes = body.notes
    if body.channels is not None:
        await _apply_channel_changes(session, post, body.channels)
    if fields and lifecycle.needs_publish_validation(Action.EDIT, post.status):
        _ensure_publishable(post, now)
        _clear_approval(post)
    action = Action.MOVE_TO_DRAFT if body.status is not None else Action.EDIT
    _record(session, post, action, principal, from_status, now)
    await session.flush()
    return post


def _clear_approval(post: ScheduledPost) -> None:
    post.approved_by = None
    post.approved_at = None


def _reset_targets(post: ScheduledPost, status: TargetStatus | None) -> None:
    for target in post.targets:
        target.status = status
        target.external_post_id = None
        target.external_url = None
        target.published_at = None
        target.attempt_count = 0
        target.error_code = None
        target.error_message = None


@dataclass(frozen=True)
class ActionRequest:
    """An action on an existing post, with what some actions carry."""

    action: Action
    notes: str | None = None
    scheduled_for: datetime | None = None
    expected_revision: int | None = None


async def act(
    session: AsyncSession,
    principal: Principal,
    post_id: str,
    request: ActionRequest,
    now: datetime,
) -> ScheduledPost:
    """Take one lifecycle action (submit, reject, approve, publish, revert, cancel, delete)."""
    post = await get_post(session, principal.workspace_id, post_id, for_update=True)
    from_status = post.status
    to_status = _take(post, request.action, principal)
    _check_revision(post, request.expected_revision)
    post.touch(now)
    if request.action is Action.APPROVE:
        _set_approved_time(post, request.scheduled_for, now)
    if lifecycle.needs_publish_validation(request.action, from_status):
        _ensure_publishable(post, now, require_future=request.action is not Action.PUBLISH_NOW)
    effect = _EFFECTS.get(request.action)
    if effect is not None:
        await effect(session, post, principal, request, now)
    post.status = to_status
    _record(session, post, request.action, principal, from_status, now, request.notes)
    await session.flush()
    return post


def _set_approved_time(post: ScheduledPost, requested: datetime | None, now: datetime) -> None:
    """Approving needs a future instant: the reviewer's new one, or the post's own."""
    if requested is not None:
        if requested <= now:
            raise BadRequest(f"scheduledFor {requested.isoformat()} is not in the future")
        post.scheduled_for = requested
    elif post.scheduled_for is not None and post.scheduled_for <= now:
        raise BadRequest(
            f"scheduledFor {post.scheduled_for.isoformat()} has passed; "
            "approve with a new future scheduledFor"
        )


async def _reject(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    post.notes = req.notes
    post.rejected_by = principal.actor_id
    post.rejected_at = now
    _clear_approval(post)


async def _schedule(
    session: AsyncSession, post: ScheduledPost, principal: Principal, now: datetime
) -> None:
    assert post.scheduled_for is not None
    task = await enqueue_publish(
        session, workspace_id=post.workspace_id, post_id=post.id, run_at=post.scheduled_for
    )
    post.task_id = task.id
    post.approved_by = principal.actor_id
    post.approved_at = now
    _reset_targets(post, TargetStatus.PENDING)


async def _approve(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    await _schedule(session, post, principal, now)


async def _publish_now(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    await cancel_post_tasks(session, post.id, now)
    post.scheduled_for = now
    await _schedule(session, post, principal, now)


async def _revert(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    await cancel_post_tasks(session, post.id, now)
    post.task_id = None
    _clear_approval(post)
    _reset_targets(post, None)


async def _cancel(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    await cancel_post_tasks(session, post.id, now)
    for target in post.targets:
        target.status = TargetStatus.CANCELED


async def _delete(
    session: AsyncSession,
    post: ScheduledPost,
    principal: Principal,
    req: ActionRequest,
    now: datetime,
) -> None:
    if post.status is PostStatus.SCHEDULED:
        await cancel_post_tasks(session, post.id, now)
        for target in post.targets:
            target.status = TargetStatus.CANCELED
    post.deleted_at = now


_EFFECTS = {
    Action.REJECT: _reject,
    Action.APPROVE: _approve,
    Action.PUBLISH_NOW: _publish_now,
    Action.REVERT: _revert,
    Action.CANCEL: _cancel,
    Action.DELETE: _delete,
}


# --- listing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostFilter:
    statuses: Sequence[PostStatus] = ()
    channel_id: str | None = None
    scheduled_from: datetime | None = None
    scheduled_to: datetime | None = None


async def list_posts(
    session: AsyncSession,
    workspace_id: str,
    filters: PostFilter,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[ScheduledPost], str | None]:
    """A page of live posts, newest first by id (keyset paging: stable under inserts)."""
    query = (
        select(ScheduledPost)
        .where(ScheduledPost.workspace_id == workspace_id, ScheduledPost.deleted_at.is_(None))
        .options(selectinload(ScheduledPost.targets).selectinload(Target.channel))
    )
    if filters.statuses:
        query = query.where(ScheduledPost.status.in_(list(filters.statuses)))
    if filters.channel_id is not None:
        query = query.where(
            exists().where(
                Target.post_id == ScheduledPost.id, Target.channel_id == filters.channel_id
            )
        )
    if filters.scheduled_from is not None:
        query = query.where(ScheduledPost.scheduled_for >= filters.scheduled_from)
    if filters.scheduled_to is not None:
        query = query.where(ScheduledPost.scheduled_for < filters.scheduled_to)
    return await entity_page(
        session, query, ScheduledPost.id, limit=limit, cursor=cursor, descending=True
    )


async def list_events(
    session: AsyncSession, workspace_id: str, post_id: str, *, limit: int, cursor: str | None
) -> tuple[list[PostEvent], str | None]:
    """A page of the post's audit trail, oldest first."""
    await get_post(session, workspace_id, post_id)
    return await entity_page(
        session,
        select(PostEvent).where(PostEvent.post_id == post_id),
        PostEvent.id,
        limit=limit,
        cursor=cursor,
    )


async def list_attempts(
    session: AsyncSession, workspace_id: str, post_id: str, *, limit: int, cursor: str | None
) -> tuple[list[PublishAttempt], str | None]:
    """A page of the publishing ledger of a post: every platform call, oldest first."""
    await get_post(session, workspace_id, post_id)
    return await entity_page(
        session,
        select(PublishAttempt).where(PublishAttempt.post_id == post_id),
        PublishAttempt.id,
        limit=limit,
        cursor=cursor,
    )


async def resolve_target(
    session: AsyncSession,
    principal: Principal,
    post_id: str,
    channel_id: str,
    body: ResolveRequest,
    now: datetime,
) -> ScheduledPost:
    """A person settles an UNKNOWN target: it is live, or it is to be published again."""
    post = await get_post(session, principal.workspace_id, post_id, for_update=True)
    from_status = post.status
    _take(post, Action.RESOLVE, principal)
    target = next((t for t in post.targets if t.channel_id == channel_id), None)
    if target is None:
        raise NotFound(f"post {post_id} has no channel {channel_id}")
    if target.status is not TargetStatus.UNKNOWN:
        current = target.status.value if target.status else "not scheduled"
        raise Conflict(
            f"channel {channel_id} is {current}; only an UNKNOWN target is resolved by hand"
        )
    post.touch(now)
    if body.outcome == "PUBLISHED":
        mark_published(
            session,
            post,
            target,
            Published(
                external_post_id=body.externalPostId or target.external_post_id or "",
                external_url=target.external_url,
                published_at=now,
            ),
        )
    else:
        target.status = TargetStatus.PENDING
        target.error_code = None
        target.error_message = None
        enqueue_target_task(
            session,
            kind=TaskKind.PUBLISH_TARGET,
            workspace_id=post.workspace_id,
            post_id=post.id,
            channel_id=channel_id,
            run_at=now,
        )
    post.status = derived_post_status(post)
    _record(
        session, post, Action.RESOLVE, principal, from_status, now, f"{channel_id}: {body.outcome}"
    )
    await session.flush()
    return post


_NOT_APPROVED = frozenset({PostStatus.DRAFT, PostStatus.WAITING_FOR_APPROVAL, PostStatus.REJECTED})


def authorize_dry_run(principal: Principal) -> None:
    """A dry run fetches what the post names, so it takes the right to create posts (a
    viewer or a reviewer gets 403)."""
    if Action.CREATE in lifecycle.PERMISSIONS[principal.actor]:
        return
    who = [a.value for a in lifecycle.allowed_actors(Action.CREATE) if a is not Actor.API_KEY]
    raise Forbidden(
        f"role {principal.actor.value} cannot dry-run posts (a dry run fetches their media); "
        f"role {', '.join(who)} can"
    )


@dataclass(frozen=True)
class DryRunPlan:
    """What a dry run needs from the database, read before anything is fetched: the post as
    the rules see it, its channels, and whether its time must still be in the future."""

    content: PostContent
    targets: list[TargetContent]
    channels: dict[str, ChannelFacts]
    require_future: bool


async def dry_run_plan(
    session: AsyncSession, workspace_id: str, post: ScheduledPostCreate | str
) -> DryRunPlan:
    """Read what the dry run of a body not stored (`POST .../validate`) or of a stored post
    (`GET .../{id}/validation`) needs; nothing else is done in the transaction."""
    if isinstance(post, str):
        stored = await get_post(session, workspace_id, post)
        content, targets = content_of(stored)
        channels = {
            t.channel_id: facts(t.channel)
            for t in stored.targets
            if t.channel.workspace_id == workspace_id
        }
        # A post not yet approved must still be in the future when it is; one already
        # scheduled or published is checked for what it is, not when.
        require_future = stored.scheduled_for is not None and stored.status in _NOT_APPROVED
        return DryRunPlan(content, list(targets), channels, require_future)
    content = PostContent(
        type=post.type,
        media=media_items(_media_json(post)),
        media_type=post.mediaType,
        scheduled_for=post.scheduledFor,
    )
    targets = [
        TargetContent(cid, entry.caption, entry.firstComment, dict(entry.options or {}))
        for cid, entry in post.channels.items()
    ]
    found = await channels_by_id(session, workspace_id, list(post.channels))
    channels = {cid: facts(channel) for cid, channel in found.items()}
    return DryRunPlan(content, targets, channels, post.scheduledFor is not None)


async def dry_run(
    plan: DryRunPlan,
    now: datetime,
    *,
    fetch: FetchPolicy,
    live: PlatformContext | None = None,
) -> list[Problem]:
    """Every problem publishing would meet, without writing anything: the publish rules, the
    media as the servers describe them (fetched through the guarded fetcher), and with
    `live`, what each platform says now (its quota, the token). Takes no session: it waits on
    the network, and no transaction may be open meanwhile."""
    content, targets, channels = plan.content, plan.targets, plan.channels
    problems = validate_for_publish(
        content, targets, channels, now, require_future=plan.require_future
    )
    problems.extend(await media_problems(content, targets, channels, fetch))
    if live is not None:
        for target in targets:
            channel = channels.get(target.channel_id)
            platform = get_platform(channel.platform) if channel is not None else None
            if channel is None:
                continue
            # A platform may look at the target too (TikTok: the creator's options now).
            per_target = getattr(platform, "live_target_problems", None)
            check = getattr(platform, "live_problems", None)
            if per_target is not None:
                problems.extend(await per_target(live, content, target, channel))
            elif check is not None:
                problems.extend(await check(live, channel))
    return problems
