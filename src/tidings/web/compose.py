"""The composer: a new post or an edit, with live validation per channel.

The form is read into a `Draft` (exactly what was typed, to render it again) and turned
into the API's own request bodies (`ScheduledPostCreate` / `ScheduledPostUpdate`), which go
to the same service calls as `POST /scheduled-posts` and `PATCH /scheduled-posts/{id}`.
Live validation (`POST /app/compose/check`) runs the publish rules of the API
(`validate_for_publish` and each platform's `validate`) on the same content, without
storing anything and without looking at the media over the network.
"""

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from tidings.channels.models import Channel, ChannelStatus
from tidings.channels.service import all_channels, channels_by_id, facts
from tidings.db.session import READ_MOSTLY, SessionDep
from tidings.errors import BadRequest, Conflict, Forbidden
from tidings.platforms import instagram, sandbox, threads, tiktok
from tidings.platforms.base import (
    MediaItem,
    MediaType,
    PostContent,
    PostType,
    Problem,
    TargetContent,
    media_items,
)
from tidings.scheduled_posts import service
from tidings.scheduled_posts.lifecycle import Action, PostStatus
from tidings.scheduled_posts.models import ScheduledPost
from tidings.scheduled_posts.schemas import (
    ChannelEntry,
    ScheduledPostCreate,
    ScheduledPostUpdate,
)
from tidings.scheduled_posts.validation import validate_for_publish
from tidings.timefmt import utcnow
from tidings.web.deps import CurrentViewer, Viewer, checked_form
from tidings.web.render import redirect, render, sentence

router = APIRouter(include_in_schema=False)

#: Statuses in which a post can still be edited (the lifecycle's EDIT transitions).
EDITABLE = frozenset({PostStatus.DRAFT, PostStatus.REJECTED, PostStatus.WAITING_FOR_APPROVAL})


# --- platform options the form offers --------------------------------------------------


@dataclass(frozen=True)
class OptionField:
    """One platform option as a form control. A `switch` is stored as true when on, or,
    when `default_on`, as false when off (otherwise it is left out, the platform's
    default); a `choice` of yes/no/default is stored as true/false or left out."""

    name: str
    label: str
    kind: Literal["select", "switch", "choice", "text", "url"]
    choices: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    default_on: bool = False


_TIKTOK_PRIVACY = {
    "PUBLIC_TO_EVERYONE": "Everyone",
    "MUTUAL_FOLLOW_FRIENDS": "Friends",
    "FOLLOWER_OF_CREATOR": "Followers",
    "SELF_ONLY": "Only the creator",
}

PLATFORM_OPTIONS: dict[str, tuple[OptionField, ...]] = {
    "tiktok": (
        OptionField(
            "privacy_level",
            "Who can see it",
            "select",
            (
                ("", "Choose…"),
                *((level, _TIKTOK_PRIVACY[level]) for level in tiktok.PRIVACY_LEVELS),
            ),
            hint="TikTok requires this choice to be made for each post.",
        ),
        OptionField("disable_comment", "Turn off comments", "switch"),
        OptionField("disable_duet", "Turn off duets (videos)", "switch"),
        OptionField("disable_stitch", "Turn off stitches (videos)", "switch"),
        OptionField("is_aigc", "AI-generated content", "switch"),
        OptionField("brand_organic_toggle", "Promotes my own brand", "switch"),
        OptionField("brand_content_toggle", "Branded content (paid partnership)", "switch"),
        OptionField(
            "auto_publish",
            "Publish directly",
            "switch",
            hint="Off: the post goes to the creator's TikTok inbox to finish there.",
            default_on=True,
        ),
    ),
    "instagram": (
        OptionField("alt_text", "Alt text", "text", hint="Describes the image for screen readers."),
        OptionField(
            "share_to_feed",
            "Reels: also show in the feed",
            "choice",
            (("", "Instagram's default"), ("yes", "Yes"), ("no", "No")),
        ),
    ),
    "facebook": (
        OptionField("link", "Link", "url", hint="For a post without media: the link to share."),
    ),
    "threads": (
        OptionField(
            "reply_control",
            "Who can reply",
            "select",
            (
                ("", "Threads' default"),
                *((c, c.replace("_", " ")) for c in sorted(threads.REPLY_CONTROLS)),
            ),
        ),
    ),
}


