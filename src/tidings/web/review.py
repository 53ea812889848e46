"""The approval queue and a post's own page (results, attempts, history, actions).

Every action here calls the same service as the JSON API (`service.act`, `update_post`,
`resolve_target`), so the lifecycle's rules and the roles are enforced in one place: a
role that may not act gets the service's 403 as a page, and a refusal the person can fix
(a time that has passed, a post that changed meanwhile) comes back as a flash message on
the page they came from, with nothing written.
"""

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from tidings.auth.models import ApiKey, User
from tidings.db.session import SessionDep, StateDep
from tidings.errors import Conflict, Forbidden, NotFound, TidingsError
from tidings.paging import MAX_PAGE, every_page
from tidings.platforms.base import MediaType, media_items
from tidings.publishing.models import PublishAttempt
from tidings.publishing.states import TargetStatus
from tidings.scheduled_posts import service
from tidings.scheduled_posts.lifecycle import TRANSITIONS, Action, PostStatus
from tidings.scheduled_posts.models import PostEvent, ScheduledPost
from tidings.scheduled_posts.schemas import RejectRequest, ResolveRequest, ScheduledPostUpdate
from tidings.scheduled_posts.service import ActionRequest, PostFilter
from tidings.timefmt import utcnow
from tidings.web.deps import CurrentViewer, Viewer, checked_form
from tidings.web.render import local, redirect, render

router = APIRouter(include_in_schema=False)

#: The queue reads every waiting post (oldest first) up to this many.
QUEUE_LIMIT = 500
#: How a time is shown in a flash message: "Tue 3 Dec, 10:00".
SHORT = "%a %-d %b, %H:%M"
_VIDEO = re.compile(r"\.(mp4|mov|m4v|webm|avi|mkv)(\?.*)?$", re.IGNORECASE)


# --- what the templates show ---------------------------------------------------------------


@dataclass(frozen=True)
class Thumb:
    url: str
    alt: str
    video: bool


def thumbnails(post: ScheduledPost) -> list[Thumb]:
    """The post's media as thumbnails (a video shows as a video, muted, without autoplay)."""
    items = media_items(post.media)
    video_post = post.media_type is MediaType.VIDEO
    return [
        Thumb(item.url, item.alt_text or "", video_post or bool(_VIDEO.search(item.url)))
        for item in items
    ]


async def names_of(session: AsyncSession, workspace_id: str, ids: Iterable[str]) -> dict[str, str]:
    """People's emails and API keys' names by id, for "who did it" (an id stays an id if it
    is neither)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    found: dict[str, str] = {}
    users = await session.execute(select(User.id, User.email).where(User.id.in_(wanted)))
    found.update({uid: email for uid, email in users.all()})
    keys = await session.execute(
        select(ApiKey.id, ApiKey.name).where(
            ApiKey.id.in_(wanted - found.keys()), ApiKey.workspace_id == workspace_id
        )
    )
    found.update({kid: f"API key “{name}”" for kid, name in keys.all()})
    return found


_VERBS = {
    "create": "created the post",
    "edit": "edited it",
    "move-to-draft": "moved it back to draft",
    "submit-for-approval": "submitted it for approval",
    "reject": "rejected it",
    "approve": "approved it",
    "publish": "chose to publish it now",
    "revert": "reverted it to draft",
    "cancel": "canceled it",
    "delete": "deleted it",
    "resolve": "settled a channel by hand",
}


@dataclass(frozen=True)
class Step:
    """One line of a post's history."""

    at: datetime
    who: str | None
    what: str
    to_status: str | None
    notes: str | None


def history(
    post: ScheduledPost, events: list[PostEvent], names: dict[str, str], channels: dict[str, str]
) -> list[Step]:
    """The audit trail in words, with each channel's publication (the engine's doing) among
    the people's steps, oldest first."""
    steps = []
    for event in events:
        what = _VERBS.get(event.action, event.action)
        if event.action == "create" and event.to_status is PostStatus.WAITING_FOR_APPROVAL:
            what = "created the post and submitted it for approval"
        notes = event.notes
        if event.action == "resolve" and notes:
            channel_id, _, outcome = notes.partition(": ")
            notes = f"{channels.get(channel_id, channel_id)}: {outcome}"
        steps.append(
            Step(
                at=event.created_at,
                who=names.get(event.actor_id, event.actor_id),
                what=what,
                to_status=event.to_status.value,
                notes=notes,
            )
        )
    for target in post.targets:
        if target.published_at is not None and target.status in (
            TargetStatus.PUBLISHED,
            TargetStatus.SENT_TO_INBOX,
        ):
            verb = "Published on" if target.status is TargetStatus.PUBLISHED else "Sent to inbox of"
            steps.append(
                Step(target.published_at, None, f"{verb} {target.channel.name}", None, None)
            )
    return sorted(steps, key=lambda s: _aware(s.at))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _may_now(viewer: Viewer, post: ScheduledPost, action: Action) -> bool:
    """Whether the viewer's role may take `action` and the post's status allows it."""
    return viewer.may(action.value) and post.status in TRANSITIONS[action]


