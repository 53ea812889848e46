"""The calendar (month and week, in the viewer's timezone) and the list of posts.

Every post is placed on the day the viewer reads it: its `scheduledFor`, or when it went
out for a published one. Drafts and rejected posts can be moved to another day (by drag
and drop, or the "Move to…" form beside each) through the same `update_post` the API's
PATCH uses, so roles, statuses and revisions are checked there and nowhere else."""

import calendar as months
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm.exc import StaleDataError

from tidings.channels.service import all_channels
from tidings.db.session import SessionDep
from tidings.errors import Forbidden, TidingsError
from tidings.scheduled_posts import service
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost
from tidings.scheduled_posts.schemas import ScheduledPostUpdate
from tidings.scheduled_posts.service import PostFilter
from tidings.timefmt import utcnow
from tidings.web.deps import CurrentViewer, checked_form
from tidings.web.render import redirect, render

router = APIRouter(include_in_schema=False)

VIEWS = ("month", "week", "list")
STATUS_LABELS = {
    PostStatus.DRAFT: "Draft",
    PostStatus.WAITING_FOR_APPROVAL: "Waiting for approval",
    PostStatus.REJECTED: "Rejected",
    PostStatus.SCHEDULED: "Scheduled",
    PostStatus.PUBLISHING: "Publishing",
    PostStatus.PUBLISHED: "Published",
    PostStatus.PARTIALLY_PUBLISHED: "Partially published",
    PostStatus.FAILED: "Failed",
    PostStatus.CANCELED: "Canceled",
}
#: Posts a person may move to another day from the calendar (an edit of `scheduledFor`).
MOVABLE = frozenset({PostStatus.DRAFT, PostStatus.REJECTED})
#: Placed by when they went out rather than when they were planned.
WENT_OUT = frozenset({PostStatus.PUBLISHED, PostStatus.PARTIALLY_PUBLISHED})
#: A draft dropped on a day without a time of its own gets this one.
DEFAULT_TIME = time(9, 0)
#: How many posts a month or week reads at most (in pages of `BATCH`).
BATCH, MAX_POSTS = 500, 5000
MAX_UNSCHEDULED = 50
LIST_LIMIT = 20
CAPTION_LENGTH = 80


@dataclass(frozen=True)
class Filters:
    statuses: tuple[PostStatus, ...] = ()
    channel: str = ""

    def params(self) -> list[tuple[str, str]]:
        pairs = [("status", s.value) for s in self.statuses]
        if self.channel:
            pairs.append(("channel", self.channel))
        return pairs

    def service_filter(self, **extra: datetime | None) -> PostFilter:
        return PostFilter(statuses=self.statuses, channel_id=self.channel or None, **extra)


@dataclass(frozen=True)
class Entry:
    """A post as the calendar shows it."""

    id: str
    status: PostStatus
    label: str
    when: datetime | None  # in the viewer's timezone
    caption: str
    channels: tuple[str, ...]
    revision: int
    movable: bool

    @property
    def url(self) -> str:
        return f"/app/posts/{self.id}"


@dataclass
class Day:
    day: date
    in_range: bool
    today: bool
    entries: list[Entry] = field(default_factory=list)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _placed_at(post: ScheduledPost) -> datetime | None:
    """When the post belongs on the calendar: when it went out, else when it is planned."""
    if post.status in WENT_OUT:
        out = [_aware(t.published_at) for t in post.targets if t.published_at is not None]
        if out:
            return min(w for w in out if w is not None)
    return _aware(post.scheduled_for)


def _caption(post: ScheduledPost) -> str:
    text = next((t.caption for t in post.targets if t.caption and t.caption.strip()), "")
    text = " ".join(text.split())
    if not text:
        return "(no caption)"
    return text if len(text) <= CAPTION_LENGTH else text[: CAPTION_LENGTH - 1].rstrip() + "…"


def _entry(post: ScheduledPost, zone: ZoneInfo, may_edit: bool) -> Entry:
    placed = _placed_at(post)
    return Entry(
        id=post.id,
        status=post.status,
        label=STATUS_LABELS[post.status],
        when=placed.astimezone(zone) if placed is not None else None,
        caption=_caption(post),
        channels=tuple(t.channel.name for t in post.targets),
        revision=post.revision,
        movable=may_edit and post.status in MOVABLE,
    )


def _parse_filters(status: Sequence[str], channel: str) -> tuple[Filters, list[str]]:
    problems = []
    statuses = []
    for value in status:
        if not value:
            continue
        try:
            statuses.append(PostStatus(value))
        except ValueError:
            problems.append(f"“{value[:40]}” is not a status; showing every status.")
            statuses = []
            break
    return Filters(tuple(dict.fromkeys(statuses)), channel.strip()[:40]), problems