def _scalar(text: str) -> Any:
    """An option value typed as text: JSON when it reads as JSON (true, 3, [..]), else text."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _as_line(name: str, value: Any) -> str:
    if isinstance(value, str) and _scalar(value) == value:
        return f"{name}={value}"
    return f"{name}={json.dumps(value)}"


# --- what was typed ----------------------------------------------------------------------


@dataclass
class ChannelDraft:
    """What was typed for one channel: overrides (empty: the shared text), options."""

    caption: str = ""
    first_comment: str = ""
    no_comment: bool = False
    options: dict[str, str] = field(default_factory=dict)
    extra: str = ""

    def switch_on(self, option: OptionField) -> bool:
        if option.name in self.options:
            return self.options[option.name] == "on"
        return option.default_on

    @property
    def customised(self) -> bool:
        return bool(self.caption or self.first_comment or self.no_comment or self.extra)


@dataclass
class Draft:
    """The composer's fields, as typed."""

    picked: list[str] = field(default_factory=list)
    caption: str = ""
    first_comment: str = ""
    media: str = ""
    type: str = PostType.POST.value
    media_type: str = ""
    when: str = ""
    timezone: str = "UTC"
    channels: dict[str, ChannelDraft] = field(default_factory=dict)
    revision: int | None = None

    def channel(self, cid: str) -> ChannelDraft:
        return self.channels.setdefault(cid, ChannelDraft())


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def read_form(form: FormData, channels: Sequence[Channel]) -> Draft:
    known = {c.id for c in channels}
    revision = _text(form, "revision")
    draft = Draft(
        picked=[v for v in form.getlist("channels") if isinstance(v, str) and v in known],
        caption=_text(form, "caption"),
        first_comment=_text(form, "first_comment"),
        media=_text(form, "media"),
        type=_text(form, "type") or PostType.POST.value,
        media_type=_text(form, "media_type"),
        when=_text(form, "when").strip(),
        timezone=_text(form, "timezone").strip(),
        revision=int(revision) if revision.isdigit() else None,
    )
    for channel in channels:
        cid = channel.id
        one = draft.channel(cid)
        one.caption = _text(form, f"caption.{cid}")
        one.first_comment = _text(form, f"first_comment.{cid}")
        one.no_comment = bool(form.get(f"no_comment.{cid}"))
        one.extra = _text(form, f"extra.{cid}")
        for option in PLATFORM_OPTIONS.get(channel.platform, ()):
            one.options[option.name] = _text(form, f"opt.{cid}.{option.name}").strip()
    return draft


def draft_of(post: ScheduledPost, channels: Sequence[Channel], fallback_zone: str) -> Draft:
    """The composer's fields for a stored post: the caption most channels share is the
    shared one, the others are overrides."""
    targets = list(post.targets)
    shared = Counter(t.caption or "" for t in targets).most_common(1)
    comments = Counter(t.first_comment or "" for t in targets if t.first_comment)
    zone = post.timezone or fallback_zone
    when = ""
    if post.scheduled_for is not None:
        instant = post.scheduled_for
        instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
        when = instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")
    draft = Draft(
        picked=[t.channel_id for t in targets],
        caption=shared[0][0] if shared else "",
        first_comment=comments.most_common(1)[0][0] if comments else "",
        media="\n".join(item.url for item in media_items(post.media)),
        type=post.type.value,
        media_type=post.media_type.value if post.media_type else "",
        when=when,
        timezone=zone,
        revision=post.revision,
    )
    platforms = {c.id: c.platform for c in channels}
    for target in targets:
        one = draft.channel(target.channel_id)
        if (target.caption or "") != draft.caption:
            one.caption = target.caption or ""
        if (target.first_comment or "") != draft.first_comment:
            one.first_comment = target.first_comment or ""
            one.no_comment = not target.first_comment
        options = dict(target.options or {})
        for option in PLATFORM_OPTIONS.get(platforms.get(target.channel_id, ""), ()):
            if option.name not in options:
                continue
            value = options.pop(option.name)
            if option.kind == "switch":
                one.options[option.name] = "on" if value is True else ""
            elif option.kind == "choice":
                one.options[option.name] = "yes" if value else "no"
            else:
                one.options[option.name] = str(value)
        one.extra = "\n".join(_as_line(k, v) for k, v in options.items())
    return draft