def actions_for(viewer: Viewer, post: ScheduledPost) -> dict[str, bool]:
    """What the page offers: only what this person may do to the post as it is now."""
    offered = {a.value: _may_now(viewer, post, a) for a in Action if a is not Action.CREATE}
    offered["resolve"] = viewer.may("resolve") and any(
        t.status is TargetStatus.UNKNOWN for t in post.targets
    )
    # Editing is the composer's page; offered where the lifecycle allows it.
    offered["review"] = offered["approve"] or offered["reject"] or offered["publish"]
    return offered


def _context(viewer: Viewer, post: ScheduledPost, now: datetime) -> dict[str, Any]:
    scheduled = post.scheduled_for
    return {
        "post": post,
        "thumbs": thumbnails(post),
        "actions": actions_for(viewer, post),
        "time_passed": scheduled is not None and _aware(scheduled) <= now,
        "default_time": _input_value(max(_aware(scheduled), now) if scheduled else now, viewer),
    }


def _input_value(value: datetime, viewer: Viewer) -> str:
    """An instant as a datetime-local input shows it, in the viewer's timezone."""
    return value.astimezone(ZoneInfo(viewer.timezone)).strftime("%Y-%m-%dT%H:%M")


def parse_local(text: str, zone: str) -> datetime:
    """A datetime-local value ("2026-12-03T10:00"), read in `zone`, as a UTC instant."""
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("Enter a date and a time, such as 2026-12-03 10:00.") from None
    if naive.tzinfo is not None:
        raise ValueError("Enter a date and a time without a timezone.")
    return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- pages -------------------------------------------------------------------------------