def _parse_day(text: str | None, today: date) -> tuple[date, str | None]:
    if not text:
        return today, None
    try:
        if len(text) == 7:  # a month: 2030-03
            return date.fromisoformat(text + "-01"), None
        return date.fromisoformat(text), None
    except ValueError:
        return today, f"“{text[:40]}” is not a date (YYYY-MM-DD); showing today."


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _span(view: str, anchor: date) -> tuple[date, date, date, date]:
    """The days shown (first, last) and the periods before and after (their anchors)."""
    if view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        return first, first + timedelta(days=6), first - timedelta(days=7), first + timedelta(7)
    start = anchor.replace(day=1)
    end = start.replace(day=months.monthrange(start.year, start.month)[1])
    first = start - timedelta(days=start.weekday())
    last = end + timedelta(days=6 - end.weekday())
    previous = (start - timedelta(days=1)).replace(day=1)
    following = end + timedelta(days=1)
    return first, last, previous, following


def _title(view: str, anchor: date, first: date, last: date) -> str:
    if view == "week":
        if first.month == last.month:
            return f"{first.day} \N{EN DASH} {last.day} {last:%B %Y}"
        if first.year == last.year:
            return f"{first.day} {first:%B} \N{EN DASH} {last.day} {last:%B %Y}"
        return f"{first.day} {first:%B %Y} \N{EN DASH} {last.day} {last:%B %Y}"
    return f"{anchor:%B %Y}"


def _url(
    view: str, filters: Filters, at: date | None = None, extra: dict[str, str] | None = None
) -> str:
    pairs: list[tuple[str, str]] = [("view", view)]
    if at is not None:
        pairs.append(("at", at.isoformat()))
    pairs.extend(filters.params())
    pairs.extend((extra or {}).items())
    return "/app/calendar?" + urlencode(pairs)


async def _posts_between(
    session: SessionDep, workspace_id: str, filters: Filters, start: datetime, end: datetime
) -> tuple[list[ScheduledPost], bool]:
    """Every post planned (or gone out) between `start` and `end`, and whether there were
    more than the calendar shows. A published post may have gone out after it was planned,
    so the search starts two days earlier."""
    found: list[ScheduledPost] = []
    cursor = None
    wanted = filters.service_filter(scheduled_from=start - timedelta(days=2), scheduled_to=end)
    while True:
        page, cursor = await service.list_posts(
            session, workspace_id, wanted, limit=BATCH, cursor=cursor
        )
        found.extend(page)
        if cursor is None:
            return found, False
        if len(found) >= MAX_POSTS:
            return found, True


