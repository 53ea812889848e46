"""Facebook Pages (Graph API) as documented, for connector tests.

`/{page}/feed` (a message, a link, or `attached_media` of unpublished photos; the same
message twice in a row is refused as a duplicate, 506), `/{page}/photos` (published, or
`published=false` to attach later; JPEG, PNG, GIF, BMP, TIFF), `/{page}/videos` (by
`file_url`), reels through `/{page}/video_reels` (start -> upload to the returned URL with a
`file_url` header and `Authorization: OAuth` -> finish, 30 per 24 h per Page; processing
takes `processing_polls` status reads), Page stories (`/{page}/photo_stories` with the id
of an unpublished photo; `/{page}/video_stories` start -> upload -> finish, the story
listed once processed; a photo or video is used for one story only, and a video story
must be MP4 or MOV), comments, and reading back the feed, videos, stories
(`/{page}/stories`) and each object. Errors use the Graph envelope; the Page's token is
its account.
"""

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.emulators.graph import Fault, GraphEmulator, GraphFailure

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff")


@dataclass
class PagePost:
    id: str
    page: str
    message: str
    created_time: datetime
    kind: str  # feed, photo, photos, video, reel
    link: str | None = None
    media: list[str] = field(default_factory=list)
    comments: list[dict[str, str]] = field(default_factory=list)

    @property
    def permalink(self) -> str:
        return f"https://www.facebook.com/{self.id}"


@dataclass
class Video:
    id: str
    page: str
    reel: bool
    uploaded_from: str | None = None
    finished: bool = False
    polls_left: int = 0
    description: str = ""
    story_post_id: str | None = None  # a video story's, from its finish on


@dataclass
class Story:
    post_id: str
    page: str
    media_id: str
    media_type: str  # photo, video
    created_time: datetime

    @property
    def url(self) -> str:
        return f"https://www.facebook.com/stories/{self.page}/{self.post_id}"


