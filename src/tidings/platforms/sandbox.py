"""The sandbox connector: the client of the fake network in `tidings.sandbox`.

Channel options inject faults, each counted per target (per idempotency key):
`latency_ms`, `fail_first=N` (503 on the first N attempts), `rate_limit_first=N` (429 with
a reset `retry_after_s` later, default 1), `auth_expired_first=N`, `permanent_error=CODE`,
`accept_then_timeout=N` (the post is stored, then the answer is lost: the double-post trap),
`no_lookup=1` (the network cannot be asked what it published), `lookup_fail_first=N` (asking
it fails with a 503 the first N times), `allowed_media_types`.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidings.platforms.base import (
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
from tidings.publishing.states import ErrorKind
from tidings.sandbox import service as network
from tidings.timefmt import utcnow

CAPTION_LIMIT = 2_200
CAROUSEL_MIN, CAROUSEL_MAX = 2, 10
ALL_MEDIA_TYPES = frozenset(MediaType)


def allowed_media_types(channel: ChannelFacts) -> frozenset[MediaType]:
    """The channel option `allowed_media_types` (comma separated) narrows what it takes."""
    raw = channel.options.get("allowed_media_types")
    if not raw:
        return ALL_MEDIA_TYPES
    names = {part.strip().upper() for part in str(raw).split(",")}
    return frozenset(m for m in MediaType if m.value in names)


def _int(options: dict[str, Any], name: str, default: int = 0) -> int:
    try:
        return int(float(options.get(name, default)))
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class Faults:
    latency_ms: int
    fail_first: int
    rate_limit_first: int
    retry_after_s: int
    auth_expired_first: int
    accept_then_timeout: int
    permanent_error: str | None
    no_lookup: bool
    lookup_fail_first: int = 0

    @classmethod
    def of(cls, channel: ChannelFacts) -> "Faults":
        o = channel.options
        permanent = o.get("permanent_error")
        return cls(
            latency_ms=_int(o, "latency_ms"),
            fail_first=_int(o, "fail_first"),
            rate_limit_first=_int(o, "rate_limit_first"),
            retry_after_s=_int(o, "retry_after_s", 1),
            auth_expired_first=_int(o, "auth_expired_first"),
            accept_then_timeout=_int(o, "accept_then_timeout"),
            permanent_error=str(permanent) if permanent else None,
            no_lookup=_int(o, "no_lookup") > 0,
            lookup_fail_first=_int(o, "lookup_fail_first"),
        )

    @property
    def counted(self) -> bool:
        """Whether any fault depends on which call this is (so calls must be counted)."""
        return (
            max(
                self.fail_first,
                self.rate_limit_first,
                self.auth_expired_first,
                self.accept_then_timeout,
            )
            > 0
        )


async def _nth_call(
    ctx: PlatformContext,
    channel: ChannelFacts,
    key: str,
    operation: str,
    counted: bool,
    now: datetime,
) -> int:
    """Which call of `operation` for `key` this is; only counted (a write on the network's
    side) when a fault depends on it, otherwise every call is taken as the first."""
    if not counted:
        return 1
    return await network.count_call(ctx.db, channel.id, key, operation, now)


def feed_url(channel_id: str, post_id: str) -> str:
    return f"/sandbox/channels/{channel_id}/posts#{post_id}"


class SandboxPlatform:
    name = "sandbox"
    needs_media = True
    media_limits: dict[str, MediaLimit] = {}

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems = Problems("sandbox", channel)
        problem = problems.add

        caption = target.caption or ""
        if len(caption) > CAPTION_LIMIT:
            problem(
                "caption_too_long",
                f"caption is {len(caption)} characters; sandbox allows at most {CAPTION_LIMIT}",
            )
        media_type = post.effective_media_type
        if media_type is not None:
            allowed = allowed_media_types(channel)
            if media_type not in allowed:
                names = ", ".join(m.value for m in MediaType if m in allowed) or "none"
                problem(
                    "media_type_unsupported",
                    f"media type {media_type.value} is not supported here (supported: {names})",
                )
            count = len(post.media)
            if media_type is MediaType.CAROUSEL and not CAROUSEL_MIN <= count <= CAROUSEL_MAX:
                problem(
                    "carousel_size",
                    f"a carousel needs {CAROUSEL_MIN} to {CAROUSEL_MAX} media items, got {count}",
                )
            if media_type is not MediaType.CAROUSEL and count > 1:
                problem(
                    "single_media",
                    f"media type {media_type.value} takes one media item, got {count}",
                )
            if post.type is PostType.REEL and media_type is not MediaType.VIDEO:
                problem("reel_needs_video", "a REEL needs mediaType VIDEO")
            if post.type is PostType.CAROUSEL and media_type is not MediaType.CAROUSEL:
                problem("carousel_type", "a CAROUSEL post needs mediaType CAROUSEL")
        return problems

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        channel, faults = request.channel, Faults.of(request.channel)
        received_at = utcnow()
        call = await _nth_call(
            ctx, channel, request.idempotency_key, "publish", faults.counted, received_at
        )
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        request_id = f"sbxreq_{channel.id}_{request.idempotency_key}_{call}"
        if call <= faults.auth_expired_first:
            raise PublishFailure(
                ErrorKind.AUTH,
                "SANDBOX_AUTH_EXPIRED",
                "401: the access token has expired",
                request_id=request_id,
            )
        if call <= faults.rate_limit_first:
            raise PublishFailure(
                ErrorKind.RATE_LIMITED,
                "SANDBOX_RATE_LIMITED",
                f"429: too many posts; retry after {faults.retry_after_s} s",
                retry_at=utcnow() + timedelta(seconds=faults.retry_after_s),
                request_id=request_id,
            )
        if call <= faults.fail_first:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                "SANDBOX_UNAVAILABLE",
                "503: service unavailable",
                request_id=request_id,
            )
        if faults.permanent_error:
            raise PublishFailure(
                ErrorKind.PERMANENT,
                faults.permanent_error,
                f"the sandbox refused the post ({faults.permanent_error})",
                request_id=request_id,
            )
        problems = self.validate(request.content, request.target, channel)
        if problems:
            raise PublishFailure(
                ErrorKind.PERMANENT,
                problems[0].rule.replace(".", "_").upper(),
                "; ".join(p.message for p in problems),
                request_id=request_id,
            )
        media_type = request.content.effective_media_type
        record = await network.accept_post(
            ctx.db,
            channel_id=channel.id,
            idempotency_key=request.idempotency_key,
            post_type=request.content.type.value,
            caption=request.target.caption or "",
            media=[{"url": m.url, "altText": m.alt_text} for m in request.content.media],
            media_type=media_type.value if media_type else None,
            now=utcnow(),
            received_at=received_at,
        )
        if call <= faults.accept_then_timeout:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                "SANDBOX_TIMEOUT",
                "the request timed out after it was sent; the post may have been published",
                request_id=request_id,
                outcome_unknown=True,
            )
        return Published(
            external_post_id=record.id,
            external_url=feed_url(channel.id, record.id),
            published_at=record.published_at,
            request_id=request_id,
        )

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        channel, idempotency_key = request.channel, request.idempotency_key
        faults = Faults.of(channel)
        if faults.no_lookup:
            raise LookupUnavailable("this sandbox channel cannot be searched (no_lookup)")
        counted = faults.lookup_fail_first > 0
        call = await _nth_call(ctx, channel, idempotency_key, "lookup", counted, utcnow())
        if call <= faults.lookup_fail_first:
            raise PublishFailure(
                ErrorKind.TRANSIENT, "SANDBOX_UNAVAILABLE", "503: search is unavailable"
            )
        record = await network.find_by_key(ctx.db, channel.id, idempotency_key)
        if record is None:
            return None
        return Published(record.id, feed_url(channel.id, record.id), record.published_at)

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        faults = Faults.of(channel)
        counted = faults.fail_first > 0
        call = await _nth_call(ctx, channel, external_post_id, "comment", counted, utcnow())
        if call <= faults.fail_first:
            raise PublishFailure(
                ErrorKind.TRANSIENT, "SANDBOX_UNAVAILABLE", "503: service unavailable"
            )
        record = await network.add_comment(ctx.db, channel.id, external_post_id, text, utcnow())
        if record is None:
            raise PublishFailure(
                ErrorKind.PERMANENT,
                "SANDBOX_POST_NOT_FOUND",
                f"post {external_post_id} does not exist on this channel",
            )
        return f"{record.id}/comment"
