"""Facebook Pages (Graph API, graph.facebook.com), with a Page access token.

- A text or link post (no media): `POST /{page}/feed` with `message` (and the target option
  `link`).
- One photo: `POST /{page}/photos` with `url` and `message`.
- Several photos: each uploaded unpublished (`published=false`), then one `POST /{page}/feed`
  with `attached_media` (how clients do it; the parameter is not in the /feed reference).
- A video: `POST /{page}/videos` with `file_url` and `description` (and the option `title`).
- A reel (`type: REEL`): `POST /{page}/video_reels` `upload_phase=start` gives a video id and
  an upload URL; the video is handed over by URL (`file_url` header); `upload_phase=finish`
  with `video_state=PUBLISHED` publishes it; its status is then polled until it is live.

The platform takes no idempotency key. Before the irreversible call the target records what
it is about to publish (the kind, the message, the time, and for a reel its video id); a
lost answer is reconciled from the Page's own feed (or videos), or from the reel's status,
instead of posting again, which Facebook would refuse anyway as a duplicate (506). The
first comment is `POST /{post}/comments`.
"""

import json
from datetime import datetime, timedelta

from tidings.platforms import graph
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
    Published,
    PublishFailure,
    PublishRequest,
    TargetContent,
)
from tidings.platforms.store import Credentials, credentials, load_state, save_state
from tidings.publishing.states import ErrorKind
from tidings.timefmt import utcnow

PREFIX = "FB"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff")
#: Photos in one post: folklore, not documented (unconfirmed).
MULTI_PHOTO_LIMIT = 10


def _kind(post: PostContent) -> str:
    """feed, photo, photos, video or reel."""
    if post.type is PostType.REEL:
        return "reel"
    if not post.media:
        return "feed"
    if len(post.media) > 1:
        return "photos"
    return "video" if post.media[0].looks_like_video else "photo"