class FacebookEmulator(GraphEmulator):
    reel_quota = 30

    def __init__(self, *, processing_polls: int = 2) -> None:
        self.processing_polls = processing_polls
        self.publish_delay = 0.0
        self.posts: dict[str, PagePost] = {}
        self.photos: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, Video] = {}
        self.reels_at: dict[str, list[datetime]] = {}
        self.stories: dict[str, Story] = {}
        super().__init__()

    def posts_of(self, page: str) -> list[PagePost]:
        return [p for p in self.posts.values() if p.page == page]

    def _post(self, page: str, kind: str, message: str, **extra: Any) -> PagePost:
        post = PagePost(f"{page}_{self._new_id()}", page, message, self.now(), kind, **extra)
        self.posts[post.id] = post
        return post

    def feed(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault("feed")
        message, link = params.get("message", ""), params.get("link")
        attached = json.loads(params["attached_media"]) if "attached_media" in params else []
        if not message and not link and not attached:
            raise GraphFailure(Fault(400, 100, None, "Either message or link is required"))
        mine = sorted(self.posts_of(page), key=lambda p: p.created_time)
        if mine and message and mine[-1].message == message:
            raise GraphFailure(Fault(400, 506, None, "Duplicate status message"))
        media = []
        for entry in attached:
            photo = self.photos.get(str(entry.get("media_fbid")))
            if photo is None or photo["page"] != page or photo["published"]:
                raise GraphFailure(Fault(400, 100, None, "Invalid attached media"))
            photo["published"] = True
            media.append(photo["url"])
        kind = "photos" if media else "feed"
        return {"id": self._post(page, kind, message, link=link, media=media).id}

    def photo(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault("photos")
        url = params.get("url", "")
        if not url.split("?")[0].lower().endswith(PHOTO_SUFFIXES):
            raise GraphFailure(Fault(400, 100, 1366046, "The photo is not a supported format"))
        photo_id = self._new_id()
        published = params.get("published", "true") != "false"
        self.photos[photo_id] = {"page": page, "url": url, "published": published}
        if not published:
            return {"id": photo_id}
        post = self._post(page, "photo", params.get("message", ""), media=[url])
        return {"id": photo_id, "post_id": post.id}

    def video(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault("videos")
        if "file_url" not in params:
            raise GraphFailure(Fault(400, 100, None, "file_url or source is required"))
        video = Video(self._new_id(), page, reel=False, uploaded_from=params["file_url"])
        video.finished, video.description = True, params.get("description", "")
        self.videos[video.id] = video
        self._post(page, "video", video.description, media=[params["file_url"]])
        return {"id": video.id}

    def reel(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        phase = params.get("upload_phase")
        self._take_fault(f"video_reels_{phase}")
        if phase == "start":
            video = Video(self._new_id(), page, reel=True)
            self.videos[video.id] = video
            return {"video_id": video.id, "upload_url": f"{self.url}/video-upload/v25.0/{video.id}"}
        if phase != "finish":
            raise GraphFailure(Fault(400, 100, None, "upload_phase must be start or finish"))
        video = self.videos.get(params.get("video_id", ""))
        if video is None or video.page != page or video.uploaded_from is None:
            raise GraphFailure(Fault(400, 100, None, "The video has not been uploaded"))
        if video.finished:
            raise GraphFailure(Fault(400, 100, None, "The video was already published"))
        if len(self._window(self.reels_at.setdefault(page, []))) >= self.reel_quota:
            raise GraphFailure(Fault(400, 4, None, "Reels publishing limit reached"))
        video.finished, video.polls_left = True, self.processing_polls
        video.description = params.get("description", "")
        self.reels_at[page].append(self.now())
        return {"success": True}

    def stories_of(self, page: str) -> list[Story]:
        return [s for s in self.stories.values() if s.page == page]

    def _story(self, page: str, media_id: str, media_type: str, post_id: str) -> None:
        self.stories[post_id] = Story(post_id, page, media_id, media_type, self.now())

    def photo_story(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault("photo_stories")
        photo = self.photos.get(params.get("photo_id", ""))
        if photo is None or photo["page"] != page:
            raise GraphFailure(Fault(400, 100, None, "Invalid photo_id"))
        if photo["published"]:  # used by a post (or a story) already
            raise GraphFailure(Fault(400, 100, None, "The photo was already published"))
        photo["published"] = True
        post_id = self._new_id()
        self._story(page, params["photo_id"], "photo", post_id)
        return {"success": True, "post_id": post_id}

    def video_story(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        phase = params.get("upload_phase")
        self._take_fault(f"video_stories_{phase}")
        if phase == "start":
            video = Video(self._new_id(), page, reel=False)
            self.videos[video.id] = video
            return {"video_id": video.id, "upload_url": f"{self.url}/video-upload/v25.0/{video.id}"}
        if phase != "finish":
            raise GraphFailure(Fault(400, 100, None, "upload_phase must be start or finish"))
        video = self.videos.get(params.get("video_id", ""))
        if video is None or video.page != page or video.uploaded_from is None:
            raise GraphFailure(Fault(400, 100, None, "The video has not been uploaded"))
        if video.finished:
            raise GraphFailure(Fault(400, 100, None, "The video was already published"))
        video.finished, video.polls_left = True, self.processing_polls
        video.story_post_id = self._new_id()
        return {"success": True, "post_id": video.story_post_id}

    def status(self, video: Video) -> dict[str, Any]:
        self._take_fault("status")
        playable = (video.uploaded_from or "").split("?")[0].lower().endswith((".mp4", ".mov"))
        if video.story_post_id and not playable:
            return {"id": video.id, "status": {"video_status": "error"}}
        if not video.finished:
            phase = "not_started"
            state = "upload_complete" if video.uploaded_from else "uploading"
        elif video.polls_left > 0:
            video.polls_left -= 1
            phase, state = "in_progress", "processing"
        else:
            phase, state = "complete", "ready"
            if video.reel and not any(p.id == video.id for p in self.posts.values()):
                post = PagePost(video.id, video.page, video.description, self.now(), "reel")
                self.posts[post.id] = post
            if video.story_post_id and video.story_post_id not in self.stories:
                self._story(video.page, video.id, "video", video.story_post_id)
        uploading = "complete" if video.uploaded_from else "not_started"
        return {
            "id": video.id,
            "status": {
                "video_status": state,
                "uploading_phase": {"status": uploading},
                "publishing_phase": {"status": phase},
            },
            "permalink_url": f"https://www.facebook.com/reel/{video.id}",
        }

    def _build(self) -> FastAPI:
        app = FastAPI()
        emulator = self

        async def handle(request: Request, work: Any) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    body = work(user, params)
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            return emulator.answer(body, user)

        def own(user: str, page: str) -> None:
            if user != page:
                raise GraphFailure(Fault(400, 200, None, "Permissions error"))

        def on_page(page: str, method: Any) -> Any:
            """`method(page, params)`, for the Page's own token only."""

            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                own(user, page)
                result: dict[str, Any] = method(page, params)
                return result

            return work

        @app.post("/{version}/{page}/feed")
        async def feed(version: str, page: str, request: Request) -> JSONResponse:
            answer = await handle(request, on_page(page, emulator.feed))
            if emulator.publish_delay and answer.status_code == 200:
                await asyncio.sleep(emulator.publish_delay)  # posted; the answer comes late
            return answer

        @app.get("/{version}/{page}/feed")
        async def read_feed(version: str, page: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                own(user, page)
                emulator._take_fault("read_feed")
                posts = sorted(emulator.posts_of(page), key=lambda p: p.created_time, reverse=True)
                return {"data": [_post_json(p) for p in posts[: int(params.get("limit", 25))]]}

            return await handle(request, work)

        @app.post("/{version}/{page}/photos")
        async def photos(version: str, page: str, request: Request) -> JSONResponse:
            return await handle(request, on_page(page, emulator.photo))

        @app.post("/{version}/{page}/videos")
        async def videos(version: str, page: str, request: Request) -> JSONResponse:
            return await handle(request, on_page(page, emulator.video))

        @app.get("/{version}/{page}/videos")
        async def read_videos(version: str, page: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                own(user, page)
                mine = [v for v in emulator.videos.values() if v.page == page and not v.reel]
                return {"data": [{"id": v.id, "description": v.description} for v in mine]}

            return await handle(request, work)

        @app.post("/{version}/{page}/video_reels")
        async def reels(version: str, page: str, request: Request) -> JSONResponse:
            return await handle(request, on_page(page, emulator.reel))

        async def late(answer: JSONResponse) -> JSONResponse:
            if emulator.publish_delay and answer.status_code == 200:
                await asyncio.sleep(emulator.publish_delay)  # done; the answer comes late
            return answer

        @app.post("/{version}/{page}/photo_stories")
        async def photo_stories(version: str, page: str, request: Request) -> JSONResponse:
            return await late(await handle(request, on_page(page, emulator.photo_story)))

        @app.post("/{version}/{page}/video_stories")
        async def video_stories(version: str, page: str, request: Request) -> JSONResponse:
            params = await emulator.params_of(request)
            answer = await handle(request, on_page(page, emulator.video_story))
            return await late(answer) if params.get("upload_phase") == "finish" else answer

        @app.get("/{version}/{page}/stories")
        async def read_stories(version: str, page: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                own(user, page)
                emulator._take_fault("read_stories")
                mine = sorted(emulator.stories_of(page), key=lambda s: s.created_time)
                return {"data": [_story_json(s) for s in reversed(mine)]}

            return await handle(request, work)

        @app.post("/video-upload/{version}/{video_id}")
        async def upload(version: str, video_id: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                if not request.headers.get("authorization", "").startswith("OAuth "):
                    raise GraphFailure(Fault(400, 190, None, "rupload takes Authorization: OAuth"))
                video = emulator.videos.get(video_id)
                if video is None or video.page != user:
                    raise GraphFailure(Fault(400, 100, None, "Unknown video"))
                file_url = request.headers.get("file_url")
                if not file_url:
                    raise GraphFailure(
                        Fault(400, 100, None, "file_url header or a body is required")
                    )
                video.uploaded_from = file_url
                return {"success": True}

            return await handle(request, work)

        @app.post("/{version}/{object_id}/comments")
        async def comment(version: str, object_id: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                emulator._take_fault("comments")
                post = emulator.posts.get(object_id)
                if post is None or post.page != user:
                    raise GraphFailure(Fault(400, 100, 33, "Unsupported post request"))
                comment_id = f"{object_id}_{emulator._new_id()}"
                post.comments.append({"id": comment_id, "message": params.get("message", "")})
                return {"id": comment_id}

            return await handle(request, work)

        @app.get("/{version}/{object_id}")
        async def node(version: str, object_id: str, request: Request) -> JSONResponse:
            def work(user: str, params: dict[str, str]) -> dict[str, Any]:
                if object_id == user:  # the Page itself
                    return {"id": user, "name": f"Page {user}"}
                video = emulator.videos.get(object_id)
                if video is not None and video.page == user:
                    return emulator.status(video)
                post = emulator.posts.get(object_id)
                if post is None or post.page != user:
                    raise GraphFailure(Fault(400, 100, 33, "Unsupported get request"))
                return _post_json(post)

            return await handle(request, work)

        return app


def _story_json(story: Story) -> dict[str, Any]:
    return {
        "post_id": story.post_id,
        "status": "PUBLISHED",
        "creation_time": str(int(story.created_time.timestamp())),
        "media_type": story.media_type,
        "media_id": story.media_id,
        "url": story.url,
    }


def _post_json(post: PagePost) -> dict[str, Any]:
    return {
        "id": post.id,
        "message": post.message,
        "created_time": post.created_time.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "permalink_url": post.permalink,
        "is_published": True,
    }