@router.get("/app/queue", response_class=HTMLResponse)
async def queue(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    """Posts waiting for approval, oldest first, each with its preview and the decisions."""
    waiting: list[ScheduledPost] = []
    cursor: str | None = None
    while len(waiting) < QUEUE_LIMIT:
        page, cursor = await service.list_posts(
            session,
            viewer.workspace_id,
            PostFilter(statuses=[PostStatus.WAITING_FOR_APPROVAL]),
            limit=100,
            cursor=cursor,
        )
        waiting.extend(page)
        if cursor is None:
            break
    waiting.reverse()  # listed newest first by id: ids are creation order
    names = await names_of(session, viewer.workspace_id, (p.created_by for p in waiting))
    now = utcnow()
    return render(
        request,
        "queue.html",
        viewer,
        items=[_context(viewer, post, now) for post in waiting],
        names=names,
        more=cursor is not None,
    )


async def _post_page_context(
    session: AsyncSession, viewer: Viewer, post: ScheduledPost
) -> dict[str, Any]:
    attempts = await every_page(
        lambda cursor: service.list_attempts(
            session, viewer.workspace_id, post.id, limit=MAX_PAGE, cursor=cursor
        )
    )
    channels = {t.channel_id: t.channel.name for t in post.targets}
    return {
        **_context(viewer, post, utcnow()),
        "attempts": attempts,
        "channels": channels,
        "live": _live(post),
        "attempt_seconds": _seconds,
    }


#: Target states the engine is still working on (UNKNOWN waits on a person instead).
_IN_FLIGHT = frozenset({TargetStatus.PENDING, TargetStatus.PUBLISHING})


def _live(post: ScheduledPost) -> bool:
    """Whether the post's page should keep its status part up to date: while it is due,
    while a channel is being published, and while a first comment waits to be posted; not
    while all that is left is a person settling an UNKNOWN channel."""
    if post.status is PostStatus.SCHEDULED:
        return True
    if post.status is PostStatus.PUBLISHING and any(t.status in _IN_FLIGHT for t in post.targets):
        return True
    return any(t.first_comment_status == "PENDING" for t in post.targets)


def _seconds(attempt: PublishAttempt) -> str:
    if attempt.ended_at is None:
        return ""
    took = (_aware(attempt.ended_at) - _aware(attempt.started_at)).total_seconds()
    return f"{took:.1f} s"


@router.get("/app/posts/{post_id}", response_class=HTMLResponse)
async def post_page(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """One post: its status, each channel's result, the attempts, the history, the actions."""
    post = await service.get_post(session, viewer.workspace_id, post_id)
    events = await every_page(
        lambda cursor: service.list_events(
            session, viewer.workspace_id, post_id, limit=MAX_PAGE, cursor=cursor
        )
    )
    context = await _post_page_context(session, viewer, post)
    ids = [post.created_by, post.approved_by or "", post.rejected_by or ""]
    names = await names_of(session, viewer.workspace_id, ids + [e.actor_id for e in events])
    return render(
        request,
        "post.html",
        viewer,
        names=names,
        steps=history(post, events, names, context["channels"]),
        **context,
    )


@router.get("/app/posts/{post_id}/live", response_class=HTMLResponse)
async def post_live(
    request: Request,
    post_id: str,
    session: SessionDep,
    viewer: CurrentViewer,
    seen: str = "",
) -> Response:
    """The status part of a post's page, asked for every few seconds while it is scheduled
    or publishing; once the status differs from the one the page shows (`seen`), the whole
    page is reloaded (its actions and history change with it)."""
    post = await service.get_post(session, viewer.workspace_id, post_id)
    if seen and seen != post.status.value:
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    context = await _post_page_context(session, viewer, post)
    return render(request, "post_live.html", viewer, **context)


# --- actions -----------------------------------------------------------------------------


def _back(form: FormData, post_id: str) -> str:
    """Where an action returns: the queue or the post's page, nowhere else."""
    wanted = str(form.get("next") or "")
    return "/app/queue" if wanted == "/app/queue" else f"/app/posts/{post_id}"


def _revision(form: FormData) -> int | None:
    """The revision the person was looking at: acting on a post changed since is refused."""
    text = str(form.get("revision") or "")
    return int(text) if text.isdigit() else None


def _friendly(exc: TidingsError) -> str:
    """A refusal in the words of the page (the API's messages name endpoints and fields)."""
    if isinstance(exc, Conflict):
        status = exc.extra.get("status")
        if exc.message.startswith("revision mismatch"):
            return "This post changed since you opened the page: look at it again, then decide."
        if status:
            shown = str(status).replace("_", " ").lower()
            return f"This post is {shown} now: that is no longer possible."
    return exc.message


async def _run(
    session: AsyncSession,
    back: str,
    work: Callable[[], Awaitable[str]],
) -> Response:
    """Do one action and redirect with its message; a refusal the person can fix is undone
    and shown where they came from. Forbidden and not-found stay error pages."""
    try:
        message = await work()
    except (Forbidden, NotFound):
        raise
    except TidingsError as exc:
        await session.rollback()
        return redirect(back, _friendly(exc), kind="error")
    return redirect(back, message)


def _when(post: ScheduledPost, viewer: Viewer) -> str:
    return local(post.scheduled_for, viewer.timezone, SHORT) if post.scheduled_for else "now"


@router.post("/app/posts/{post_id}/approve")
async def approve(
    request: Request,
    post_id: str,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    viewer: CurrentViewer,
) -> Response:
    """Approve at the post's own time, or at the date and time entered (viewer's timezone)."""
    form = await checked_form(request, viewer)
    back = _back(form, post_id)
    entered = str(form.get("scheduled_for") or "").strip()
    when: datetime | None = None
    if entered or form.get("change_time"):
        try:
            when = parse_local(entered, viewer.timezone)
        except ValueError as exc:
            return redirect(back, str(exc), kind="error")
        if when <= utcnow():
            shown = local(when, viewer.timezone, SHORT)
            return redirect(back, f"{shown} has passed: choose a time ahead.", kind="error")

    async def work() -> str:
        request_ = ActionRequest(
            Action.APPROVE, scheduled_for=when, expected_revision=_revision(form)
        )
        post = await service.act(session, viewer.principal, post_id, request_, utcnow())
        background.add_task(state.wake_workers)
        return f"Approved for {_when(post, viewer)}"

    return await _run(session, back, work)


@router.post("/app/posts/{post_id}/publish")
async def publish_now(
    request: Request,
    post_id: str,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    viewer: CurrentViewer,
) -> Response:
    form = await checked_form(request, viewer)

    async def work() -> str:
        request_ = ActionRequest(Action.PUBLISH_NOW, expected_revision=_revision(form))
        await service.act(session, viewer.principal, post_id, request_, utcnow())
        background.add_task(state.wake_workers)
        return "Publishing now"

    # Publishing now is best watched on the post's own page.
    return await _run(session, f"/app/posts/{post_id}", work)


@router.post("/app/posts/{post_id}/reject")
async def reject(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """Reject with notes for the creator; without notes nothing is done."""
    form = await checked_form(request, viewer)
    back = _back(form, post_id)
    try:
        body = RejectRequest.model_validate({"notes": str(form.get("notes") or "")})
    except ValidationError:
        return redirect(
            back,
            "Write notes for the creator: a rejection needs a reason. Nothing was changed.",
            kind="error",
        )

    async def work() -> str:
        request_ = ActionRequest(Action.REJECT, notes=body.notes, expected_revision=_revision(form))
        await service.act(session, viewer.principal, post_id, request_, utcnow())
        return "Rejected: the creator will see your notes"

    return await _run(session, back, work)


def _simple(action: Action, done: str) -> Callable[..., Awaitable[Response]]:
    async def route(
        request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
    ) -> Response:
        form = await checked_form(request, viewer)

        async def work() -> str:
            request_ = ActionRequest(action, expected_revision=_revision(form))
            await service.act(session, viewer.principal, post_id, request_, utcnow())
            return done

        return await _run(session, _back(form, post_id), work)

    route.__name__ = action.value.replace("-", "_")
    route.__doc__ = f"{done} (the lifecycle's `{action.value}`)."
    return route


for _path, _action, _done in (
    ("submit", Action.SUBMIT, "Submitted for approval"),
    ("revert", Action.REVERT, "Reverted to draft: it will not be published"),
    ("cancel", Action.CANCEL, "Canceled: it will not be published"),
):
    router.add_api_route(
        f"/app/posts/{{post_id}}/{_path}", _simple(_action, _done), methods=["POST"]
    )


@router.post("/app/posts/{post_id}/draft")
async def move_to_draft(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """Back to draft (from rejected or waiting), to edit it in the composer."""
    form = await checked_form(request, viewer)

    async def work() -> str:
        body = ScheduledPostUpdate(status="DRAFT")
        await service.update_post(
            session, viewer.principal, post_id, body, utcnow(), _revision(form)
        )
        return "Moved back to draft: edit it, then submit it again"

    return await _run(session, f"/app/posts/{post_id}", work)


@router.post("/app/posts/{post_id}/delete")
async def delete(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """Delete the post (after the page's confirmation); back to the calendar."""
    form = await checked_form(request, viewer)
    try:
        request_ = ActionRequest(Action.DELETE, expected_revision=_revision(form))
        await service.act(session, viewer.principal, post_id, request_, utcnow())
    except (Forbidden, NotFound):
        raise
    except TidingsError as exc:
        await session.rollback()
        return redirect(f"/app/posts/{post_id}", _friendly(exc), kind="error")
    return redirect("/app/calendar", "Post deleted")


@router.post("/app/posts/{post_id}/targets/{channel_id}/resolve")
async def resolve(
    request: Request,
    post_id: str,
    channel_id: str,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    viewer: CurrentViewer,
) -> Response:
    """Settle a channel whose outcome is unknown: it is live (with its id if known), or
    publish it again."""
    form = await checked_form(request, viewer)
    back = f"/app/posts/{post_id}"
    external = str(form.get("external_id") or "").strip() or None
    try:
        body = ResolveRequest.model_validate(
            {"outcome": str(form.get("outcome") or ""), "externalPostId": external}
        )
    except ValidationError:
        return redirect(
            back, "Choose whether it is live or should be published again.", kind="error"
        )

    async def work() -> str:
        await service.resolve_target(session, viewer.principal, post_id, channel_id, body, utcnow())
        background.add_task(state.wake_workers)
        if body.outcome == "PUBLISHED":
            return "Marked as published"
        return "Publishing that channel again"

    return await _run(session, back, work)