class FacebookPlatform:
    name = "facebook"
    needs_media = False
    media_limits = {
        "image": MediaLimit(
            frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff"}),
            10 * MB,
        ),
        # A Page video's limits are the Page's own (`video_upload_limits`), not documented.
        "video": MediaLimit(frozenset({"video/mp4", "video/quicktime"})),
        "reel:video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime"}), min_seconds=3, max_seconds=90
        ),
        # The Page Stories guide: 3 to 90 s for its videos, but a video story at most 60 s.
        "story:video": MediaLimit(
            frozenset({"video/mp4", "video/quicktime"}), min_seconds=3, max_seconds=60
        ),
    }

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems = Problems("facebook", channel)
        kind, options = _kind(post), target.options
        if post.type is PostType.STORY:
            problems.add("post_type", "Page stories are not supported yet")
        if kind == "feed" and not (target.caption or "").strip() and not options.get("link"):
            problems.add("message_required", "a post without media needs a message or a link")
        if kind == "reel" and (len(post.media) != 1 or not post.media[0].looks_like_video):
            problems.add("reel_needs_video", "a reel is one video (MP4 recommended, 3 to 90 s)")
        if kind == "photos":
            if any(item.looks_like_video for item in post.media):
                problems.add("mixed_media", "a post with several media takes photos only")
            if len(post.media) > MULTI_PHOTO_LIMIT:
                problems.add("too_many_photos", f"at most {MULTI_PHOTO_LIMIT} photos in one post")
        for item in post.media:
            if not item.looks_like_video and not item.path.lower().endswith(PHOTO_SUFFIXES):
                problems.add("photo_format", f"photos are JPEG, PNG, GIF, BMP or TIFF: {item.url}")
        if options.get("link") and kind != "feed":
            problems.add("link", "link applies to posts without media")
        return problems

    def _session(self, ctx: PlatformContext, creds: Credentials) -> graph.GraphSession:
        endpoints = ctx.endpoints
        base = f"{endpoints.facebook.rstrip('/')}/{endpoints.graph_version}"
        return graph.GraphSession(ctx, PREFIX, creds, base)

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        creds = await credentials(ctx, request.channel.id)
        api = self._session(ctx, creds)
        page, post, target = creds.account_id, request.content, request.target
        kind, message = _kind(post), target.caption or ""
        post_id, channel_id = request.post_id, request.channel.id
        state = await load_state(ctx, post_id, channel_id)
        if state.get("video_id") and kind == "reel":
            found = await self._reel(api, state["video_id"])
            if found is not None:
                return found
        intent = {"kind": kind, "message": message, "created_at": utcnow().isoformat()}
        if kind == "reel":
            start = await api.call("POST", f"{page}/video_reels", {"upload_phase": "start"})
            video_id = str(start["video_id"])
            intent["video_id"] = video_id
            await api.call(
                "POST",
                "",
                url=str(start["upload_url"]),
                headers={
                    "Authorization": f"OAuth {creds.access_token}",
                    "file_url": post.media[0].url,
                },
            )
        # Before anything irreversible: what this attempt publishes, to find it again.
        await save_state(ctx, post_id, channel_id, intent)
        if kind == "reel":
            return await self._finish_reel(api, page, intent["video_id"], message, target)
        if kind == "feed":
            params = {"message": message} if message else {}
            if target.options.get("link"):
                params["link"] = str(target.options["link"])
            body = await api.call("POST", f"{page}/feed", params, publishing=True)
            return await self._post(api, str(body["id"]), body.get("_request_id"))
        if kind == "photo":
            params = {"url": post.media[0].url} | ({"message": message} if message else {})
            body = await api.call("POST", f"{page}/photos", params, publishing=True)
            return await self._post(
                api, str(body.get("post_id") or body["id"]), body.get("_request_id")
            )
        if kind == "photos":
            photo_ids = [await self._unpublished_photo(api, page, item) for item in post.media]
            params = {"attached_media": json.dumps([{"media_fbid": p} for p in photo_ids])}
            if message:
                params["message"] = message
            body = await api.call("POST", f"{page}/feed", params, publishing=True)
            return await self._post(api, str(body["id"]), body.get("_request_id"))
        params = {"file_url": post.media[0].url, "description": message}
        if target.options.get("title"):
            params["title"] = str(target.options["title"])
        body = await api.call("POST", f"{page}/videos", params, publishing=True)
        return await self._post(api, str(body["id"]), body.get("_request_id"))

    async def _unpublished_photo(self, api: graph.GraphSession, page: str, item: MediaItem) -> str:
        body = await api.call("POST", f"{page}/photos", {"url": item.url, "published": "false"})
        return str(body["id"])

    async def _finish_reel(
        self, api: graph.GraphSession, page: str, video_id: str, message: str, target: TargetContent
    ) -> Published:
        params = {
            "upload_phase": "finish",
            "video_id": video_id,
            "video_state": "PUBLISHED",
            "description": message,
        }
        if target.options.get("title"):
            params["title"] = str(target.options["title"])
        await api.call("POST", f"{page}/video_reels", params, publishing=True)
        # Published as far as we asked: if it never shows, look it up rather than resend.
        still = graph.still_processing(PREFIX, api.ctx, unknown=True)
        return await graph.poll(api.ctx, lambda: self._reel(api, video_id), still)

    async def _reel(self, api: graph.GraphSession, video_id: str) -> Published | None:
        """The reel if it is live, None while it is not (yet); a processing error fails."""
        body = await api.call("GET", video_id, {"fields": "status,permalink_url,created_time"})
        status = body.get("status") or {}
        video_status = status.get("video_status")
        if video_status in ("error", "upload_failed", "expired"):
            raise PublishFailure(
                ErrorKind.PERMANENT,
                f"{PREFIX}_VIDEO_FAILED",
                f"Facebook could not process the video ({video_status})",
            )
        publishing = (status.get("publishing_phase") or {}).get("status")
        if publishing != "complete":
            return None
        return Published(
            external_post_id=video_id,
            external_url=body.get("permalink_url"),
            published_at=graph.parse_time(body.get("created_time")) or utcnow(),
        )

    async def _post(
        self, api: graph.GraphSession, object_id: str, request_id: str | None
    ) -> Published:
        return await api.published(object_id, request_id, link="permalink_url", time="created_time")

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        """What the target recorded before its call, found on the Page (or not)."""
        state = await load_state(ctx, request.post_id, request.channel.id)
        if not state:
            return None  # nothing was sent
        creds = await credentials(ctx, request.channel.id)
        api = self._session(ctx, creds)
        if state.get("video_id"):
            return await self._reel(api, str(state["video_id"]))
        edge, text = (
            ("videos", "description") if state.get("kind") == "video" else ("feed", "message")
        )
        body = await api.call(
            "GET",
            f"{creds.account_id}/{edge}",
            {"fields": f"id,{text},created_time", "limit": "25"},
        )
        since = datetime.fromisoformat(state["created_at"]) - timedelta(minutes=1)
        for item in body.get("data") or []:
            when = graph.parse_time(item.get("created_time"))
            if when is not None and when < since:
                continue
            if (item.get(text) or "") == state.get("message", ""):
                return await self._post(api, str(item["id"]), None)
        return None

    async def live_problems(self, ctx: PlatformContext, channel: ChannelFacts) -> list[Problem]:
        """What Facebook says now: the Page can be read with its token."""

        async def ask() -> None:
            creds = await credentials(ctx, channel.id)
            await self._session(ctx, creds).call("GET", creds.account_id, {"fields": "id,name"})

        return await graph.live_problems(self.name, channel, ask)

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        api = self._session(ctx, await credentials(ctx, channel.id))
        body = await api.call("POST", f"{external_post_id}/comments", {"message": text})
        return str(body["id"])
