"""Instagram's content publishing API (Graph), as documented, for connector tests.

Containers go IN_PROGRESS -> FINISHED (after `processing_polls` status reads; videos and
carousels take that long, images are ready at once) -> PUBLISHED, or ERROR when told to,
and EXPIRED 24 h after creation. `media_publish` counts against a rolling 24-hour quota
(`quota_total`, 50 by default; 100 per Meta's guide) and refuses a container that is not
FINISHED (9007/2207027). Captions are checked (2,200 characters, 30 hashtags, 20 @ tags),
carousels take 2 to 10 children, and creates are limited to 400 per 24 h. Errors use the
Graph envelope with the documented code and subcode, every answer carries an
`X-Business-Use-Case-Usage` header, and each endpoint can be told to fail next (`fail`), or
`media_publish` to answer late after publishing (`publish_delay`), as a lost answer.

Any `vNN.N` version prefix is accepted; tokens come as `Authorization: Bearer|OAuth` or an
`access_token` parameter.
"""

import asyncio
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_HASHTAG = re.compile(r"(?<!\w)#\w+")
_MENTION = re.compile(r"(?<![\w@])@[\w.]+")


@dataclass
class Container:
    id: str
    user: str
    params: dict[str, str]
    created_at: datetime
    polls_left: int
    status: str = "IN_PROGRESS"
    error: str | None = None
    media_id: str | None = None


@dataclass
class Media:
    id: str
    user: str
    caption: str
    media_type: str
    timestamp: datetime
    container: str
    comments: list[dict[str, str]] = field(default_factory=list)

    @property
    def permalink(self) -> str:
        return f"https://www.instagram.com/p/{self.id}/"


@dataclass
class Fault:
    status: int
    code: int | None
    subcode: int | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    is_transient: bool | None = None


