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
- A story (`type: STORY`, one photo or one video; Page Stories API). A photo story is an
  unpublished photo (`POST /{page}/photos` with `published=false`), then
  `POST /{page}/photo_stories` with its `photo_id`. A video story is
  `POST /{page}/video_stories` `upload_phase=start` (a video id and an upload URL), the
  upload by URL as for a reel, then `upload_phase=finish` with the `video_id`; the video's
  status is polled until it is published. Both answer `{"success", "post_id"}`; the story is
  read back from `GET /{page}/stories` (`post_id`, `media_id`, `url`, `creation_time`). A
  story shows no caption, and takes no comments through the API.

The platform takes no idempotency key. Before the irreversible call the target records what
it is about to publish (the kind, the message, the time, and for a reel its video id); a
lost answer is reconciled from the Page's own feed (or videos), or from the reel's status,
instead of posting again, which Facebook would refuse anyway as a duplicate (506). A story
records its photo or video id (the video's as soon as it has one, with its upload URL) and
is found again among the Page's stories by that media id; a retry reuses the recorded
photo, and a recorded video goes on from where its status says it is (upload, finish, or
wait), so a story is never posted twice. The first comment is `POST /{post}/comments`.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tidings.platforms import graph
from tidings.platforms.base import (
    MB,
    ChannelFacts,
    LookupUnavailable,
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
    """feed, photo, photos, video, reel, photo_story or video_story."""
    if post.type is PostType.REEL:
        return "reel"
    if post.type is PostType.STORY:
        video = bool(post.media) and post.media[0].looks_like_video
        return "video_story" if video else "photo_story"
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
        if kind.endswith("_story"):
            if len(post.media) != 1:
                problems.add("story_media", "a story is one photo or one video (MP4, 3 to 60 s)")
            if target.first_comment:
                problems.add("first_comment", "a story takes no comments through the API")
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
        if kind == "photo_story":
            return await self._photo_story(api, request, state)
        if kind == "video_story":
            return await self._video_story(api, request, state)
        if state.get("video_id") and kind == "reel":
            # The reel was started and uploaded: go on with it, never start a second one.
            video_id = str(state["video_id"])
            status = await self._video_status(api, video_id)
            if (status.get("publishing_phase") or {}).get("status") in ("in_progress", "complete"):
                still = graph.still_processing(PREFIX, ctx, unknown=True)
                return await graph.poll(ctx, lambda: self._reel(api, video_id), still)
            return await self._finish_reel(api, page, video_id, message, target)
        intent = {"kind": kind, "message": message, "created_at": utcnow().isoformat()}
        if kind == "reel":
            start = await api.call("POST", f"{page}/video_reels", {"upload_phase": "start"})
            video_id = str(start["video_id"])
            intent["video_id"] = video_id
            await self._upload(api, str(start["upload_url"]), post.media[0].url)
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

    async def _upload(self, api: graph.GraphSession, upload_url: str, file_url: str) -> None:
        """Hand a started video over by its URL (Meta fetches it)."""
        headers = {"Authorization": f"OAuth {api.creds.access_token}", "file_url": file_url}
        await api.call("POST", "", url=upload_url, headers=headers)

    async def _photo_story(
        self, api: graph.GraphSession, request: PublishRequest, state: dict[str, Any]
    ) -> Published:
        page, ctx = api.creds.account_id, api.ctx
        photo_id = str(state["photo_id"]) if state.get("kind") == "photo_story" else None
        if photo_id is not None:
            found = await self._story(api, page, photo_id)
            if found is not None:
                return found
        else:
            photo_id = await self._unpublished_photo(api, page, request.content.media[0])
        # Before anything irreversible: the photo the story is made of, to find it again by.
        intent = {"kind": "photo_story", "photo_id": photo_id, "created_at": utcnow().isoformat()}
        await save_state(ctx, request.post_id, request.channel.id, intent)
        body = await api.call(
            "POST", f"{page}/photo_stories", {"photo_id": photo_id}, publishing=True
        )
        return await self._story_published(api, page, photo_id, body)

    async def _video_story(
        self, api: graph.GraphSession, request: PublishRequest, state: dict[str, Any]
    ) -> Published:
        page, ctx = api.creds.account_id, api.ctx
        file_url = request.content.media[0].url
        if state.get("kind") == "video_story":
            video_id, upload_url = str(state["video_id"]), str(state["upload_url"])
            status = await self._video_status(api, video_id)
            uploaded = (status.get("uploading_phase") or {}).get("status") == "complete"
            finished = (status.get("publishing_phase") or {}).get("status") in (
                "in_progress",
                "complete",
            )
        else:
            start = await api.call("POST", f"{page}/video_stories", {"upload_phase": "start"})
            video_id, upload_url = str(start["video_id"]), str(start["upload_url"])
            # The video, as soon as there is one: a retry goes on with it, never a second.
            intent = {
                "kind": "video_story",
                "video_id": video_id,
                "upload_url": upload_url,
                "created_at": utcnow().isoformat(),
            }
            await save_state(ctx, request.post_id, request.channel.id, intent)
            uploaded = finished = False
        if not uploaded:
            await self._upload(api, upload_url, file_url)
        body: dict[str, Any] = {}
        if not finished:
            params = {"upload_phase": "finish", "video_id": video_id}
            body = await api.call("POST", f"{page}/video_stories", params, publishing=True)

        async def live() -> Published | None:
            return await self._video_story_live(api, page, video_id)

        still = graph.still_processing(PREFIX, ctx, unknown=True)
        found = await graph.poll(ctx, live, still)
        request_id = body.get("_request_id")
        return Published(found.external_post_id, found.external_url, found.published_at, request_id)

    async def _video_status(self, api: graph.GraphSession, video_id: str) -> dict[str, Any]:
        """A video's status; a processing error fails for good."""
        body = await api.call("GET", video_id, {"fields": "status"})
        status: dict[str, Any] = body.get("status") or {}
        video_status = status.get("video_status")
        if video_status in ("error", "upload_failed", "expired"):
            raise PublishFailure(
                ErrorKind.PERMANENT,
                f"{PREFIX}_VIDEO_FAILED",
                f"Facebook could not process the video ({video_status})",
            )
        return status

    async def _video_story_live(
        self, api: graph.GraphSession, page: str, video_id: str
    ) -> Published | None:
        """The video story once its video is published, None until then."""
        status = await self._video_status(api, video_id)
        if (status.get("publishing_phase") or {}).get("status") != "complete":
            return None
        return await self._story(api, page, video_id)

    async def _story(self, api: graph.GraphSession, page: str, media_id: str) -> Published | None:
        """The Page's story made of `media_id`, or None if there is none; `LookupUnavailable`
        if the listing does not say which media each story is."""
        body = await api.call(
            "GET",
            f"{page}/stories",
            {"fields": "post_id,status,creation_time,media_type,media_id,url", "limit": "50"},
        )
        stories = [s for s in body.get("data") or [] if isinstance(s, dict)]
        for story in stories:
            if str(story.get("media_id")) == media_id and story.get("post_id"):
                created = str(story.get("creation_time") or "")
                return Published(
                    external_post_id=str(story["post_id"]),
                    external_url=story.get("url"),
                    published_at=(
                        datetime.fromtimestamp(int(created), UTC)
                        if created.isdigit()  # unix seconds, as the Page Stories guide shows
                        else graph.parse_time(created) or utcnow()
                    ),
                )
        if any("media_id" not in story for story in stories):
            raise LookupUnavailable("the Page's stories do not say which photo or video they are")
        return None

    async def _story_published(
        self, api: graph.GraphSession, page: str, media_id: str, body: dict[str, Any]
    ) -> Published:
        """A story Facebook says it published, with its link read back when it can be."""
        post_id, request_id = body.get("post_id"), body.get("_request_id")
        try:
            found = await self._story(api, page, media_id)
        except (PublishFailure, LookupUnavailable):
            found = None
        if found is not None:
            return Published(
                found.external_post_id, found.external_url, found.published_at, request_id
            )
        if not post_id:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{PREFIX}_BAD_RESPONSE",
                "the story was accepted without a post id, and is not among the Page's stories",
                request_id=request_id,
                outcome_unknown=True,
            )
        return Published(str(post_id), None, utcnow(), request_id)

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
        page = creds.account_id
        if state.get("kind") == "photo_story":
            return await self._story(api, page, str(state["photo_id"]))
        if state.get("kind") == "video_story":
            video_id = str(state["video_id"])
            status = await self._video_status(api, video_id)
            if (status.get("publishing_phase") or {}).get("status") not in (
                "in_progress",
                "complete",
            ):
                return None  # not finished: publishing again goes on with this video
            return await graph.poll(
                ctx,
                lambda: self._video_story_live(api, page, video_id),
                graph.still_processing(PREFIX, ctx),
            )
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
