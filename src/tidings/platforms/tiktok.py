"""TikTok (Content Posting API v2, open.tiktokapis.com), with a user access token.

Every post starts with `creator_info/query`: the creator's privacy options and the
interactions they have switched off are what the post may use (a `privacy_level` they do not
offer is refused before anything is sent; a switched-off interaction stays off).

- A video, Direct Post: `video/init` with `post_info` (the caption is TikTok's `title`) and
  the video either pulled by TikTok from its URL (`PULL_FROM_URL`, the default: the URL's
  domain must be verified in the app) or uploaded (`FILE_UPLOAD`, the `source` option: the
  video is streamed from its URL and sent in parts of `TIDINGS_TIKTOK_CHUNK_BYTES`, never
  held whole in memory).
- Photos (1 to 35, JPEG or WebP): `content/init` with `media_type: PHOTO`, pulled from their
  URLs; the caption is the description and the option `title` the photo post's title.
- `auto_publish: false` sends the video (`inbox/video/init`) or photos (`post_mode:
  MEDIA_UPLOAD`) to the creator's TikTok inbox instead, to finish in the app: the target
  ends `SENT_TO_INBOX`, not `PUBLISHED`.

`status/fetch` is then polled until `PUBLISH_COMPLETE` (or `SEND_TO_USER_INBOX`, or
`FAILED` with a `fail_reason`). TikTok takes no idempotency key: the `publish_id` is
persisted as soon as `init` returns, and a lost answer is reconciled from its status, never
by calling `init` again. The post's id arrives only after moderation; until then the target
keeps the `publish_id`.

Errors come as HTTP 200-or-not with `error.code` in the JSON envelope; each maps to a kind
and a stable `TIKTOK_<CODE>`. Access tokens last hours and are renewed on demand with the
refresh token, which TikTok rotates (the old one stops working): renewals are serialised
per channel and the new pair is stored before it is used (`store.renew_credentials`).
TikTok has no first comments.
"""

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from tidings.fetch import Fetcher, ForbiddenAddress
from tidings.platforms import graph
from tidings.platforms.base import (
    MB,
    ChannelFacts,
    LookupUnavailable,
    MediaLimit,
    MediaType,
    PlatformContext,
    PostContent,
    PostType,
    Problem,
    Problems,
    Published,
    PublishFailure,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.store import (
    Credentials,
    credentials,
    load_state,
    renew_credentials,
    save_state,
)
from tidings.publishing.states import ErrorKind
from tidings.timefmt import utcnow

PREFIX = "TIKTOK"
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
CAPTION_LIMIT = 2_200  # UTF-16 code units, hashtags and mentions included
PHOTO_TITLE_LIMIT, PHOTO_DESCRIPTION_LIMIT = 90, 4_000
PHOTO_MAX = 35
CHUNK_MIN, CHUNK_MAX = 5 * MB, 64 * MB
SOURCES = ("PULL_FROM_URL", "FILE_UPLOAD")
BOOLEAN_OPTIONS = (
    "disable_comment",
    "disable_duet",
    "disable_stitch",
    "brand_content_toggle",
    "brand_organic_toggle",
    "is_aigc",
    "auto_add_music",
    "auto_publish",
)
VIDEO_TYPES = {".mov": "video/quicktime", ".webm": "video/webm"}
#: A token this close to its expiry is renewed before it is used.
EXPIRY_MARGIN = timedelta(minutes=2)


def utf16_length(text: str) -> int:
    """TikTok counts text in UTF-16 code units: an emoji outside the BMP is two."""
    return len(text.encode("utf-16-le")) // 2


def is_photo_post(post: PostContent) -> bool:
    """Whether TikTok gets this post as photos (`content/init`) rather than a video."""
    if post.media_type is MediaType.VIDEO:
        return False
    if post.media_type in (MediaType.IMAGE, MediaType.CAROUSEL) or post.type is PostType.CAROUSEL:
        return True
    return bool(post.media) and not any(item.looks_like_video for item in post.media)


def _option(target: TargetContent, channel: ChannelFacts, name: str) -> Any:
    """A target option, else the channel's default for it."""
    value = target.options.get(name)
    return channel.options.get(name) if value is None else value


# --- errors ------------------------------------------------------------------------------

_NEXT_DAY = "next_day"
# error.code -> (kind, how long to wait when deferred)
_ERRORS: dict[str, tuple[ErrorKind, timedelta | str | None]] = {
    "invalid_param": (ErrorKind.PERMANENT, None),
    "app_version_check_failed": (ErrorKind.PERMANENT, None),
    "access_token_invalid": (ErrorKind.AUTH, None),
    "scope_not_authorized": (ErrorKind.AUTH, None),
    "spam_risk_too_many_posts": (ErrorKind.RATE_LIMITED, timedelta(hours=24)),
    "spam_risk_too_many_pending_share": (ErrorKind.RATE_LIMITED, timedelta(hours=1)),
    "spam_risk_user_banned_from_posting": (ErrorKind.PERMANENT, None),
    "reached_active_user_cap": (ErrorKind.RATE_LIMITED, _NEXT_DAY),
    "unaudited_client_can_only_post_to_private_accounts": (ErrorKind.PERMANENT, None),
    "url_ownership_unverified": (ErrorKind.PERMANENT, None),
    "privacy_level_option_mismatch": (ErrorKind.PERMANENT, None),
    "rate_limit_exceeded": (ErrorKind.RATE_LIMITED, timedelta(seconds=60)),
    "internal_error": (ErrorKind.TRANSIENT, None),
}
_HINTS = {
    "url_ownership_unverified": " (verify the media's domain in the TikTok app, or use the "
    "option source: FILE_UPLOAD)",
    "privacy_level_option_mismatch": " (the creator's privacy options have changed)",
    "unaudited_client_can_only_post_to_private_accounts": " (an app not yet audited by TikTok "
    "posts only to private accounts, as SELF_ONLY)",
}
# fail_reason (status FAILED) -> kind; anything else not listed is permanent.
_FAIL_REASONS: dict[str, ErrorKind] = {
    "video_pull_failed": ErrorKind.TRANSIENT,
    "photo_pull_failed": ErrorKind.TRANSIENT,
    "internal": ErrorKind.TRANSIENT,
    "auth_removed": ErrorKind.AUTH,
    "spam_risk_too_many_posts": ErrorKind.RATE_LIMITED,
}


def classify(status: int, code: str | None, message: str, now: datetime) -> PublishFailure:
    """A refused call as a failure: by TikTok's `error.code`, else by its HTTP status."""
    if code and code in _ERRORS:
        kind, wait = _ERRORS[code]
    elif status == 429:
        kind, wait = ErrorKind.RATE_LIMITED, timedelta(seconds=60)
    elif status == 401:
        kind, wait = ErrorKind.AUTH, None
    elif status >= 500:
        kind, wait = ErrorKind.TRANSIENT, None
    else:
        kind, wait = ErrorKind.PERMANENT, None
    retry_at = None
    if wait == _NEXT_DAY:
        retry_at = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    elif isinstance(wait, timedelta):
        retry_at = now + wait
    suffix = (code or f"HTTP_{status}").upper()
    text = (message or code or f"HTTP {status}") + _HINTS.get(code or "", "")
    return PublishFailure(kind, f"{PREFIX}_{suffix}", text, retry_at=retry_at)


def _failed(reason: str, now: datetime) -> PublishFailure:
    kind = _FAIL_REASONS.get(reason, ErrorKind.PERMANENT)
    retry_at = now + timedelta(hours=24) if kind is ErrorKind.RATE_LIMITED else None
    return PublishFailure(
        kind,
        f"{PREFIX}_{reason.upper()}",
        f"TikTok did not publish the post ({reason})",
        retry_at=retry_at,
    )


# --- uploads -----------------------------------------------------------------------------


def chunk_plan(size: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """The parts of a FILE_UPLOAD of `size` bytes, as (first, last) byte offsets: one part
    under 5 MiB; otherwise `size // chunk` parts of `chunk` bytes (5 to 64 MiB, at most
    1,000 parts, and at least two over 64 MiB), the last taking the rest (under two chunks,
    so at most 128 MiB)."""
    if size < 1:
        raise ValueError("an upload has at least one byte")
    if size < CHUNK_MIN:
        return [(0, size - 1)]
    chunk = min(max(chunk_bytes, CHUNK_MIN, math.ceil(size / 1000)), CHUNK_MAX, size)
    if size > CHUNK_MAX:
        chunk = min(chunk, size // 2)  # over 64 MiB must be chunked
    count = size // chunk
    parts = [(i * chunk, (i + 1) * chunk - 1) for i in range(count - 1)]
    return [*parts, ((count - 1) * chunk, size - 1)]


class _Pieces:
    """Exactly `n` bytes at a time from a stream of pieces of any size."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream, self.left = stream, b""

    async def take(self, n: int) -> AsyncIterator[bytes]:
        while n > 0:
            if not self.left:
                try:
                    self.left = await anext(self.stream)
                except StopAsyncIteration:
                    raise PublishFailure(
                        ErrorKind.TRANSIENT,
                        f"{PREFIX}_MEDIA_TRUNCATED",
                        "the video ended before its announced size",
                    ) from None
            piece, self.left = self.left[:n], self.left[n:]
            n -= len(piece)
            yield piece


# --- the account's API -------------------------------------------------------------------


@dataclass
class Creator:
    """What `creator_info/query` says the creator allows."""

    username: str
    privacy_level_options: list[str]
    comment_disabled: bool
    duet_disabled: bool
    stitch_disabled: bool
    max_video_post_duration_sec: int | None


class TikTokApi:
    """One channel's calls, each classified on failure; an expired or refused access token
    is renewed once with the refresh token, then the call is made again."""

    def __init__(self, ctx: PlatformContext, channel_id: str, creds: Credentials) -> None:
        self.ctx, self.channel_id, self.creds = ctx, channel_id, creds
        self.base = ctx.endpoints.tiktok.rstrip("/")

    async def call(
        self, path: str, body: dict[str, Any], *, publishing: bool = False
    ) -> dict[str, Any]:
        """POST `body` to `/v2/<path>`; returns the envelope's `data`. `publishing` marks
        the irreversible call, whose lost answer leaves the outcome unknown."""
        if _expiring(self.creds):
            self.creds = await _renew(self.ctx, self.channel_id, self.creds)
        try:
            return await self._call(path, body, publishing)
        except PublishFailure as failure:
            if failure.code != f"{PREFIX}_ACCESS_TOKEN_INVALID" or not self.creds.refresh_token:
                raise
        self.creds = await _renew(self.ctx, self.channel_id, self.creds, refused=True)
        return await self._call(path, body, publishing)

    async def _call(self, path: str, body: dict[str, Any], publishing: bool) -> dict[str, Any]:
        headers = {
            "Authorization": f"Bearer {self.creds.access_token}",
            "Content-Type": "application/json; charset=UTF-8",
        }
        try:
            response = await self.ctx.http.post(
                f"{self.base}/v2/{path}", json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_NETWORK_ERROR",
                f"{type(exc).__name__} calling {path}: {exc}".rstrip(": "),
                outcome_unknown=publishing,
            ) from exc
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if not isinstance(error, dict):
            if response.is_error:
                failure = classify(response.status_code, None, response.text[:200], utcnow())
                failure.outcome_unknown = publishing and response.status_code >= 500
                raise failure
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_BAD_RESPONSE",
                f"{path} answered without TikTok's envelope",
                outcome_unknown=publishing,
            )
        log_id = error.get("log_id") if isinstance(error.get("log_id"), str) else None
        code = str(error.get("code") or "")
        if code != "ok" or response.is_error:
            failure = classify(
                response.status_code, code, str(error.get("message") or ""), utcnow()
            )
            failure.request_id = log_id  # TikTok answered, so nothing is left unknown
            raise failure
        data = envelope.get("data") if isinstance(envelope, dict) else None
        data = dict(data) if isinstance(data, dict) else {}
        data.setdefault("_log_id", log_id)
        return data

    async def creator(self) -> Creator:
        data = await self.call("post/publish/creator_info/query/", {})
        options = data.get("privacy_level_options")
        duration = data.get("max_video_post_duration_sec")
        return Creator(
            username=str(data.get("creator_username") or ""),
            privacy_level_options=[str(o) for o in options] if isinstance(options, list) else [],
            comment_disabled=data.get("comment_disabled") is True,
            duet_disabled=data.get("duet_disabled") is True,
            stitch_disabled=data.get("stitch_disabled") is True,
            max_video_post_duration_sec=duration if isinstance(duration, int) else None,
        )

    async def status(self, publish_id: str) -> dict[str, Any]:
        return await self.call("post/publish/status/fetch/", {"publish_id": publish_id})


def _expiring(creds: Credentials) -> bool:
    return (
        creds.expires_at is not None
        and creds.refresh_token is not None
        and creds.expires_at <= utcnow() + EXPIRY_MARGIN
    )


async def _app(ctx: PlatformContext, channel_id: str) -> tuple[str, str]:
    """The client key and secret of the channel's workspace's TikTok app."""
    from tidings.channels.models import Channel, PlatformApp  # (the models import us)

    async with ctx.db.transaction(write=False) as session:
        row = (
            await session.execute(
                select(PlatformApp.client_id, PlatformApp.client_secret)
                .join(Channel, Channel.workspace_id == PlatformApp.workspace_id)
                .where(Channel.id == channel_id, PlatformApp.platform == "tiktok")
            )
        ).one_or_none()
    secret = ctx.box.open(row.client_secret) if row is not None and ctx.box else None
    if row is None or secret is None:
        raise PublishFailure(
            ErrorKind.AUTH,
            f"{PREFIX}_APP_MISSING",
            "renewing a TikTok token needs the workspace's TikTok app (PUT /platform-apps/tiktok)",
        )
    return row.client_id, secret


async def token_grant(
    ctx: PlatformContext, form: dict[str, str], account_id: str | None
) -> Credentials:
    """POST TikTok's token endpoint (a code or a refresh token) and read the new pair."""
    url = f"{ctx.endpoints.tiktok.rstrip('/')}/v2/oauth/token/"
    try:
        response = await ctx.http.post(url, data=form)
    except httpx.HTTPError as exc:
        raise PublishFailure(
            ErrorKind.TRANSIENT, f"{PREFIX}_NETWORK_ERROR", f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if response.status_code >= 500:
        raise PublishFailure(
            ErrorKind.TRANSIENT, f"{PREFIX}_SERVER_ERROR", f"HTTP {response.status_code}"
        )
    token, refresh = body.get("access_token"), body.get("refresh_token")
    if response.is_error or body.get("error") or not isinstance(token, str):
        error = str(body.get("error") or f"http_{response.status_code}")
        description = str(body.get("error_description") or "the token was refused")
        raise PublishFailure(ErrorKind.AUTH, f"{PREFIX}_{error.upper()}", description)
    now = utcnow()

    def after(seconds: Any) -> datetime | None:
        return now + timedelta(seconds=seconds) if isinstance(seconds, int) else None

    return Credentials(
        account_id=str(body.get("open_id") or account_id or ""),
        access_token=token,
        refresh_token=refresh if isinstance(refresh, str) else None,
        expires_at=after(body.get("expires_in")),
        refresh_expires_at=after(body.get("refresh_expires_in")),
        extra={"scope": str(body.get("scope") or "")},
    )


async def _renew(
    ctx: PlatformContext, channel_id: str, used: Credentials, *, refused: bool = False
) -> Credentials:
    """New tokens for the channel, unless another call renewed them since `used` was read
    (then those). `refused`: TikTok has just refused `used.access_token`."""

    async def renew(current: Credentials) -> Credentials | None:
        renewed_meanwhile = current.access_token != used.access_token
        if not _expiring(current) and (renewed_meanwhile or not refused):
            return None  # still good: renewed meanwhile, or never refused
        if not current.refresh_token:
            raise PublishFailure(
                ErrorKind.AUTH,
                f"{PREFIX}_ACCESS_TOKEN_INVALID",
                "the access token has expired and the channel has no refresh token",
            )
        client_key, secret = await _app(ctx, channel_id)
        form = {
            "client_key": client_key,
            "client_secret": secret,
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
        }
        renewed = await token_grant(ctx, form, current.account_id)
        return replace(
            renewed,
            account_id=current.account_id,
            refresh_token=renewed.refresh_token or current.refresh_token,
            refresh_expires_at=renewed.refresh_expires_at or current.refresh_expires_at,
            extra=current.extra | renewed.extra,
        )

    return await renew_credentials(ctx, channel_id, renew)


# --- the connector -----------------------------------------------------------------------


class TikTokPlatform:
    name = "tiktok"
    needs_media = True
    media_limits = {
        "image": MediaLimit(frozenset({"image/jpeg", "image/webp"}), 20 * MB),
        # The 3 s minimum is unconfirmed (a third-party figure); the maximum is each
        # creator's own (`max_video_post_duration_sec`), checked live.
        "video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime", "video/webm"}), 4096 * MB, min_seconds=3
        ),
    }

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems = Problems("tiktok", channel)
        problem = problems.add
        caption, options = target.caption or "", target.options
        photo = is_photo_post(post)
        if post.type is PostType.STORY:
            problem("post_type", "TikTok has no stories through its API")
        if not post.media:
            problem("media_required", "a TikTok post is a video or photos")
        elif photo:
            if any(item.looks_like_video for item in post.media):
                problem("mixed_media", "a TikTok post is one video, or photos only")
            if len(post.media) > PHOTO_MAX:
                problem("too_many_photos", f"at most {PHOTO_MAX} photos, got {len(post.media)}")
            for item in post.media:
                if not item.looks_like_video and not item.path.lower().endswith(
                    (".jpg", ".jpeg", ".webp")
                ):
                    problem("photo_format", f"TikTok takes JPEG or WebP photos only: {item.url}")
        elif len(post.media) != 1 or not post.media[0].looks_like_video:
            problem("single_video", "a TikTok video post is one video file (MP4, MOV or WebM)")
        if photo:
            if utf16_length(caption) > PHOTO_DESCRIPTION_LIMIT:
                problem(
                    "description_too_long",
                    f"a photo post's description (the caption) is {utf16_length(caption)} "
                    f"UTF-16 units; TikTok allows {PHOTO_DESCRIPTION_LIMIT}",
                )
            title = options.get("title")
            if title is not None and (
                not isinstance(title, str) or utf16_length(title) > PHOTO_TITLE_LIMIT
            ):
                problem("title", f"title is text of at most {PHOTO_TITLE_LIMIT} UTF-16 units")
        else:
            if utf16_length(caption) > CAPTION_LIMIT:
                problem(
                    "caption_too_long",
                    f"caption is {utf16_length(caption)} UTF-16 units; TikTok allows "
                    f"{CAPTION_LIMIT}",
                )
            if options.get("title") is not None:
                problem("title", "title applies to photo posts; a video's caption is its title")
        if target.first_comment:
            problem("first_comment", "TikTok's API cannot post comments")
        self._check_options(problems, target, channel, photo)
        return problems

    def _check_options(
        self, problems: Problems, target: TargetContent, channel: ChannelFacts, photo: bool
    ) -> None:
        problem, options = problems.add, target.options
        for name in BOOLEAN_OPTIONS:
            if name in options and not isinstance(options[name], bool):
                problem(name, f"{name} is true or false")
        inbox = options.get("auto_publish") is False
        level = _option(target, channel, "privacy_level")
        if level is not None and level not in PRIVACY_LEVELS:
            problem("privacy_level", f"privacy_level is one of {', '.join(PRIVACY_LEVELS)}")
        elif level is None and not inbox:
            problem(
                "privacy_level_required",
                "choose who can see the post (privacy_level): TikTok requires the choice "
                "to be made, not defaulted",
            )
        if options.get("brand_content_toggle") is True and level == "SELF_ONLY":
            problem("branded_content_private", "branded content cannot be private (SELF_ONLY)")
        offset = options.get("video_cover_timestamp_ms", options.get("thumbnail_offset"))
        if offset is not None and (
            isinstance(offset, bool) or not isinstance(offset, int) or offset < 0
        ):
            problem("video_cover_timestamp_ms", "the cover time is whole milliseconds, ≥ 0")
        if photo:
            for name in ("disable_duet", "disable_stitch", "video_cover_timestamp_ms", "source"):
                if name in options:
                    problem(name, f"{name} applies to videos only")
            cover = options.get("photo_cover_index")
            if cover is not None and (isinstance(cover, bool) or not isinstance(cover, int)):
                problem("photo_cover_index", "photo_cover_index is the cover photo's position")
        else:
            source = _option(target, channel, "source")
            if source is not None and source not in SOURCES:
                problem("source", f"source is one of {', '.join(SOURCES)}")
            if "photo_cover_index" in options or "auto_add_music" in options:
                problem("photo_options", "photo_cover_index and auto_add_music apply to photos")

    async def _api(self, ctx: PlatformContext, channel_id: str) -> TikTokApi:
        return TikTokApi(ctx, channel_id, await credentials(ctx, channel_id))

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        api = await self._api(ctx, request.channel.id)
        post_id, channel_id = request.post_id, request.channel.id
        state = await load_state(ctx, post_id, channel_id)
        if state.get("publish_id"):
            if state.get("source") != "FILE_UPLOAD" or state.get("uploaded"):
                return await self._settle(api, request, state)
            # An upload cut short: TikTok publishes nothing until its last part arrives.
            data = await api.status(state["publish_id"])
            if data.get("status") not in ("PROCESSING_UPLOAD", "FAILED"):
                await save_state(ctx, post_id, channel_id, state | {"uploaded": True})
                return await self._settle(api, request, state)
        creator = await api.creator()
        path, body = self._init(request, creator)
        source = body.get("source_info", {}).get("source", "PULL_FROM_URL")
        intent: dict[str, Any] = {
            "kind": path.split("/")[0],
            "source": source,
            "created_at": utcnow().isoformat(),
        }
        # Before anything irreversible: an init whose answer is lost is then known to be
        # unknowable (there is no publish_id to ask about), not mistaken for nothing sent.
        await save_state(ctx, post_id, channel_id, intent)
        if source == "FILE_UPLOAD":
            state = await self._upload(api, request, path, body, intent)
        else:
            data = await api.call(f"post/publish/{path}", body, publishing=True)
            state = intent | {"publish_id": str(data["publish_id"])}
            await save_state(ctx, post_id, channel_id, state)
        return await self._settle(api, request, state)

    def _init(self, request: PublishRequest, creator: Creator) -> tuple[str, dict[str, Any]]:
        """Which init to call and its body, within what the creator allows."""
        post, target, channel = request.content, request.target, request.channel
        options = target.options
        inbox = options.get("auto_publish") is False
        level = _option(target, channel, "privacy_level")
        if not inbox and level not in creator.privacy_level_options:
            raise PublishFailure(
                ErrorKind.PERMANENT,
                f"{PREFIX}_PRIVACY_LEVEL_OPTION_MISMATCH",
                f"privacy_level {level} is not offered to @{creator.username}; offered: "
                f"{', '.join(creator.privacy_level_options) or 'none'}",
            )

        def switch(name: str, forced: bool) -> bool:
            return forced or options.get(name) is True

        info: dict[str, Any] = {
            "privacy_level": level,
            "disable_comment": switch("disable_comment", creator.comment_disabled),
            **{
                name: True
                for name in ("brand_content_toggle", "brand_organic_toggle", "is_aigc")
                if options.get(name) is True
            },
        }
        if is_photo_post(post):
            info["description"] = target.caption or ""
            if options.get("title"):
                info["title"] = options["title"]
            if options.get("auto_add_music") is True:
                info["auto_add_music"] = True
            body = {
                "media_type": "PHOTO",
                "post_mode": "MEDIA_UPLOAD" if inbox else "DIRECT_POST",
                "post_info": info,
                "source_info": {
                    "source": "PULL_FROM_URL",
                    "photo_images": [item.url for item in post.media],
                    "photo_cover_index": int(options.get("photo_cover_index") or 0),
                },
            }
            return "content/init/", body
        source = _option(target, channel, "source") or "PULL_FROM_URL"
        source_info: dict[str, Any] = {"source": source}
        if source == "PULL_FROM_URL":
            source_info["video_url"] = post.media[0].url
        if inbox:
            return "inbox/video/init/", {"source_info": source_info}
        info |= {
            "title": target.caption or "",
            "disable_duet": switch("disable_duet", creator.duet_disabled),
            "disable_stitch": switch("disable_stitch", creator.stitch_disabled),
        }
        cover = options.get("video_cover_timestamp_ms", options.get("thumbnail_offset"))
        if cover is not None:
            info["video_cover_timestamp_ms"] = int(cover)
        return "video/init/", {"post_info": info, "source_info": source_info}

    async def _upload(
        self,
        api: TikTokApi,
        request: PublishRequest,
        path: str,
        body: dict[str, Any],
        intent: dict[str, Any],
    ) -> dict[str, Any]:
        """Stream the video from its URL to TikTok in parts; returns the stored state.

        The URL is the user's: it is fetched through the guarded fetcher, and one it refuses
        fails the target for good (`MEDIA_FORBIDDEN`) before TikTok is asked anything. The
        fetch has no deadline or byte budget of its own: the worker's call timeout bounds
        the whole upload, and the bytes are the size the server announced."""
        ctx, url = api.ctx, request.content.media[0].url
        post_id, channel_id = request.post_id, request.channel.id
        policy = replace(ctx.fetch, deadline_seconds=None, max_bytes=None)
        try:
            async with Fetcher(policy) as fetch, fetch.stream("GET", url) as media:
                if media.status_code >= 400:
                    raise PublishFailure(
                        ErrorKind.TRANSIENT,
                        f"{PREFIX}_MEDIA_UNREACHABLE",
                        f"the video answered HTTP {media.status_code}: {url}",
                    )
                length = media.headers.get("content-length", "")
                if not length.isdigit() or int(length) == 0:
                    raise PublishFailure(
                        ErrorKind.PERMANENT,
                        f"{PREFIX}_MEDIA_SIZE_UNKNOWN",
                        f"the video's server does not say its size (Content-Length): {url}",
                    )
                size = int(length)
                parts = chunk_plan(size, ctx.endpoints.tiktok_chunk_bytes)
                body["source_info"] |= {
                    "video_size": size,
                    "chunk_size": parts[0][1] + 1,
                    "total_chunk_count": len(parts),
                }
                data = await api.call(f"post/publish/{path}", body)
                state = intent | {"publish_id": str(data["publish_id"])}
                await save_state(ctx, post_id, channel_id, state)
                content_type = media.headers.get("content-type", "").split(";")[0].strip()
                if content_type not in self.media_limits["video"].types:
                    suffix = "." + request.content.media[0].path.rsplit(".", 1)[-1].lower()
                    content_type = VIDEO_TYPES.get(suffix, "video/mp4")
                pieces = _Pieces(media.aiter_raw())
                for index, (first, last) in enumerate(parts):
                    final = index == len(parts) - 1
                    await self._put(
                        api, str(data["upload_url"]), pieces, first, last, size, content_type, final
                    )
        except ForbiddenAddress as exc:
            raise PublishFailure(
                ErrorKind.PERMANENT, "MEDIA_FORBIDDEN", f"{url} is not fetched: {exc.reason}"
            ) from exc
        except httpx.HTTPError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_MEDIA_UNREACHABLE",
                f"reading the video failed ({type(exc).__name__}): {url}",
            ) from exc
        state["uploaded"] = True
        await save_state(ctx, post_id, channel_id, state)
        return state

    async def _put(
        self,
        api: TikTokApi,
        upload_url: str,
        pieces: _Pieces,
        first: int,
        last: int,
        size: int,
        content_type: str,
        final: bool,
    ) -> None:
        """One part; the last is the irreversible call (TikTok then publishes)."""
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{size}",
        }
        try:
            response = await api.ctx.http.put(
                upload_url, content=pieces.take(last - first + 1), headers=headers
            )
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.RequestError) and final:
                raise PublishFailure(
                    ErrorKind.TRANSIENT,
                    f"{PREFIX}_UPLOAD_FAILED",
                    f"{type(exc).__name__} sending the last part",
                    outcome_unknown=True,
                ) from exc
            raise
        if response.status_code not in (200, 201, 206):
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_UPLOAD_FAILED",
                f"TikTok refused bytes {first}-{last} of {size} (HTTP {response.status_code}"
                f"{': ' + response.text[:200] if response.text else ''})",
                outcome_unknown=final and response.status_code >= 500,
            )

    async def _settle(
        self, api: TikTokApi, request: PublishRequest, state: dict[str, Any]
    ) -> Published:
        """Poll the publish until TikTok says how it ended."""
        publish_id = str(state["publish_id"])

        async def ended() -> Published | None:
            return await self._outcome(api, request, publish_id)

        still = graph.still_processing(PREFIX, api.ctx, unknown=True)
        return await graph.poll(api.ctx, ended, still)

    async def _outcome(
        self, api: TikTokApi, request: PublishRequest, publish_id: str
    ) -> Published | None:
        """What TikTok says of a publish: done, not yet (None), or failed (raises, and the
        target forgets the publish, so that a retry starts a new one)."""
        data = await api.status(publish_id)
        status = data.get("status")
        if status == "FAILED":
            await save_state(api.ctx, request.post_id, request.channel.id, None)
            raise _failed(str(data.get("fail_reason") or "unknown"), utcnow())
        if status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX"):
            return await self._published(api, publish_id, data)
        return None

    async def _published(self, api: TikTokApi, publish_id: str, data: dict[str, Any]) -> Published:
        if data.get("status") == "SEND_TO_USER_INBOX":
            return Published(publish_id, None, utcnow(), data.get("_log_id"), sent_to_inbox=True)
        ids = data.get("publicaly_available_post_id") or data.get("publicly_available_post_id")
        post = str(ids[0]) if isinstance(ids, list) and ids else None
        username = (await self._username(api)) if post else None
        url = f"https://www.tiktok.com/@{username}/video/{post}" if post and username else None
        return Published(post or publish_id, url, utcnow(), data.get("_log_id"))

    async def _username(self, api: TikTokApi) -> str | None:
        name = api.creds.extra.get("username")
        if isinstance(name, str) and name:
            return name
        try:
            return (await api.creator()).username or None
        except PublishFailure:
            return None

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        """From the persisted `publish_id`: its status says whether it went out. One still
        processing is asked again later (a failure, not an answer)."""
        post_id, channel_id = request.post_id, request.channel.id
        state = await load_state(ctx, post_id, channel_id)
        publish_id = state.get("publish_id")
        if not publish_id:
            if state.get("source") == "PULL_FROM_URL":
                raise LookupUnavailable(
                    "TikTok may have accepted the post, but its answer (the publish_id) was "
                    "lost, and TikTok cannot be asked without it"
                )
            return None  # nothing sent, or an upload that never started: nothing published
        api = await self._api(ctx, channel_id)
        data = await api.status(str(publish_id))
        status = data.get("status")
        if status == "FAILED":
            await save_state(ctx, post_id, channel_id, None)
            return None
        if status == "PROCESSING_UPLOAD" and not state.get("uploaded"):
            return None  # the last part never arrived: nothing was published
        if status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX"):
            return await self._published(api, str(publish_id), data)
        raise PublishFailure(
            ErrorKind.TRANSIENT,
            f"{PREFIX}_STILL_PROCESSING",
            f"TikTok is still processing publish {publish_id} ({status})",
        )

    def refreshes(self, creds: Credentials) -> bool:
        return creds.refresh_token is not None

    async def refresh(self, ctx: PlatformContext, channel_id: str) -> Credentials:
        """Renew the tokens now (which also rotates the refresh token, keeping it alive)."""
        used = await credentials(ctx, channel_id)
        return await _renew(ctx, channel_id, used, refused=True)

    async def live_problems(self, ctx: PlatformContext, channel: ChannelFacts) -> list[Problem]:
        """What TikTok says now: the token works and the creator can be posted for."""

        async def ask() -> None:
            await (await self._api(ctx, channel.id)).creator()

        return await graph.live_problems(self.name, channel, ask)

    async def live_target_problems(
        self, ctx: PlatformContext, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        """What the creator allows now, against what the target asks for: the privacy level
        among their options, interactions they have switched off, and the longest video they
        may post (read from the video's container, where it says)."""
        problems = Problems(self.name, channel)
        try:
            creator = await (await self._api(ctx, channel.id)).creator()
        except PublishFailure:
            return await self.live_problems(ctx, channel)
        level = _option(target, channel, "privacy_level")
        offered = creator.privacy_level_options
        asks = target.options.get("auto_publish") is not False and level is not None
        if asks and level not in offered:
            problems.add(
                "privacy_level_not_offered",
                f"@{creator.username} offers privacy levels {', '.join(offered) or 'none'}, "
                f"not {level}",
            )
        switched_off = {
            "disable_comment": creator.comment_disabled,
            "disable_duet": creator.duet_disabled,
            "disable_stitch": creator.stitch_disabled,
        }
        for name, off in switched_off.items():
            if off and target.options.get(name) is False:
                problems.add(
                    "interaction_disabled",
                    f"@{creator.username} has turned off {name.removeprefix('disable_')}s; "
                    f"{name} cannot be false",
                )
        longest = creator.max_video_post_duration_sec
        if longest and post.media and not is_photo_post(post):
            from tidings.scheduled_posts.media_check import video_length  # (it imports us)

            async with Fetcher(ctx.fetch) as fetch:
                seconds = await video_length(fetch, post.media[0].url)
            if seconds is not None and seconds > longest:
                problems.add(
                    "video_too_long_for_creator",
                    f"the video is {seconds:.0f} s long; @{creator.username} may post videos "
                    f"of {longest} s at most",
                )
        return problems

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        raise PublishFailure(
            ErrorKind.PERMANENT, f"{PREFIX}_NO_COMMENTS", "TikTok's API cannot post comments"
        )