# --- from what was typed to the API's bodies --------------------------------------------


@dataclass
class Built:
    """The post the form describes, and what in the form could not be read."""

    type: PostType
    media: list[Any]
    media_type: MediaType | None
    scheduled_for: datetime | None
    timezone: str | None
    channels: dict[str, ChannelEntry]
    errors: list[str]
    note: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "media": self.media or None,
            "mediaType": self.media_type,
            "scheduledFor": self.scheduled_for,
            "timezone": self.timezone,
            "channels": self.channels,
        }


def _options(platform: str, one: ChannelDraft, name: str, errors: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for option in PLATFORM_OPTIONS.get(platform, ()):
        raw = one.options.get(option.name, "")
        if option.kind == "switch":
            if option.default_on and not raw:
                options[option.name] = False
            elif raw and not option.default_on:
                options[option.name] = True
        elif option.kind == "choice":
            if raw:
                options[option.name] = raw == "yes"
        elif raw:
            options[option.name] = raw
    for number, line in enumerate(one.extra.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            errors.append(f"{name}, other options, line {number}: write it as key=value")
            continue
        options[key.strip()] = _scalar(value)
    return options


def _media(text: str, alt_texts: Mapping[str, str], errors: list[str]) -> list[Any]:
    media: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        url = line.strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
            errors.append(f"Media line {number} is not a web address (http:// or https://)")
            continue
        media.append({"url": url, "altText": alt_texts[url]} if url in alt_texts else url)
    return media


def _instant(draft: Draft, errors: list[str]) -> tuple[datetime | None, str | None, str | None]:
    """The UTC instant the date and time mean in the chosen zone, the zone, and a note when
    the local time does not exist there (clocks going forward)."""
    zone_name = draft.timezone or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ValueError, KeyError):
        zone = None
    if zone is None or zone_name not in zone_names():
        errors.append(f"{zone_name!r} is not a time zone name (e.g. Europe/Paris)")
        return None, None, None
    if not draft.when:
        return None, zone_name, None
    try:
        local = datetime.fromisoformat(draft.when)
    except ValueError:
        errors.append("The date and time could not be read (e.g. 2027-01-15 09:30)")
        return None, zone_name, None
    if local.tzinfo is not None:
        local = local.replace(tzinfo=None)
    aware = local.replace(tzinfo=zone)
    instant = aware.astimezone(UTC)
    note = None
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        shown = instant.astimezone(zone).strftime("%H:%M")
        note = (
            f"{local:%H:%M} does not exist in {zone_name} that day (clocks go forward); "
            f"it is {shown}."
        )
    return instant, zone_name, note


def build(
    draft: Draft,
    channels: Mapping[str, Channel],
    alt_texts: Mapping[str, str] | None = None,
) -> Built:
    errors: list[str] = []
    try:
        post_type = PostType(draft.type)
    except ValueError:
        errors.append(f"Unknown post type {draft.type!r}")
        post_type = PostType.POST
    media_type = None
    if draft.media_type:
        try:
            media_type = MediaType(draft.media_type)
        except ValueError:
            errors.append(f"Unknown media type {draft.media_type!r}")
    media = _media(draft.media, alt_texts or {}, errors)
    instant, zone, note = _instant(draft, errors)
    entries: dict[str, ChannelEntry] = {}
    for cid in draft.picked:
        channel = channels.get(cid)
        if channel is None:
            continue
        one = draft.channel(cid)
        caption = one.caption if one.caption.strip() else draft.caption
        if one.no_comment:
            comment = ""
        elif one.first_comment.strip():
            comment = one.first_comment
        else:
            comment = draft.first_comment
        entries[cid] = ChannelEntry(
            caption=caption or None,
            firstComment=comment if comment.strip() else None,
            options=_options(channel.platform, one, channel.name, errors),
        )
    return Built(post_type, media, media_type, instant, zone, entries, errors, note)


def _shape_errors(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in error['loc']) or 'form'}: {error['msg']}"
        for error in exc.errors()
    ]


def create_body(built: Built, status: str) -> ScheduledPostCreate:
    return ScheduledPostCreate.model_validate({"status": status, **built.fields()})