class GraphFailure(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault


class InstagramEmulator:
    def __init__(self, *, quota_total: int = 50, processing_polls: int = 1) -> None:
        self.url = ""  # set once it is served
        self.quota_total = quota_total
        self.processing_polls = processing_polls
        self.container_limit = 400
        self.publish_delay = 0.0
        self.usage_percent = 5
        self.regain_minutes = 0
        self.now = lambda: datetime.now(UTC)
        self._lock = threading.Lock()
        self._ids = itertools.count(17_900_000_000_000_001)
        self.tokens: dict[str, str] = {}
        self.expired_tokens: set[str] = set()
        self.containers: dict[str, Container] = {}
        self.media: dict[str, Media] = {}
        self.published_at: dict[str, list[datetime]] = {}
        self.created_at: dict[str, list[datetime]] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.calls: list[tuple[str, str]] = []
        self.app = self._build()

    # --- what tests set up and read ----------------------------------------------------------

    def account(self, user_id: str, token: str) -> None:
        self.tokens[token] = user_id

    def fail(
        self,
        endpoint: str,
        code: int | None,
        subcode: int | None = None,
        *,
        status: int = 400,
        message: str = "An error occurred",
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` calls of `endpoint` (`media`, `media_publish`, `status`,
        `content_publishing_limit`, `comments`, `list`) fail like this."""
        fault = Fault(status, code, subcode, message, headers or {})
        self.faults.setdefault(endpoint, []).extend([fault] * times)

    def use_quota(self, user_id: str, count: int) -> None:
        """`count` posts published in the last 24 hours, as if by another tool."""
        self.published_at.setdefault(user_id, []).extend([self.now()] * count)

    def posts_of(self, user_id: str) -> list[Media]:
        return [m for m in self.media.values() if m.user == user_id]

    def count(self, endpoint: str) -> int:
        return sum(1 for _, name in self.calls if name == endpoint)

    # --- the API ----------------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _take_fault(self, endpoint: str) -> None:
        self.calls.append(("call", endpoint))
        queue = self.faults.get(endpoint)
        if queue:
            raise GraphFailure(queue.pop(0))

    def _user_of(self, request: Request, params: dict[str, str]) -> str:
        header = request.headers.get("authorization", "")
        token = params.get("access_token") or header.partition(" ")[2]
        if token in self.expired_tokens:
            raise GraphFailure(
                Fault(400, 190, 463, "Error validating access token: Session has expired")
            )
        if token not in self.tokens:
            raise GraphFailure(Fault(400, 190, 467, "Invalid OAuth access token"))
        return self.tokens[token]

    def _usage(self, user: str | None) -> dict[str, str]:
        entry = {
            "type": "instagram",
            "call_count": self.usage_percent,
            "total_cputime": 1,
            "total_time": 1,
            "estimated_time_to_regain_access": self.regain_minutes,
        }
        return {"x-business-use-case-usage": json.dumps({user or "0": [entry]})}

    def _window(self, times: list[datetime]) -> list[datetime]:
        since = self.now() - timedelta(hours=24)
        return [t for t in times if t > since]

    def create(self, user: str, owner: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault("media")
        if owner != user:
            raise GraphFailure(Fault(400, 100, 33, "Unsupported post request"))
        creates = self.created_at.setdefault(user, [])
        if len(self._window(creates)) >= self.container_limit:
            raise GraphFailure(Fault(400, 9, None, "Application request limit reached"))
        caption = params.get("caption", "")
        if len(caption) > 2200:
            raise GraphFailure(Fault(400, 36004, 2207010, "The caption is too long"))
        if len(_HASHTAG.findall(caption)) > 30:
            raise GraphFailure(Fault(400, 100, None, "Too many hashtags"))
        if len(_MENTION.findall(caption)) > 20:
            raise GraphFailure(Fault(400, 100, 2207040, "Too many @ tags"))
        kind = params.get("media_type", "IMAGE")
        slow = kind in ("REELS", "VIDEO", "CAROUSEL", "STORIES") and "video_url" in params
        if kind == "CAROUSEL":
            children = [c for c in params.get("children", "").split(",") if c]
            if not 2 <= len(children) <= 10:
                raise GraphFailure(Fault(400, 100, 2207028, "Carousel must have 2 to 10 items"))
            for child in children:
                if child not in self.containers or self.containers[child].user != user:
                    raise GraphFailure(Fault(400, 24, 2207008, "Media builder not found"))
            slow = True
        elif kind in ("REELS", "VIDEO") and "video_url" not in params:
            raise GraphFailure(Fault(400, 100, None, "video_url is required"))
        elif kind == "IMAGE" and "image_url" not in params:
            raise GraphFailure(Fault(400, 100, None, "image_url is required"))
        if "image_url" in params and not params["image_url"].split("?")[0].lower().endswith(
            (".jpg", ".jpeg")
        ):
            raise GraphFailure(Fault(400, 36001, 2207005, "Unsupported image format"))
        container = Container(
            self._new_id(), user, dict(params), self.now(), self.processing_polls if slow else 0
        )
        if container.polls_left == 0:
            container.status = "FINISHED"
        self.containers[container.id] = container
        creates.append(self.now())
        return {"id": container.id}

    def status_of(self, container: Container) -> dict[str, Any]:
        self._take_fault("status")
        if container.status in ("IN_PROGRESS", "FINISHED") and (
            self.now() - container.created_at > timedelta(hours=24)
        ):
            container.status = "EXPIRED"
        if container.status == "IN_PROGRESS":
            if container.error:
                container.status = "ERROR"
            elif container.polls_left <= 1:
                container.status = "FINISHED"
            else:
                container.polls_left -= 1
        body: dict[str, Any] = {"id": container.id, "status_code": container.status}
        if container.status == "ERROR":
            body["status"] = container.error or "Error: 2207001"
        return body

    def publish(self, user: str, owner: str, creation_id: str) -> dict[str, Any]:
        self._take_fault("media_publish")
        container = self.containers.get(creation_id)
        if owner != user or container is None or container.user != user:
            raise GraphFailure(Fault(400, 24, 2207008, "Media builder not found"))
        if container.status == "PUBLISHED":
            raise GraphFailure(Fault(400, 9007, 2207027, "The media has already been published"))
        if container.status != "FINISHED":
            raise GraphFailure(
                Fault(400, 9007, 2207027, "Media ID is not available", is_transient=True)
            )
        if len(self._window(self.published_at.setdefault(user, []))) >= self.quota_total:
            raise GraphFailure(Fault(400, 9, 2207042, "Reached the daily publishing limit"))
        media = Media(
            self._new_id(),
            user,
            container.params.get("caption", ""),
            container.params.get("media_type", "IMAGE"),
            self.now().replace(microsecond=0),
            container.id,
        )
        self.media[media.id] = media
        container.status, container.media_id = "PUBLISHED", media.id
        self.published_at[user].append(self.now())
        return {"id": media.id}

    def _build(self) -> FastAPI:
        app = FastAPI()
        emulator = self

        async def params_of(request: Request) -> dict[str, str]:
            params = dict(request.query_params)
            if request.method == "POST":
                form = await request.form()
                params.update({k: str(v) for k, v in form.items()})
            return params

        def answer(body: dict[str, Any], user: str | None) -> JSONResponse:
            return JSONResponse(body, headers=emulator._usage(user))

        def refuse(failure: GraphFailure, user: str | None) -> JSONResponse:
            f = failure.fault
            error: dict[str, Any] = {
                "message": f.message,
                "type": "OAuthException",
                "fbtrace_id": "AbCdEfGh123",
            }
            if f.code is not None:
                error["code"] = f.code
            if f.subcode is not None:
                error["error_subcode"] = f.subcode
                error["error_user_msg"] = f.message
            if f.is_transient is not None:
                error["is_transient"] = f.is_transient
            headers = emulator._usage(user) | f.headers
            if f.code is None:
                return JSONResponse({"detail": f.message}, status_code=f.status, headers=headers)
            return JSONResponse({"error": error}, status_code=f.status, headers=headers)

        @app.post("/{version}/{owner}/media")
        async def create(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    return answer(emulator.create(user, owner, params), user)
            except GraphFailure as failure:
                return refuse(failure, user)

        @app.post("/{version}/{owner}/media_publish")
        async def media_publish(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    body = emulator.publish(user, owner, params.get("creation_id", ""))
            except GraphFailure as failure:
                return refuse(failure, user)
            if emulator.publish_delay:
                await asyncio.sleep(emulator.publish_delay)  # published; the answer comes late
            return answer(body, user)

        @app.get("/{version}/{owner}/content_publishing_limit")
        async def quota(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault("content_publishing_limit")
                    used = len(emulator._window(emulator.published_at.get(user, [])))
            except GraphFailure as failure:
                return refuse(failure, user)
            config = {"quota_total": emulator.quota_total, "quota_duration": 86400}
            return answer({"data": [{"quota_usage": used, "config": config}]}, user)

        @app.get("/{version}/{owner}/media")
        async def listing(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault("list")
                    mine = sorted(emulator.posts_of(user), key=lambda m: m.id, reverse=True)
            except GraphFailure as failure:
                return refuse(failure, user)
            limit = int(params.get("limit", "25"))
            data = [
                {
                    "id": m.id,
                    "caption": m.caption,
                    "timestamp": m.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                    "permalink": m.permalink,
                }
                for m in mine[:limit]
            ]
            return answer(
                {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}, user
            )

        @app.post("/{version}/{object_id}/comments")
        async def comment(version: str, object_id: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault("comments")
                    media = emulator.media.get(object_id)
                    if media is None or media.user != user:
                        raise GraphFailure(Fault(400, 100, 33, "Unsupported post request"))
                    comment_id = emulator._new_id()
                    media.comments.append({"id": comment_id, "text": params.get("message", "")})
            except GraphFailure as failure:
                return refuse(failure, user)
            return answer({"id": comment_id}, user)

        @app.get("/{version}/{object_id}")
        async def node(version: str, object_id: str, request: Request) -> JSONResponse:
            params, user = await params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    container = emulator.containers.get(object_id)
                    if container is not None and container.user == user:
                        return answer(emulator.status_of(container), user)
                    media = emulator.media.get(object_id)
                    if media is None or media.user != user:
                        raise GraphFailure(Fault(400, 100, 33, "Unsupported get request"))
            except GraphFailure as failure:
                return refuse(failure, user)
            body = {
                "id": media.id,
                "permalink": media.permalink,
                "timestamp": media.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "caption": media.caption,
            }
            return answer(body, user)

        return app
