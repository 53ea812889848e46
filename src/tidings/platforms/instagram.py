"""Instagram (Graph API content publishing), with Instagram Login (graph.instagram.com) or
Facebook Login (graph.facebook.com, chosen by the credentials' `login: facebook`).

Publishing is three steps: create a media container (for a carousel, one per item and then
the parent), wait for it to be `FINISHED`, then `media_publish` it, the one irreversible
call. The container id is persisted on the target before that call, so an attempt whose
answer is lost is reconciled from the container's `status_code` (`PUBLISHED`: it went out;
`FINISHED`: publish the same container again) instead of posting twice. The publishing
quota is read (`content_publishing_limit`) before each publish; a target over it is
deferred, not failed.

Target options: `alt_text` (images), `collaborators` (up to 3 usernames), `user_tags`
(`[{"username", "x", "y"}]`), `location_id`, `share_to_feed` (reels), `cover_url` and
`thumb_offset` (ms; reels). The quota's size differs between Meta's own pages (50 or 100):
it is read live, never assumed.
"""

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx

from tidings.platforms import graph
from tidings.platforms.base import (
    ChannelFacts,
    LookupUnavailable,
    MediaItem,
    MediaType,
    PlatformContext,
    PostContent,
    PostType,
    Problem,
    Published,
    PublishFailure,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.store import Credentials, credentials, load_state, save_state
from tidings.publishing.states import ErrorKind
from tidings.timefmt import utcnow

CAPTION_LIMIT = 2_200
HASHTAG_LIMIT = 30
MENTION_LIMIT = 20
ALT_TEXT_LIMIT = 1_000
COLLABORATOR_LIMIT = 3
CAROUSEL_MIN, CAROUSEL_MAX = 2, 10
#: A quota-bound target is tried again this much later (the window is a rolling 24 h, and
#: the platform does not say when its oldest post leaves it).
QUOTA_RETRY = timedelta(hours=1)
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_MENTION = re.compile(r"(?<![\w@])@[\w.]+")
_NOT_JPEG = re.compile(r"\.(png|gif|webp|heic|bmp|tiff?)$", re.IGNORECASE)
PREFIX = "IG"


def _kind(post: PostContent) -> str:
    """What is published: IMAGE, REELS, STORIES or CAROUSEL."""
    media_type = post.effective_media_type
    if post.type is PostType.STORY:
        return "STORIES"
    if post.type is PostType.CAROUSEL or media_type is MediaType.CAROUSEL:
        return "CAROUSEL"
    if post.type is PostType.REEL or media_type is MediaType.VIDEO:
        return "REELS"
    return "IMAGE"


def _path_of(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _usernames(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [str(item).strip().lstrip("@") for item in items if str(item).strip()]


class InstagramPlatform:
    name = "instagram"

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems: list[Problem] = []

        def problem(rule: str, message: str) -> None:
            problems.append(
                Problem(channel.id, f"instagram.{rule}", f"channel {channel.id}: {message}")
            )

        caption = target.caption or ""
        if len(caption) > CAPTION_LIMIT:
            problem(
                "caption_too_long",
                f"caption is {len(caption)} characters; Instagram allows {CAPTION_LIMIT}",
            )
        hashtags = len(_HASHTAG.findall(caption))
        if hashtags > HASHTAG_LIMIT:
            problem("too_many_hashtags", f"{hashtags} hashtags; Instagram allows {HASHTAG_LIMIT}")
        mentions = len(_MENTION.findall(caption))
        if mentions > MENTION_LIMIT:
            problem("too_many_mentions", f"{mentions} @mentions; Instagram allows {MENTION_LIMIT}")
        kind, media, options = _kind(post), post.media, target.options
        if not media:
            problem("media_required", "Instagram posts need an image or a video")
            return problems
        if kind == "CAROUSEL" and not CAROUSEL_MIN <= len(media) <= CAROUSEL_MAX:
            problem(
                "carousel_size",
                f"a carousel takes {CAROUSEL_MIN} to {CAROUSEL_MAX} items, got {len(media)}",
            )
        if kind != "CAROUSEL" and len(media) > 1:
            problem("single_media", f"a {kind.lower()} post takes one media item, got {len(media)}")
        if kind == "REELS" and not media[0].looks_like_video:
            problem("reel_needs_video", "a reel (or a feed video) needs a video file (MP4 or MOV)")
        for item in media:
            if not item.looks_like_video and _NOT_JPEG.search(_path_of(item.url)):
                problem("image_format", f"Instagram takes JPEG images only: {item.url}")
            if item.alt_text and len(item.alt_text) > ALT_TEXT_LIMIT:
                problem("alt_text_too_long", f"alt text over {ALT_TEXT_LIMIT} characters")
        alt_text = options.get("alt_text")
        if alt_text is not None and len(str(alt_text)) > ALT_TEXT_LIMIT:
            problem("alt_text_too_long", f"alt_text is over {ALT_TEXT_LIMIT} characters")
        collaborators = _usernames(options.get("collaborators"))
        if len(collaborators) > COLLABORATOR_LIMIT:
            problem("collaborators", f"at most {COLLABORATOR_LIMIT} collaborators")
        if collaborators and kind == "STORIES":
            problem("collaborators", "stories take no collaborators")
        for name in ("share_to_feed", "cover_url", "thumb_offset"):
            if name in options and kind != "REELS":
                problem("reel_option", f"{name} applies to reels only")
        if "thumb_offset" in options:
            offset = options["thumb_offset"]
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                problem("thumb_offset", "thumb_offset is a whole number of milliseconds >= 0")
        tags = options.get("user_tags")
        if tags is not None and not _valid_user_tags(tags):
            problem("user_tags", 'user_tags is a list of {"username", "x", "y"} with x, y in 0..1')
        return problems

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        api = _Api(ctx, await credentials(ctx, request.channel.id))
        state = await load_state(ctx, request.post_id, request.channel.id)
        container = state.get("container_id")
        if container:
            status = await api.container_status(container)
            if status == "PUBLISHED":
                found = await self._find_published(api, request, state)
                if found is not None:
                    return found
            if status not in ("FINISHED", "IN_PROGRESS", "PUBLISHED"):
                container = None  # EXPIRED or ERROR: a new one
        if not container:
            await api.check_quota()
            container = await self._create(api, request)
            # Before anything irreversible: the container is how this attempt is found again.
            state = {"container_id": container, "created_at": utcnow().isoformat()}
            await save_state(ctx, request.post_id, request.channel.id, state)
        try:
            await api.wait_until_finished(container)
        except PublishFailure as failure:
            if failure.code == f"{PREFIX}_CONTAINER_EXPIRED":
                await save_state(ctx, request.post_id, request.channel.id, None)
            raise
        await api.check_quota()
        media_id, request_id = await api.publish(container)
        return await api.published(media_id, request_id)

    async def _create(self, api: "_Api", request: PublishRequest) -> str:
        post, options = request.content, request.target.options
        kind = _kind(post)
        params: dict[str, Any] = {}
        if kind != "STORIES" and request.target.caption:
            params["caption"] = request.target.caption
        if options.get("location_id") and kind != "STORIES":
            params["location_id"] = str(options["location_id"])
        collaborators = _usernames(options.get("collaborators"))
        if collaborators and kind != "STORIES":
            params["collaborators"] = json.dumps(collaborators)
        if options.get("user_tags") and kind in ("IMAGE", "REELS"):
            params["user_tags"] = json.dumps(options["user_tags"])
        if kind == "CAROUSEL":
            children = [await api.create(_item_params(item, child=True)) for item in post.media]
            return await api.create(
                {"media_type": "CAROUSEL", "children": ",".join(children)} | params
            )
        item = post.media[0]
        if kind == "STORIES":
            return await api.create({"media_type": "STORIES"} | _media_param(item))
        if kind == "REELS":
            reel: dict[str, Any] = {"media_type": "REELS", "video_url": item.url}
            if "share_to_feed" in options:
                reel["share_to_feed"] = "true" if options["share_to_feed"] else "false"
            if options.get("cover_url"):
                reel["cover_url"] = str(options["cover_url"])
            if "thumb_offset" in options:
                reel["thumb_offset"] = str(options["thumb_offset"])
            return await api.create(reel | params)
        image = {"image_url": item.url}
        alt_text = options.get("alt_text") or item.alt_text
        if alt_text:
            image["alt_text"] = str(alt_text)
        return await api.create(image | params)

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        """From the persisted container: `PUBLISHED` is found among the account's media;
        anything else did not go out (publishing again reuses a `FINISHED` container)."""
        state = await load_state(ctx, request.post_id, request.channel.id)
        container = state.get("container_id")
        if not container:
            return None  # nothing was created, so nothing can have been published
        api = _Api(ctx, await credentials(ctx, request.channel.id))
        if await api.container_status(container) != "PUBLISHED":
            return None
        found = await self._find_published(api, request, state)
        if found is None:
            raise LookupUnavailable(
                f"container {container} is published, but its media is not among the account's"
            )
        return found

    async def _find_published(
        self, api: "_Api", request: PublishRequest, state: dict[str, Any]
    ) -> Published | None:
        since = datetime.fromisoformat(state["created_at"]) if state.get("created_at") else None
        for media in await api.recent_media():
            when = _parse_time(media.get("timestamp"))
            if since is not None and when is not None and when < since - timedelta(minutes=1):
                continue
            if (media.get("caption") or "") == (request.target.caption or ""):
                return await api.published(str(media["id"]), None)
        return None

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        api = _Api(ctx, await credentials(ctx, channel.id))
        body = await api.call("POST", f"{external_post_id}/comments", {"message": text})
        return str(body["id"])


def _media_param(item: MediaItem) -> dict[str, str]:
    return {"video_url": item.url} if item.looks_like_video else {"image_url": item.url}


def _item_params(item: MediaItem, *, child: bool) -> dict[str, str]:
    params = _media_param(item)
    if item.looks_like_video:
        params["media_type"] = "VIDEO"
    elif item.alt_text:
        params["alt_text"] = item.alt_text
    if child:
        params["is_carousel_item"] = "true"
    return params


def _valid_user_tags(tags: Any) -> bool:
    if not isinstance(tags, list):
        return False
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("username"), str):
            return False
        for axis in ("x", "y"):
            value = tag.get(axis)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("+0000", "+00:00"))
    except ValueError:
        return None


class _Api:
    """One account's Graph calls, each classified on failure."""

    def __init__(self, ctx: PlatformContext, creds: Credentials) -> None:
        self.ctx, self.creds = ctx, creds
        endpoints = ctx.endpoints
        base = endpoints.facebook if creds.extra.get("login") == "facebook" else endpoints.instagram
        self.base = f"{base.rstrip('/')}/{endpoints.graph_version}"

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        publishing: bool = False,
    ) -> dict[str, Any]:
        """One request; raises a classified `PublishFailure`. `publishing` marks the
        irreversible call, whose lost answer leaves the outcome unknown."""
        headers = {"Authorization": f"Bearer {self.creds.access_token}"}
        try:
            response = await self.ctx.http.request(
                method, f"{self.base}/{path}", params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_NETWORK_ERROR",
                f"{type(exc).__name__} calling {path}: {exc}".rstrip(": "),
                outcome_unknown=publishing,
            ) from exc
        request_id = response.headers.get("x-fb-trace-id")
        if response.is_error:
            raise graph.classify(
                PREFIX,
                graph.parse_error(response),
                utcnow(),
                headers=response.headers,
                request_id=request_id,
                sent_publish=publishing,
            )
        try:
            body = response.json()
        except json.JSONDecodeError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_BAD_RESPONSE",
                f"{path} answered with something other than JSON",
                request_id=request_id,
                outcome_unknown=publishing,
            ) from exc
        if not publishing:
            _back_off_if_used_up(response.headers)
        if not isinstance(body, dict):
            raise PublishFailure(ErrorKind.TRANSIENT, f"{PREFIX}_BAD_RESPONSE", f"{path}: {body!r}")
        body.setdefault("_request_id", request_id)
        return body

    async def create(self, params: dict[str, Any]) -> str:
        body = await self.call("POST", f"{self.creds.account_id}/media", params)
        return str(body["id"])

    async def container_status(self, container: str) -> str:
        body = await self.call("GET", container, {"fields": "status_code,status"})
        return str(body.get("status_code") or "")

    async def wait_until_finished(self, container: str) -> None:
        """Poll the container, the interval doubling up to 30 s, until it is `FINISHED`."""
        endpoints = self.ctx.endpoints
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + endpoints.poll_for, endpoints.poll_every
        while True:
            body = await self.call("GET", container, {"fields": "status_code,status"})
            status = body.get("status_code")
            if status in ("FINISHED", "PUBLISHED"):
                return
            if status == "ERROR":
                raise PublishFailure(
                    ErrorKind.PERMANENT,
                    f"{PREFIX}_CONTAINER_ERROR",
                    f"Instagram could not process the media: {body.get('status') or 'error'}",
                )
            if status == "EXPIRED":
                raise PublishFailure(
                    ErrorKind.TRANSIENT, f"{PREFIX}_CONTAINER_EXPIRED", "the container expired"
                )
            if loop.time() + delay > deadline:
                raise PublishFailure(
                    ErrorKind.TRANSIENT,
                    f"{PREFIX}_STILL_PROCESSING",
                    f"the media was still processing after {endpoints.poll_for:.0f} s",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def check_quota(self) -> None:
        """Defer (RATE_LIMITED) rather than publish over the rolling 24-hour quota."""
        body = await self.call(
            "GET",
            f"{self.creds.account_id}/content_publishing_limit",
            {"fields": "config,quota_usage"},
        )
        data = body.get("data") or [{}]
        usage = data[0].get("quota_usage")
        total = (data[0].get("config") or {}).get("quota_total")
        if isinstance(usage, int) and isinstance(total, int) and usage >= total:
            raise PublishFailure(
                ErrorKind.RATE_LIMITED,
                f"{PREFIX}_QUOTA_EXCEEDED",
                f"the account has published {usage} of its {total} posts in 24 hours",
                retry_at=utcnow() + QUOTA_RETRY,
            )

    async def publish(self, container: str) -> tuple[str, str | None]:
        body = await self.call(
            "POST",
            f"{self.creds.account_id}/media_publish",
            {"creation_id": container},
            publishing=True,
        )
        return str(body["id"]), body.get("_request_id")

    async def published(self, media_id: str, request_id: str | None) -> Published:
        try:
            body = await self.call("GET", media_id, {"fields": "permalink,timestamp"})
        except PublishFailure:
            body = {}  # it is live; its link can be read later
        return Published(
            external_post_id=media_id,
            external_url=body.get("permalink"),
            published_at=_parse_time(body.get("timestamp")) or utcnow(),
            request_id=request_id,
        )

    async def recent_media(self) -> list[dict[str, Any]]:
        body = await self.call(
            "GET",
            f"{self.creds.account_id}/media",
            {"fields": "id,caption,timestamp,permalink", "limit": "25"},
        )
        data = body.get("data")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def _back_off_if_used_up(headers: httpx.Headers) -> None:
    """The usage headers say a limit is reached: stop before the platform refuses."""
    for name in ("x-business-use-case-usage", "x-app-usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except json.JSONDecodeError:
            continue
        entries = [usage] if name == "x-app-usage" else [e for v in usage.values() for e in v]
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            used = max(
                (
                    v
                    for k, v in entry.items()
                    if k in ("call_count", "total_cputime", "total_time")
                    and isinstance(v, int | float)
                ),
                default=0,
            )
            if used >= 100:
                regain = graph.regain_access(headers) or graph.DEFAULT_BACKOFF
                raise PublishFailure(
                    ErrorKind.RATE_LIMITED,
                    f"{PREFIX}_THROTTLED",
                    f"the app's Graph API usage is at {used}% ({name})",
                    retry_at=utcnow() + regain,
                )
