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
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.emulators.graph import Fault, GraphEmulator, GraphFailure

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


class InstagramEmulator(GraphEmulator):
    # What differs between Instagram and Threads (see `ThreadsEmulator`).
    create_path, publish_path, quota_path = "media", "media_publish", "content_publishing_limit"
    status_field, error_field, text_field = "status_code", "status", "caption"
    text_limit, carousel_max, image_suffixes = 2200, 10, (".jpg", ".jpeg")
    default_quota = 50
    refresh_grant = "ig_refresh_token"
    exchange_grant = "ig_exchange_token"

    def __init__(self, *, quota_total: int | None = None, processing_polls: int = 1) -> None:
        self.quota_total = quota_total or self.default_quota
        self.processing_polls = processing_polls
        self.container_limit = 400
        self.publish_delay = 0.0
        self.containers: dict[str, Container] = {}
        self.media: dict[str, Media] = {}
        self.published_at: dict[str, list[datetime]] = {}
        self.created_at: dict[str, list[datetime]] = {}
        self.refreshed: list[str] = []  # tokens issued by refreshing
        self.apps: dict[str, str] = {}  # client id -> secret
        self.usernames: dict[str, str] = {}
        self._codes: dict[str, tuple[str, str, str]] = {}  # code -> client, redirect, user
        self._short: dict[str, tuple[str, str]] = {}  # short-lived token -> client, user
        super().__init__()

    # --- what tests set up and read ----------------------------------------------------------

    def register_app(self, client_id: str, secret: str) -> None:
        self.apps[client_id] = secret

    def consent(self, client_id: str, redirect_uri: str, user_id: str, username: str) -> str:
        """The person approved on the consent page: the code the browser brings back."""
        code = f"code-{self._new_id()}"
        self._codes[code] = (client_id, redirect_uri, user_id)
        self.usernames[user_id] = username
        return code

    def oauth_error(self, message: str) -> JSONResponse:
        """Instagram Login's own error shape on its token endpoints."""
        body = {"error_type": "OAuthException", "code": 400, "error_message": message}
        return JSONResponse(body, status_code=400)

    def short_token_body(self, token: str, user_id: str) -> dict[str, Any]:
        """The code exchange's answer (Instagram's newer shape wraps it in a list)."""
        return {"data": [{"access_token": token, "user_id": user_id, "permissions": "x"}]}

    def use_quota(self, user_id: str, count: int) -> None:
        """`count` posts published in the last 24 hours, as if by another tool."""
        self.published_at.setdefault(user_id, []).extend([self.now()] * count)

    def posts_of(self, user_id: str) -> list[Media]:
        return [m for m in self.media.values() if m.user == user_id]

    # --- the API ----------------------------------------------------------------------------

    takes_text_only = False

    def check_text(self, caption: str) -> None:
        if len(caption) > self.text_limit:
            raise GraphFailure(Fault(400, 36004, 2207010, "The caption is too long"))
        if len(_HASHTAG.findall(caption)) > 30:
            raise GraphFailure(Fault(400, 100, None, "Too many hashtags"))
        if len(_MENTION.findall(caption)) > 20:
            raise GraphFailure(Fault(400, 100, 2207040, "Too many @ tags"))

    def create(self, user: str, owner: str, params: dict[str, str]) -> dict[str, Any]:
        self._take_fault(self.create_path)
        if owner != user:
            raise GraphFailure(Fault(400, 100, 33, "Unsupported post request"))
        creates = self.created_at.setdefault(user, [])
        if len(self._window(creates)) >= self.container_limit:
            raise GraphFailure(Fault(400, 9, None, "Application request limit reached"))
        self.check_text(params.get(self.text_field, ""))
        kind = params.get("media_type", "IMAGE")
        slow = kind in ("REELS", "VIDEO", "CAROUSEL", "STORIES") and "video_url" in params
        if kind == "TEXT" and not self.takes_text_only:
            raise GraphFailure(Fault(400, 100, 2207023, "The media type TEXT is not supported"))
        if kind == "CAROUSEL":
            children = [c for c in params.get("children", "").split(",") if c]
            if not 2 <= len(children) <= self.carousel_max:
                raise GraphFailure(
                    Fault(400, 100, 2207028, f"Carousel must have 2 to {self.carousel_max} items")
                )
            for child in children:
                if child not in self.containers or self.containers[child].user != user:
                    raise GraphFailure(Fault(400, 24, 2207008, "Media builder not found"))
            slow = True
        elif kind in ("REELS", "VIDEO") and "video_url" not in params:
            raise GraphFailure(Fault(400, 100, None, "video_url is required"))
        elif kind == "IMAGE" and "image_url" not in params:
            raise GraphFailure(Fault(400, 100, None, "image_url is required"))
        if "image_url" in params and not params["image_url"].split("?")[0].lower().endswith(
            self.image_suffixes
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
        body: dict[str, Any] = {"id": container.id, self.status_field: container.status}
        if container.status == "ERROR":
            body[self.error_field] = container.error or "Error: 2207001"
        return body

    def publish(self, user: str, owner: str, creation_id: str) -> dict[str, Any]:
        self._take_fault(self.publish_path)
        container = self.containers.get(creation_id)
        if owner != user or container is None or container.user != user:
            raise GraphFailure(Fault(400, 24, 2207008, "Media builder not found"))
        if container.status == "PUBLISHED":
            raise GraphFailure(Fault(400, 9007, 2207027, "The media has already been published"))
        if container.status != "FINISHED":
            raise GraphFailure(
                Fault(400, 9007, 2207027, "Media ID is not available", is_transient=True)
            )
        reply_to = container.params.get("reply_to_id")
        if not reply_to and (
            len(self._window(self.published_at.setdefault(user, []))) >= self.quota_total
        ):
            raise GraphFailure(Fault(400, 9, 2207042, "Reached the daily publishing limit"))
        media = Media(
            self._new_id(),
            user,
            container.params.get(self.text_field, ""),
            container.params.get("media_type", "IMAGE"),
            self.now().replace(microsecond=0),
            container.id,
        )
        container.status, container.media_id = "PUBLISHED", media.id
        if reply_to:
            parent = self.media.get(reply_to)
            if parent is None:
                raise GraphFailure(Fault(400, 100, None, "The post replied to does not exist"))
            parent.comments.append({"id": media.id, "text": media.caption})
            return {"id": media.id}
        self.media[media.id] = media
        self.published_at[user].append(self.now())
        return {"id": media.id}

    def _build(self) -> FastAPI:
        app = FastAPI()
        emulator = self

        def oauth_error(message: str) -> JSONResponse:
            return emulator.oauth_error(message)

        @app.post("/oauth/access_token")
        async def exchange_code(request: Request) -> JSONResponse:
            """The authorization code, for a short-lived token (used once)."""
            params = await emulator.params_of(request)
            with emulator._lock:
                client = params.get("client_id", "")
                if emulator.apps.get(client) != params.get("client_secret"):
                    return oauth_error("Invalid platform app")
                if params.get("grant_type") != "authorization_code":
                    return oauth_error("Unsupported grant_type")
                issued = emulator._codes.pop(params.get("code", ""), None)
                if issued is None or issued[:2] != (client, params.get("redirect_uri")):
                    return oauth_error("Invalid authorization code")
                short = f"short-{emulator._new_id()}"
                emulator._short[short] = (client, issued[2])
            return JSONResponse(emulator.short_token_body(short, issued[2]))

        @app.get("/access_token")
        async def long_lived(request: Request) -> JSONResponse:
            """A short-lived token, for a 60-day one."""
            params = await emulator.params_of(request)
            with emulator._lock:
                if params.get("grant_type") != emulator.exchange_grant:
                    return oauth_error("Unsupported grant_type")
                short = emulator._short.pop(params.get("access_token", ""), None)
                if short is None or emulator.apps.get(short[0]) != params.get("client_secret"):
                    return oauth_error("Invalid OAuth access token")
                token = f"long-{emulator._new_id()}"
                emulator.tokens[token] = short[1]
            return JSONResponse(
                {"access_token": token, "token_type": "bearer", "expires_in": 5_184_000}
            )

        @app.get("/refresh_access_token")
        async def refresh(request: Request) -> JSONResponse:
            """A new 60-day token for a valid long-lived one; the old one stops working."""
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    emulator._take_fault("refresh")
                    if params.get("grant_type") != emulator.refresh_grant:
                        raise GraphFailure(Fault(400, 100, None, "Unsupported grant_type"))
                    user = emulator._user_of(request, params)
                    old_token = params.get("access_token", "")
                    new_token = f"{old_token.split('~')[0]}~{emulator._new_id()}"
                    emulator.tokens.pop(old_token, None)
                    emulator.tokens[new_token] = user
                    emulator.refreshed.append(new_token)
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            body = {"access_token": new_token, "token_type": "bearer", "expires_in": 5_184_000}
            return emulator.answer(body, user)

        @app.post(f"/{{version}}/{{owner}}/{self.create_path}")
        async def create(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    return emulator.answer(emulator.create(user, owner, params), user)
            except GraphFailure as failure:
                return emulator.refuse(failure, user)

        @app.post(f"/{{version}}/{{owner}}/{self.publish_path}")
        async def media_publish(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    body = emulator.publish(user, owner, params.get("creation_id", ""))
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            if emulator.publish_delay:
                await asyncio.sleep(emulator.publish_delay)  # published; the answer comes late
            return emulator.answer(body, user)

        @app.get(f"/{{version}}/{{owner}}/{self.quota_path}")
        async def quota(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault(emulator.quota_path)
                    used = len(emulator._window(emulator.published_at.get(user, [])))
                    replies = sum(
                        len(m.comments) for m in emulator.media.values() if m.user == user
                    )
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            config = {"quota_total": emulator.quota_total, "quota_duration": 86400}
            usage: dict[str, Any] = {"quota_usage": used, "config": config}
            if emulator.takes_text_only:  # Threads: replies have a quota of their own
                usage["reply_quota_usage"] = replies
                usage["reply_config"] = {"quota_total": 1000, "quota_duration": 86400}
            return emulator.answer({"data": [usage]}, user)

        @app.get(f"/{{version}}/{{owner}}/{self.create_path}")
        async def listing(version: str, owner: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault("list")
                    mine = sorted(emulator.posts_of(user), key=lambda m: m.id, reverse=True)
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            limit = int(params.get("limit", "25"))
            data = [
                {
                    "id": m.id,
                    emulator.text_field: m.caption,
                    "timestamp": m.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                    "permalink": m.permalink,
                }
                for m in mine[:limit]
            ]
            return emulator.answer(
                {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}, user
            )

        @app.get("/{version}/{object_id}/replies")
        async def replies(version: str, object_id: str, request: Request) -> JSONResponse:
            """Threads: the replies to a post (all by the account here)."""
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    emulator._take_fault("replies")
                    media = emulator.media.get(object_id)
                    if media is None or media.user != user:
                        raise GraphFailure(Fault(400, 100, 33, "Unsupported get request"))
                    data = [
                        {"id": c["id"], "text": c["text"], "is_reply_owned_by_me": True}
                        for c in media.comments
                    ]
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            return emulator.answer({"data": data}, user)

        @app.post("/{version}/{object_id}/comments")
        async def comment(version: str, object_id: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
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
                return emulator.refuse(failure, user)
            return emulator.answer({"id": comment_id}, user)

        @app.get("/{version}/{object_id}")
        async def node(version: str, object_id: str, request: Request) -> JSONResponse:
            params, user = await emulator.params_of(request), None
            try:
                with emulator._lock:
                    user = emulator._user_of(request, params)
                    if object_id == "me":
                        me = {"id": user, "user_id": user}
                        return emulator.answer(
                            me | {"username": emulator.usernames.get(user)}, user
                        )
                    container = emulator.containers.get(object_id)
                    if container is not None and container.user == user:
                        return emulator.answer(emulator.status_of(container), user)
                    media = emulator.media.get(object_id)
                    if media is None or media.user != user:
                        raise GraphFailure(Fault(400, 100, 33, "Unsupported get request"))
            except GraphFailure as failure:
                return emulator.refuse(failure, user)
            body = {
                "id": media.id,
                "permalink": media.permalink,
                "timestamp": media.timestamp.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                emulator.text_field: media.caption,
            }
            return emulator.answer(body, user)

        return app


class ThreadsEmulator(InstagramEmulator):
    """Threads' container publishing (graph.threads.net): `threads` / `threads_publish`,
    `status` and `error_message` on containers, `text` posts without media, carousels of 2
    to 20, 500 characters (emoji counted as their UTF-8 bytes), JPEG or PNG images, 250
    posts per 24 h, and replies (`reply_to_id`), which have their own quota. Its OAuth is
    Instagram Login's (code -> 1-hour token -> `th_exchange_token` 60-day token), with
    errors in the Graph envelope."""

    create_path, publish_path, quota_path = "threads", "threads_publish", "threads_publishing_limit"
    status_field, error_field, text_field = "status", "error_message", "text"
    text_limit, carousel_max, image_suffixes = 500, 20, (".jpg", ".jpeg", ".png")
    default_quota = 250
    refresh_grant = "th_refresh_token"
    exchange_grant = "th_exchange_token"
    takes_text_only = True

    def oauth_error(self, message: str) -> JSONResponse:
        """Threads' token endpoints answer with the Graph envelope."""
        code = 190 if "token" in message.lower() else 100
        return self.refuse(GraphFailure(Fault(400, code, None, message)), None)

    def short_token_body(self, token: str, user_id: str) -> dict[str, Any]:
        return {"access_token": token, "user_id": user_id}

    def check_text(self, caption: str) -> None:
        # Emoji (pictographs, dingbats, joiners, variation selectors) weigh their UTF-8 bytes.
        length = sum(
            len(c.encode())
            if ord(c) >= 0x1F000 or 0x2600 <= ord(c) <= 0x27BF or c in "\u200d\ufe0f"
            else 1
            for c in caption
        )
        if length > self.text_limit:
            raise GraphFailure(
                Fault(
                    400, 100, None, f"Param text must be at most {self.text_limit} characters long."
                )
            )
