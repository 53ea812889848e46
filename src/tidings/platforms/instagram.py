"""Instagram (Graph API content publishing), with Instagram Login (graph.instagram.com) or
Facebook Login (graph.facebook.com, chosen by the credentials' `login: facebook`).

Published through containers (see `containers`): an image, a reel (also how a single feed
video is published), a story, or a carousel of 2 to 10 images and videos. The publishing
quota's size differs between Meta's own pages (50 or 100 per 24 h): it is read live
(`content_publishing_limit`), never assumed.

Target options: `alt_text` (images), `collaborators` (up to 3 usernames), `user_tags`
(`[{"username", "x", "y"}]`), `location_id`, `share_to_feed` (reels), `cover_url` and
`thumb_offset` (ms; reels).
"""

import json
import re
from typing import Any

from tidings.platforms.base import (
    MB,
    ChannelFacts,
    MediaItem,
    MediaLimit,
    MediaType,
    PlatformContext,
    PostContent,
    PostType,
    Problem,
    Problems,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.containers import ContainerPlatform, Dialect, GraphClient
from tidings.platforms.store import Credentials

CAPTION_LIMIT = 2_200
HASHTAG_LIMIT = 30
MENTION_LIMIT = 20
ALT_TEXT_LIMIT = 1_000
COLLABORATOR_LIMIT = 3
CAROUSEL_MIN, CAROUSEL_MAX = 2, 10
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_MENTION = re.compile(r"(?<![\w@])@[\w.]+")
_NOT_JPEG = re.compile(r"\.(png|gif|webp|heic|bmp|tiff?)$", re.IGNORECASE)
INSTAGRAM = Dialect(
    prefix="IG",
    name="Instagram",
    create="media",
    publish="media_publish",
    quota="content_publishing_limit",
    status_field="status_code",
    error_field="status",
    text_field="caption",
    refresh_grant="ig_refresh_token",
)


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


def _usernames(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [str(item).strip().lstrip("@") for item in items if str(item).strip()]


class InstagramPlatform(ContainerPlatform):
    name = "instagram"
    dialect = INSTAGRAM
    media_limits = {
        "image": MediaLimit(frozenset({"image/jpeg"}), 8 * MB),
        # A reel (how a feed video is published too): 3 s to 15 min. Carousel videos are
        # held to the same, the sheet giving them no bounds of their own.
        "video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime"}), 300 * MB, min_seconds=3, max_seconds=900
        ),
        "story:video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime"}), 100 * MB, min_seconds=3, max_seconds=60
        ),
    }

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems = Problems("instagram", channel)
        problem = problems.add

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
            if not item.looks_like_video and _NOT_JPEG.search(item.path):
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

    # --- publishing ----------------------------------------------------------------------

    def host(self, ctx: PlatformContext, creds: Credentials) -> str:
        endpoints = ctx.endpoints
        return endpoints.facebook if creds.extra.get("login") == "facebook" else endpoints.instagram

    def base_url(self, ctx: PlatformContext, creds: Credentials) -> str:
        return f"{self.host(ctx, creds).rstrip('/')}/{ctx.endpoints.graph_version}"

    def refreshes(self, creds: Credentials) -> bool:
        """Instagram Login tokens are refreshed; a Facebook Login token is not (its Page
        token does not expire)."""
        return creds.extra.get("login") != "facebook"

    async def create(self, api: GraphClient, request: PublishRequest) -> str:
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

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        api = await self.client(ctx, channel.id)
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