async def _unscheduled(
    session: SessionDep, workspace_id: str, filters: Filters
) -> list[ScheduledPost]:
    """Drafts (and rejected posts) without a date, newest first."""
    statuses = [s for s in (filters.statuses or MOVABLE) if s in MOVABLE]
    if not statuses:
        return []
    wanted = PostFilter(statuses=statuses, channel_id=filters.channel or None)
    found: list[ScheduledPost] = []
    cursor = None
    for _ in range(MAX_POSTS // BATCH):
        page, cursor = await service.list_posts(
            session, workspace_id, wanted, limit=BATCH, cursor=cursor
        )
        found.extend(p for p in page if p.scheduled_for is None)
        if cursor is None or len(found) >= MAX_UNSCHEDULED:
            break
    return found[:MAX_UNSCHEDULED]


@router.get("/app/calendar", response_class=HTMLResponse)
async def calendar_page(
    request: Request,
    session: SessionDep,
    viewer: CurrentViewer,
    view: str = "month",
    at: str | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    channel: str = "",
    cursor: str | None = None,
    limit: str | None = None,
) -> Response:
    """The month (default), the week or the list of posts, filtered by channel and status."""
    zone = ZoneInfo(viewer.timezone)
    today = utcnow().astimezone(zone).date()
    view = view if view in VIEWS else "month"
    filters, problems = _parse_filters(status or [], channel)
    channels = await all_channels(session, viewer.workspace_id)
    if filters.channel and filters.channel not in {c.id for c in channels}:
        problems.append("That channel is not in this workspace; showing every channel.")
        filters = Filters(filters.statuses, "")
    context: dict[str, Any] = {
        "view": view,
        "filters": filters,
        "channels": channels,
        "statuses": STATUS_LABELS,
        "problems": problems,
        "may_edit": viewer.may("edit"),
        "may_create": viewer.may("create"),
        "view_urls": {v: _url(v, filters) for v in VIEWS},
    }
    if view == "list":
        return await _list_view(request, session, viewer, zone, filters, cursor, limit, context)

    anchor, problem = _parse_day(at, today)
    if problem:
        problems.append(problem)
    if at and not problem:
        context["view_urls"] = {v: _url(v, filters, None if v == "list" else anchor) for v in VIEWS}
    first, last, previous, following = _span(view, anchor)
    start, end = _midnight(first, zone), _midnight(last + timedelta(days=1), zone)
    posts, truncated = await _posts_between(session, viewer.workspace_id, filters, start, end)
    may_edit = viewer.may("edit")
    days = {
        first + timedelta(days=i): Day(
            day=first + timedelta(days=i),
            in_range=view == "week" or (first + timedelta(days=i)).month == anchor.month,
            today=first + timedelta(days=i) == today,
        )
        for i in range((last - first).days + 1)
    }
    shown = 0
    for post in posts:
        entry = _entry(post, zone, may_edit)
        if entry.when is not None and entry.when.date() in days:
            days[entry.when.date()].entries.append(entry)
            shown += days[entry.when.date()].in_range
    for day in days.values():
        day.entries.sort(key=lambda e: (e.when or datetime.min.replace(tzinfo=UTC), e.id))
    unscheduled = [
        _entry(p, zone, may_edit) for p in await _unscheduled(session, viewer.workspace_id, filters)
    ]
    grid = list(days.values())
    return render(
        request,
        "calendar.html",
        viewer,
        **context,
        title=_title(view, anchor, first, last),
        anchor=anchor,
        weeks=[grid[i : i + 7] for i in range(0, len(grid), 7)],
        days=grid,
        shown=shown,
        truncated=truncated,
        unscheduled=unscheduled,
        show_unscheduled=not filters.statuses or any(s in MOVABLE for s in filters.statuses),
        previous_url=_url(view, filters, previous),
        next_url=_url(view, filters, following),
        today_url=_url(view, filters),
        weekdays=[date(2024, 1, d).strftime("%A") for d in range(1, 8)],
    )


async def _list_view(
    request: Request,
    session: SessionDep,
    viewer: CurrentViewer,
    zone: ZoneInfo,
    filters: Filters,
    cursor: str | None,
    limit_text: str | None,
    context: dict[str, Any],
) -> Response:
    problems: list[str] = context["problems"]
    limit = LIST_LIMIT
    if limit_text:
        if limit_text.isdigit() and 1 <= int(limit_text) <= 100:
            limit = int(limit_text)
        else:
            problems.append("A page holds 1 to 100 posts; showing 20.")
    try:
        posts, next_cursor = await service.list_posts(
            session, viewer.workspace_id, filters.service_filter(), limit=limit, cursor=cursor
        )
    except TidingsError:
        problems.append("That page link is no longer valid; here is the first page.")
        cursor = None
        posts, next_cursor = await service.list_posts(
            session, viewer.workspace_id, filters.service_filter(), limit=limit, cursor=None
        )
    extra = {"limit": str(limit)} if limit != LIST_LIMIT else {}
    return render(
        request,
        "calendar_list.html",
        viewer,
        **context,
        title="All posts",
        entries=[_entry(p, zone, False) for p in posts],
        first_url=_url("list", filters, extra=extra) if cursor else None,
        next_url=_url("list", filters, extra={**extra, "cursor": next_cursor})
        if next_cursor
        else None,
    )


@router.post("/app/calendar/move")
async def move_post(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    """Move a draft (or rejected post) to another day, keeping its time of day unless a
    new one is given; the edit is the API's PATCH of `scheduledFor`."""
    form = await checked_form(request, viewer)
    zone = ZoneInfo(viewer.timezone)
    view = str(form.get("view") or "month")
    view = view if view in ("month", "week") else "month"
    filters, _ = _parse_filters(
        [str(s) for s in form.getlist("status")], str(form.get("channel") or "")
    )
    post_id = str(form.get("post_id") or "")[:40]
    day_text = str(form.get("day") or "").strip()
    time_text = str(form.get("time") or "").strip()
    revision_text = str(form.get("revision") or "").strip()
    back = _url(view, filters, _parse_day(str(form.get("at") or ""), utcnow().date())[0])
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return redirect(back, "Pick the day to move the post to.", kind="error")
    try:
        at_time = time.fromisoformat(time_text) if time_text else None
    except ValueError:
        return redirect(back, "The time must look like 09:30.", kind="error")
    back = _url(view, filters, day)
    try:
        post = await service.get_post(session, viewer.workspace_id, post_id)
        if at_time is None:
            planned = _aware(post.scheduled_for)
            at_time = planned.astimezone(zone).time() if planned else DEFAULT_TIME
        local = datetime.combine(day, at_time.replace(tzinfo=None), tzinfo=zone)
        instant = local.astimezone(UTC)
        body = ScheduledPostUpdate.model_validate({"scheduledFor": instant.isoformat()})
        expected = int(revision_text) if revision_text.isdigit() else None
        moved = await service.update_post(
            session, viewer.principal, post_id, body, utcnow(), expected
        )
    except Forbidden:
        raise
    except (TidingsError, StaleDataError) as exc:
        await session.rollback()
        message = exc.message if isinstance(exc, TidingsError) else "it was changed meanwhile"
        return redirect(back, f"The post was not moved: {message}.", kind="error")
    when = _aware(moved.scheduled_for)
    assert when is not None
    shown = when.astimezone(zone).strftime("%a %d %b %Y at %H:%M")
    return redirect(back, f"Moved “{_caption(moved)}” to {shown}.")