def update_body(built: Built, post: ScheduledPost, *, to_draft: bool) -> ScheduledPostUpdate:
    channels: dict[str, ChannelEntry | None] = dict(built.channels)
    for target in post.targets:
        channels.setdefault(target.channel_id, None)  # unpicked: removed from the post
    fields = built.fields() | {"channels": channels}
    if to_draft:
        fields["status"] = "DRAFT"
    return ScheduledPostUpdate.model_validate(fields)


# --- live validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A caption's length as the platform counts it, against its limit (None: no limit
    Tidings knows of)."""

    length: int
    limit: int | None
    unit: str

    @property
    def over(self) -> bool:
        return self.limit is not None and self.length > self.limit


def count(platform: str, caption: str, content: PostContent) -> Count:
    if platform == "threads":
        return Count(
            threads.text_length(caption), threads.TEXT_LIMIT, "characters (emoji as bytes)"
        )
    if platform == "tiktok":
        # A photo post's caption is its description, which has a larger limit.
        photo = tiktok.is_photo_post(content)
        limit = tiktok.PHOTO_DESCRIPTION_LIMIT if photo else tiktok.CAPTION_LIMIT
        return Count(tiktok.utf16_length(caption), limit, "UTF-16 units")
    if platform == "instagram":
        return Count(len(caption), instagram.CAPTION_LIMIT, "characters")
    if platform == "sandbox":
        return Count(len(caption), sandbox.CAPTION_LIMIT, "characters")
    return Count(len(caption), None, "characters")


_PLAIN = {
    "scheduledFor.required": "Choose the date and time to publish.",
    "scheduledFor.future": "The date and time to publish has passed; choose a later one.",
    "media.required": "Add a media URL: publishing here needs a photo or a video.",
    "channels.required": "Pick at least one channel.",
    "caption.required": "The caption is empty.",
}


def plain(problem: Problem, channels: Mapping[str, Channel]) -> str:
    """A problem as people read it under its channel (the rule stays the API's)."""
    if problem.rule in _PLAIN:
        return _PLAIN[problem.rule]
    message = problem.message
    cid = problem.channel_id
    if cid is not None:
        channel = channels.get(cid)
        for prefix in (f"channel {cid}: ", f"channel {cid} ({channel.name if channel else ''}): "):
            message = message.removeprefix(prefix)
    return sentence(message)


@dataclass
class ChannelCheck:
    channel: Channel
    count: Count
    problems: list[str]


@dataclass
class Checks:
    """What the live panel shows."""

    errors: list[str]
    general: list[str]
    channels: list[ChannelCheck]
    instant: datetime | None
    zone: str | None
    note: str | None
    media: list[MediaItem]

    @property
    def ready(self) -> bool:
        return not self.errors and not self.general and not any(c.problems for c in self.channels)


def content_of(built: Built) -> tuple[PostContent, list[TargetContent]]:
    """The values the publish rules look at, built as `POST /scheduled-posts/validate`
    builds them from a request body."""
    content = PostContent(
        type=built.type,
        media=media_items(built.media or None),
        media_type=built.media_type,
        scheduled_for=built.scheduled_for,
    )
    targets = [
        TargetContent(cid, entry.caption, entry.firstComment, dict(entry.options or {}))
        for cid, entry in built.channels.items()
    ]
    return content, targets


async def checks_of(
    session: AsyncSession, workspace_id: str, built: Built, channels: Mapping[str, Channel]
) -> Checks:
    content, targets = content_of(built)
    found = await channels_by_id(session, workspace_id, [t.channel_id for t in targets])
    problems = validate_for_publish(
        content, targets, {cid: facts(c) for cid, c in found.items()}, utcnow()
    )
    per_channel = [
        ChannelCheck(
            channel=channels[t.channel_id],
            count=count(channels[t.channel_id].platform, t.caption or "", content),
            problems=[plain(p, channels) for p in problems if p.channel_id == t.channel_id],
        )
        for t in targets
    ]
    return Checks(
        errors=built.errors,
        general=[plain(p, channels) for p in problems if p.channel_id is None],
        channels=per_channel,
        instant=built.scheduled_for,
        zone=built.timezone,
        note=built.note,
        media=content.media,
    )


def problems_from(exc: BadRequest, channels: Mapping[str, Channel]) -> list[str]:
    """The problems a refused submission names, grouped as the live panel groups them."""
    listed = exc.extra.get("problems")
    if not isinstance(listed, list):
        return [exc.message]
    lines = []
    for item in listed:
        problem = Problem(item.get("channelId"), item.get("rule", ""), item.get("message", ""))
        channel = channels.get(problem.channel_id or "")
        text = plain(problem, channels)
        lines.append(f"{channel.name}: {text}" if channel else text)
    return lines


# --- pages ---------------------------------------------------------------------------------


@cache
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@cache
def sorted_zones() -> list[str]:
    return sorted(zone_names())


def _require(viewer: Viewer, action: str) -> None:
    if not viewer.may(action):
        raise Forbidden(
            f"Your role ({viewer.role.value}) cannot write posts; an editor, admin or owner can."
        )


async def _channels(session: AsyncSession, viewer: Viewer) -> list[Channel]:
    return await all_channels(session, viewer.workspace_id)


async def _page(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    channels: list[Channel],
    draft: Draft,
    *,
    post: ScheduledPost | None = None,
    refused: list[str] | None = None,
    refusal: str | None = None,
    status_code: int = 200,
) -> Response:
    by_id = {c.id: c for c in channels}
    built = build(draft, by_id)
    checks = await checks_of(session, viewer.workspace_id, built, by_id)
    return render(
        request,
        "compose.html",
        viewer,
        status_code=status_code,
        draft=draft,
        post=post,
        channels=channels,
        options=PLATFORM_OPTIONS,
        checks=checks,
        refused=refused or [],
        refusal=refusal,
        zones=sorted_zones(),
        post_types=[t.value for t in PostType],
        media_types=[t.value for t in MediaType],
        active=ChannelStatus.ACTIVE,
    )


@router.get("/app/compose", response_class=HTMLResponse)
async def compose_page(
    request: Request,
    session: SessionDep,
    viewer: CurrentViewer,
    date: Annotated[str | None, Query(max_length=10)] = None,
    channel: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """A new post; `?date=YYYY-MM-DD` starts it at 09:00 that day, `?channel=` picks one."""
    _require(viewer, "create")
    channels = await _channels(session, viewer)
    draft = Draft(timezone=viewer.timezone)
    active = [c for c in channels if c.status is ChannelStatus.ACTIVE]
    if channel and any(c.id == channel for c in channels):
        draft.picked = [channel]
    elif len(active) == 1:
        draft.picked = [active[0].id]
    if date:
        with suppress(ValueError):
            draft.when = datetime.fromisoformat(date).strftime("%Y-%m-%dT09:00")
    return await _page(request, session, viewer, channels, draft)


@router.post("/app/compose/check", response_class=HTMLResponse, openapi_extra=READ_MOSTLY)
async def check(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    """The live panel for the form as typed: the UTC instant, the media, each channel's
    counter and every problem publishing would meet. Nothing is stored."""
    if not (viewer.may("create") or viewer.may("edit")):
        _require(viewer, "create")
    form = await checked_form(request, viewer)
    channels = await _channels(session, viewer)
    by_id = {c.id: c for c in channels}
    draft = read_form(form, channels)
    checks = await checks_of(session, viewer.workspace_id, build(draft, by_id), by_id)
    return render(request, "compose_checks.html", viewer, checks=checks, oob=True)


@router.post("/app/compose")
async def create(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    """Save a new post as a draft, or submit it for approval (fully validated: on refusal
    the form comes back with the problems, and nothing is stored)."""
    form = await checked_form(request, viewer)
    channels = await _channels(session, viewer)
    by_id = {c.id: c for c in channels}
    draft = read_form(form, channels)
    submit = form.get("intent") == "submit"
    built = build(draft, by_id)
    try:
        body = create_body(built, "WAITING_FOR_APPROVAL" if submit else "DRAFT")
    except ValidationError as exc:
        built.errors.extend(_shape_errors(exc))
        body = ScheduledPostCreate(status="DRAFT")
    if built.errors and viewer.may("create"):
        return await _page(
            request, session, viewer, channels, draft, refused=built.errors, status_code=400
        )
    try:
        post = await service.create_post(session, viewer.principal, body, utcnow())
    except BadRequest as exc:
        await session.rollback()  # and every object read so far is stale: read them again
        channels = await _channels(session, viewer)
        by_id = {c.id: c for c in channels}
        return await _page(
            request,
            session,
            viewer,
            channels,
            draft,
            refused=problems_from(exc, by_id),
            status_code=400,
        )
    if submit:
        return redirect(f"/app/posts/{post.id}", "Submitted for approval.")
    return redirect(f"/app/posts/{post.id}", "Draft saved.")


def _why_locked(status: PostStatus) -> str:
    if status is PostStatus.SCHEDULED:
        return (
            "This post is scheduled. To change it, move it back to draft first "
            "(Revert to draft on the post's page); it will then need approval again."
        )
    if status is PostStatus.PUBLISHING:
        return "This post is being published right now, so it can no longer be changed."
    if status is PostStatus.CANCELED:
        return "This post was canceled; it can no longer be changed."
    return (
        f"This post is {status.value.replace('_', ' ').lower()}: what went out cannot be "
        "changed from Tidings."
    )


@router.get("/app/posts/{post_id}/edit", response_class=HTMLResponse)
async def edit_page(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """Edit a post in DRAFT, REJECTED or WAITING_FOR_APPROVAL; any other says why not."""
    _require(viewer, "edit")
    post = await service.get_post(session, viewer.workspace_id, post_id)
    if post.status not in EDITABLE:
        return render(
            request, "compose_locked.html", viewer, post=post, reason=_why_locked(post.status)
        )
    channels = await _channels(session, viewer)
    return await _page(
        request, session, viewer, channels, draft_of(post, channels, viewer.timezone), post=post
    )


def _alt_texts(post: ScheduledPost) -> dict[str, str]:
    return {item.url: item.alt_text for item in media_items(post.media) if item.alt_text}


@router.post("/app/posts/{post_id}/edit")
async def edit(
    request: Request, post_id: str, session: SessionDep, viewer: CurrentViewer
) -> Response:
    """Save the edit as a draft, or save and submit it for approval (a post already waiting
    stays waiting, validated again). The revision the form was read at is checked: a post
    changed meanwhile is reported, not overwritten."""
    form = await checked_form(request, viewer)
    post = await service.get_post(session, viewer.workspace_id, post_id)
    channels = await _channels(session, viewer)
    by_id = {c.id: c for c in channels}
    draft = read_form(form, channels)
    intent = form.get("intent")
    to_draft = intent == "draft"
    built = build(draft, by_id, _alt_texts(post))
    try:
        body = update_body(built, post, to_draft=to_draft)
    except ValidationError as exc:
        built.errors.extend(_shape_errors(exc))
        body = ScheduledPostUpdate()
    if built.errors and viewer.may("edit"):
        return await _page(
            request,
            session,
            viewer,
            channels,
            draft,
            post=post,
            refused=built.errors,
            status_code=400,
        )
    was = post.status
    try:
        post = await service.update_post(
            session, viewer.principal, post_id, body, utcnow(), draft.revision
        )
        if not to_draft and post.status in (PostStatus.DRAFT, PostStatus.REJECTED):
            request_submit = service.ActionRequest(Action.SUBMIT)
            post = await service.act(session, viewer.principal, post_id, request_submit, utcnow())
    except (BadRequest, Conflict) as exc:
        await session.rollback()  # and every object read so far is stale: read them again
        channels = await _channels(session, viewer)
        by_id = {c.id: c for c in channels}
        current = await service.get_post(session, viewer.workspace_id, post_id)
        refusal, refused = None, None
        if isinstance(exc, Conflict) and "revision" in exc.message:
            refusal = (
                "Someone changed this post while you were editing it (it is now at revision "
                f"{current.revision}). Your version is below and was not saved: open the post "
                "again to see theirs before you save."
            )
        elif isinstance(exc, Conflict):
            refusal = f"This post can no longer be saved this way: {exc.message}"
        else:
            refused = problems_from(exc, by_id)
        return await _page(
            request,
            session,
            viewer,
            channels,
            draft,
            post=current,
            refusal=refusal,
            refused=refused,
            status_code=409 if isinstance(exc, Conflict) else 400,
        )
    if to_draft:
        return redirect(f"/app/posts/{post.id}", "Draft saved.")
    if was is PostStatus.WAITING_FOR_APPROVAL:
        return redirect(
            f"/app/posts/{post.id}", "Changes saved; the post is still waiting for approval."
        )
    return redirect(f"/app/posts/{post.id}", "Submitted for approval.")
