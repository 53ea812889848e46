"""Threads (graph.threads.net, versioned `/v1.0/`), published through containers (see
`containers`): a text post (no media), an image, a video, or a carousel of 2 to 20 images
and videos. The first comment is a reply: a text container with `reply_to_id`, published
like a post (replies have their own quota, 1,000 per 24 h).

Text is at most 500 characters, emoji counted as their UTF-8 bytes. The documented
publishing quota is 250 posts per 24 h; it is read live (`threads_publishing_limit`).
Target options: `alt_text` (images), `reply_control` (`everyone`, `accounts_you_follow`,
`mentioned_only`), `topic_tag`, `link_attachment` (text posts).
"""

import re
from typing import Any

from tidings.platforms.base import (
    MB,
    ChannelFacts,
    MediaItem,
    MediaLimit,
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

TEXT_LIMIT = 500
ALT_TEXT_LIMIT = 1_000
CAROUSEL_MIN, CAROUSEL_MAX = 2, 20
#: Links per post: from a third-party reading, not Meta's text (unconfirmed).
LINK_LIMIT = 5
REPLY_CONTROLS = frozenset({"everyone", "accounts_you_follow", "mentioned_only"})
_LINK = re.compile(r"https?://\S+", re.IGNORECASE)
_IMAGE_OK = re.compile(r"\.(jpe?g|png)$", re.IGNORECASE)

THREADS = Dialect(
    prefix="THREADS",
    name="Threads",
    create="threads",
    publish="threads_publish",
    quota="threads_publishing_limit",
    status_field="status",
    error_field="error_message",
    text_field="text",
    refresh_grant="th_refresh_token",
)


def is_emoji(char: str) -> bool:
    code = ord(char)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or char in "\u200d\ufe0f"


def text_length(text: str) -> int:
    """Length as Threads counts it: one per character, an emoji its UTF-8 bytes."""
    return sum(len(c.encode()) if is_emoji(c) else 1 for c in text)


def _is_carousel(post: PostContent) -> bool:
    return post.type is PostType.CAROUSEL or len(post.media) > 1


class ThreadsPlatform(ContainerPlatform):
    name = "threads"
    dialect = THREADS
    needs_media = False
    media_limits = {
        "image": MediaLimit(frozenset({"image/jpeg", "image/png"}), 8 * MB),
        "video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime"}), 1024 * MB, max_seconds=300
        ),
    }

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems = Problems("threads", channel)
        problem = problems.add

        text, options = target.caption or "", target.options
        length = text_length(text)
        if length > TEXT_LIMIT:
            problem(
                "text_too_long",
                f"text is {length} characters (emoji count as their bytes); Threads allows "
                f"{TEXT_LIMIT}",
            )
        links = len(_LINK.findall(text))
        if links > LINK_LIMIT:
            problem("too_many_links", f"{links} links; Threads allows {LINK_LIMIT}")
        if post.type in (PostType.REEL, PostType.STORY):
            problem("post_type", f"Threads has no {post.type.value.lower()}s")
        media = post.media
        if _is_carousel(post) and not CAROUSEL_MIN <= len(media) <= CAROUSEL_MAX:
            problem(
                "carousel_size",
                f"a carousel takes {CAROUSEL_MIN} to {CAROUSEL_MAX} items, got {len(media)}",
            )
        for item in media:
            if not item.looks_like_video and not _IMAGE_OK.search(item.path):
                problem("image_format", f"Threads takes JPEG or PNG images: {item.url}")
        alt_text = options.get("alt_text")
        if alt_text is not None and len(str(alt_text)) > ALT_TEXT_LIMIT:
            problem("alt_text_too_long", f"alt_text is over {ALT_TEXT_LIMIT} characters")
        control = options.get("reply_control")
        if control is not None and control not in REPLY_CONTROLS:
            problem("reply_control", f"reply_control is one of {', '.join(sorted(REPLY_CONTROLS))}")
        if options.get("link_attachment") and media:
            problem("link_attachment", "link_attachment is for text posts only")
        return problems

    def host(self, ctx: PlatformContext, creds: Credentials) -> str:
        return ctx.endpoints.threads

    def base_url(self, ctx: PlatformContext, creds: Credentials) -> str:
        return f"{self.host(ctx, creds).rstrip('/')}/{ctx.endpoints.threads_version}"

    async def create(self, api: GraphClient, request: PublishRequest) -> str:
        post, options, text = request.content, request.target.options, request.target.caption
        params: dict[str, Any] = {}
        if text:
            params["text"] = text
        for name in ("reply_control", "topic_tag"):
            if options.get(name):
                params[name] = str(options[name])
        if not post.media:
            if options.get("link_attachment"):
                params["link_attachment"] = str(options["link_attachment"])
            return await api.create({"media_type": "TEXT"} | params)
        if _is_carousel(post):
            children = [
                await api.create(_item(item) | {"is_carousel_item": "true"}) for item in post.media
            ]
            return await api.create(
                {"media_type": "CAROUSEL", "children": ",".join(children)} | params
            )
        item = _item(post.media[0])
        alt_text = options.get("alt_text")
        if alt_text and item["media_type"] == "IMAGE":
            item["alt_text"] = str(alt_text)
        return await api.create(item | params)

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        """A reply: its own container, published like a post. Threads takes no idempotency
        key, so a reply of ours with the same text already under the post (an earlier
        attempt whose answer was lost) is that reply, not one to post again."""
        api = await self.client(ctx, channel.id)
        found = await api.call(
            "GET",
            f"{external_post_id}/replies",
            {"fields": "id,text,is_reply_owned_by_me", "limit": "100"},
        )
        for reply in found.get("data") or []:
            if reply.get("is_reply_owned_by_me") and reply.get("text") == text:
                return str(reply["id"])
        container = await api.create(
            {"media_type": "TEXT", "text": text, "reply_to_id": external_post_id}
        )
        await api.wait_until_finished(container)
        await api.check_quota("reply_quota_usage", "reply_config")
        reply_id, _ = await api.publish(container)
        return reply_id


def _item(item: MediaItem) -> dict[str, str]:
    if item.looks_like_video:
        return {"media_type": "VIDEO", "video_url": item.url}
    params = {"media_type": "IMAGE", "image_url": item.url}
    if item.alt_text:
        params["alt_text"] = item.alt_text
    return params
