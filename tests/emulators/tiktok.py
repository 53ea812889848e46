"""TikTok's Content Posting API v2 (open.tiktokapis.com), as documented, for connector tests.

- Every answer is the envelope `{"data": {...}, "error": {"code", "message", "log_id"}}`,
  HTTP 200 with `error.code == "ok"` on success, the documented status otherwise.
- `creator_info/query` gives each creator's privacy options and disabled interactions;
  `video/init`, `inbox/video/init` and `content/init` are limited to 6 a minute per token
  (429 `rate_limit_exceeded`) and to a daily cap per creator (403
  `spam_risk_too_many_posts`); a `privacy_level` the creator does not offer is 403
  `privacy_level_option_mismatch`; a `PULL_FROM_URL` outside the verified prefixes is 403
  `url_ownership_unverified`.
- FILE_UPLOAD checks the chunk arithmetic (5 to 64 MB chunks, one chunk under 5 MB,
  `total_chunk_count = floor(video_size / chunk_size)`, the last chunk taking the rest) and
  takes the parts at `upload_url` (valid for an hour) with `Content-Range`, in order: 206
  for a part, 201 for the last. The bytes are counted, not kept.
- A publish walks PROCESSING_UPLOAD or PROCESSING_DOWNLOAD -> PUBLISH_COMPLETE (inbox:
  SEND_TO_USER_INBOX) after `processing_polls` status reads, or FAILED with a `fail_reason`
  when told to (`fail_next_publish`); its post id appears only after `moderation_polls`
  more reads.
- Tokens expire (`expire`); the token endpoint exchanges codes (PKCE: the verifier must
  hash to the challenge) and refreshes with rotation: a refresh token works once.
- Each endpoint can be told to fail next (`fail`), and `video/init` or an upload's last
  part to answer late after doing its work (`init_delay`, `upload_delay`), as a lost
  answer.
"""

import asyncio
import base64
import hashlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

MB = 1024 * 1024
CHUNK_MIN, CHUNK_MAX, LAST_CHUNK_MAX = 5 * MB, 64 * MB, 128 * MB
PRIVACY = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"]


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


@dataclass
class Creator:
    open_id: str
    username: str
    privacy_level_options: list[str] = field(default_factory=lambda: list(PRIVACY))
    comment_disabled: bool = False
    duet_disabled: bool = False
    stitch_disabled: bool = False
    max_video_post_duration_sec: int = 600


@dataclass
class Publish:
    id: str
    creator: str
    kind: str  # video, inbox, photo
    post_info: dict[str, Any]
    source_info: dict[str, Any]
    created_at: datetime
    status: str
    polls_left: int
    moderation_left: int
    fail_reason: str | None = None
    received: int = 0  # bytes uploaded
    parts: list[tuple[int, int]] = field(default_factory=list)
    post_id: str | None = None

    @property
    def title(self) -> str:
        return str(self.post_info.get("title") or "")


class TikTokEmulator:
    def __init__(self, *, processing_polls: int = 1, moderation_polls: int = 0) -> None:
        self.url = ""  # set once it is served
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.processing_polls = processing_polls
        self.moderation_polls = moderation_polls
        self.daily_cap = 15  # per creator (undisclosed by TikTok; integrators report ~15)
        self.init_per_minute = 6
        self.verified_prefixes: list[str] = ["https://cdn.example.com/"]
        self.init_delay = 0.0
        self.upload_delay = 0.0
        self.creators: dict[str, Creator] = {}
        self.tokens: dict[str, str] = {}  # access token -> open_id
        self.token_expiry: dict[str, datetime] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh -> client, open_id
        self.spent_refresh_tokens: set[str] = set()
        self.apps: dict[str, str] = {}  # client key -> secret
        self.access_lifetime = timedelta(hours=2)
        self.refresh_lifetime = timedelta(days=180)
        self.publishes: dict[str, Publish] = {}
        self.faults: dict[str, list[Refusal]] = {}
        self.calls: list[str] = []
        self._fail_reasons: list[str] = []
        self._inits: dict[str, list[datetime]] = {}
        self._codes: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(7_300_000_000_000_000_001)
        self._lock = threading.Lock()
        self.app = self._build()

    # --- set-up and inspection ------------------------------------------------------------

    def account(self, open_id: str, token: str, *, username: str = "brand") -> Creator:
        creator = self.creators.setdefault(open_id, Creator(open_id, username))
        self.tokens[token] = open_id
        return creator

    def expire(self, token: str) -> None:
        self.token_expiry[token] = self.now() - timedelta(seconds=1)

    def fail(
        self, endpoint: str, status: int, code: str, message: str = "", times: int = 1
    ) -> None:
        """The next `times` calls of `endpoint` (creator_info, video_init, inbox_init,
        content_init, status, upload, token) are refused like this."""
        refusal = Refusal(status, code, message or code.replace("_", " "))
        self.faults.setdefault(endpoint, []).extend([refusal] * times)

    def fail_next_publish(self, reason: str) -> None:
        """The next publish to be processed ends FAILED with `reason`."""
        self._fail_reasons.append(reason)

    def count(self, endpoint: str) -> int:
        return self.calls.count(endpoint)

    def posts_of(self, open_id: str) -> list[Publish]:
        """What went live (or to the inbox) for a creator."""
        done = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")
        return [p for p in self.publishes.values() if p.creator == open_id and p.status in done]

    def register_app(self, client_key: str, secret: str) -> None:
        self.apps[client_key] = secret

    def consent(
        self, client_key: str, redirect_uri: str, open_id: str, code_challenge: str, scope: str
    ) -> str:
        """The person agrees on TikTok's page: the code the browser brings back."""
        code = f"code-{next(self._ids)}"
        self._codes[code] = {
            "client": client_key,
            "redirect_uri": redirect_uri,
            "open_id": open_id,
            "challenge": code_challenge,
            "scope": scope,
        }
        return code

    # --- the API -------------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _take_fault(self, endpoint: str) -> None:
        self.calls.append(endpoint)
        queue = self.faults.get(endpoint)
        if queue:
            raise queue.pop(0)

    def _creator_of(self, request: Request) -> Creator:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise Refusal(401, "access_token_invalid", "The access token is invalid or not found")
        expiry = self.token_expiry.get(token)
        if expiry is not None and expiry <= self.now():
            raise Refusal(401, "access_token_invalid", "The access token has expired")
        return self.creators[self.tokens[token]]

    @staticmethod
    def envelope(data: dict[str, Any], status: int = 200, code: str = "ok", message: str = ""):  # type: ignore[no-untyped-def]
        error = {"code": code, "message": message, "log_id": "202612030000000000ABCDEF"}
        return JSONResponse({"data": data, "error": error}, status_code=status)

    def _count_init(self, token: str, creator: Creator) -> None:
        now = self.now()
        recent = [t for t in self._inits.get(token, []) if t > now - timedelta(minutes=1)]
        if len(recent) >= self.init_per_minute:
            raise Refusal(429, "rate_limit_exceeded", "Rate limit exceeded, try again later")
        day = [
            p
            for p in self.publishes.values()
            if p.creator == creator.open_id and p.created_at > now - timedelta(hours=24)
        ]
        if len(day) >= self.daily_cap:
            raise Refusal(403, "spam_risk_too_many_posts", "The user has posted too many times")
        self._inits[token] = [*recent, now]

    def _check_post_info(self, creator: Creator, info: dict[str, Any], photo: bool) -> None:
        level = info.get("privacy_level")
        if level not in PRIVACY:
            raise Refusal(400, "invalid_param", "privacy_level is required")
        if level not in creator.privacy_level_options:
            raise Refusal(
                403,
                "privacy_level_option_mismatch",
                "privacy_level is not among the creator's privacy_level_options",
            )
        title = str(info.get("title") or "")
        limit = 90 if photo else 2200
        if len(title.encode("utf-16-le")) // 2 > limit:
            raise Refusal(400, "invalid_param", f"title is longer than {limit}")
        if photo and len(str(info.get("description") or "").encode("utf-16-le")) // 2 > 4000:
            raise Refusal(400, "invalid_param", "description is longer than 4000")

    def _check_pull(self, url: Any) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Refusal(400, "invalid_param", "the media url is invalid")
        if not any(url.startswith(prefix) for prefix in self.verified_prefixes):
            raise Refusal(
                403, "url_ownership_unverified", "the domain or URL prefix is not verified"
            )

    def _check_upload(self, source: dict[str, Any]) -> None:
        size, chunk, count = (
            source.get("video_size"),
            source.get("chunk_size"),
            source.get("total_chunk_count"),
        )
        if not all(isinstance(v, int) and v > 0 for v in (size, chunk, count)):
            raise Refusal(400, "invalid_param", "video_size, chunk_size, total_chunk_count")
        assert isinstance(size, int)
        assert isinstance(chunk, int)
        assert isinstance(count, int)
        if size < CHUNK_MIN:
            if chunk != size or count != 1:
                raise Refusal(400, "invalid_param", "a video under 5 MB is uploaded whole")
            return
        if not CHUNK_MIN <= chunk <= CHUNK_MAX or chunk > size:
            raise Refusal(400, "invalid_param", "chunk_size must be 5 MB to 64 MB")
        if count != size // chunk or not 1 <= count <= 1000:
            raise Refusal(400, "invalid_param", "total_chunk_count must be video_size / chunk_size")
        if size - chunk * (count - 1) > LAST_CHUNK_MAX:
            raise Refusal(400, "invalid_param", "the last chunk may be 128 MB at most")

    def _new_publish(
        self, creator: Creator, kind: str, body: dict[str, Any], status: str
    ) -> Publish:
        publish = Publish(
            id=f"v_pub_{kind}~v2.{self._new_id()}",
            creator=creator.open_id,
            kind=kind,
            post_info=dict(body.get("post_info") or {}),
            source_info=dict(body.get("source_info") or {}),
            created_at=self.now(),
            status=status,
            polls_left=self.processing_polls,
            moderation_left=self.moderation_polls,
        )
        self.publishes[publish.id] = publish
        return publish

    def _advance(self, publish: Publish) -> None:
        """One status read: processing counts down, then the publish ends."""
        if publish.status not in ("PROCESSING_UPLOAD", "PROCESSING_DOWNLOAD"):
            if publish.status == "PUBLISH_COMPLETE" and publish.post_id is None:
                if publish.moderation_left > 0:
                    publish.moderation_left -= 1
                else:
                    publish.post_id = self._new_id()
            return
        if publish.status == "PROCESSING_UPLOAD":
            size = publish.source_info.get("video_size")
            if publish.received < (size or 0):
                return  # waits for its parts
        if publish.polls_left > 0:
            publish.polls_left -= 1
            return
        if self._fail_reasons:
            publish.status, publish.fail_reason = "FAILED", self._fail_reasons.pop(0)
            return
        publish.status = "SEND_TO_USER_INBOX" if publish.kind == "inbox" else "PUBLISH_COMPLETE"
        if publish.status == "PUBLISH_COMPLETE" and publish.moderation_left == 0:
            publish.post_id = self._new_id()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.exception_handler(Refusal)
        async def refused(_: Request, refusal: Refusal) -> JSONResponse:
            return self.envelope({}, refusal.status, refusal.code, refusal.message)

        async def json_body(request: Request) -> dict[str, Any]:
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise Refusal(400, "invalid_param", "Content-Type must be application/json")
            try:
                body = await request.json()
            except ValueError:
                raise Refusal(400, "invalid_param", "the body is not JSON") from None
            if not isinstance(body, dict):
                raise Refusal(400, "invalid_param", "the body is not a JSON object")
            return body

        @app.post("/v2/post/publish/creator_info/query/")
        async def creator_info(request: Request) -> JSONResponse:
            self._take_fault("creator_info")
            c = self._creator_of(request)
            return self.envelope(
                {
                    "creator_avatar_url": f"https://p16.tiktokcdn.com/{c.open_id}.jpeg",
                    "creator_username": c.username,
                    "creator_nickname": c.username.title(),
                    "privacy_level_options": c.privacy_level_options,
                    "comment_disabled": c.comment_disabled,
                    "duet_disabled": c.duet_disabled,
                    "stitch_disabled": c.stitch_disabled,
                    "max_video_post_duration_sec": c.max_video_post_duration_sec,
                }
            )

        async def video_init(request: Request, kind: str) -> JSONResponse:
            self._take_fault(f"{kind}_init")
            creator = self._creator_of(request)
            body = await json_body(request)
            source = body.get("source_info") or {}
            with self._lock:
                if kind == "video":
                    self._check_post_info(creator, body.get("post_info") or {}, photo=False)
                if source.get("source") == "PULL_FROM_URL":
                    self._check_pull(source.get("video_url"))
                    status = "PROCESSING_DOWNLOAD"
                elif source.get("source") == "FILE_UPLOAD":
                    self._check_upload(source)
                    status = "PROCESSING_UPLOAD"
                else:
                    raise Refusal(
                        400, "invalid_param", "source must be FILE_UPLOAD or PULL_FROM_URL"
                    )
                token = request.headers["authorization"].partition(" ")[2]
                self._count_init(token, creator)
                publish = self._new_publish(creator, kind, body, status)
            data: dict[str, Any] = {"publish_id": publish.id}
            if status == "PROCESSING_UPLOAD":
                data["upload_url"] = f"{self.url}/upload/?upload_id={publish.id}"
            if self.init_delay:
                await asyncio.sleep(self.init_delay)
            return self.envelope(data)

        @app.post("/v2/post/publish/video/init/")
        async def direct_video(request: Request) -> JSONResponse:
            return await video_init(request, "video")

        @app.post("/v2/post/publish/inbox/video/init/")
        async def inbox_video(request: Request) -> JSONResponse:
            return await video_init(request, "inbox")

        @app.post("/v2/post/publish/content/init/")
        async def content_init(request: Request) -> JSONResponse:
            self._take_fault("content_init")
            creator = self._creator_of(request)
            body = await json_body(request)
            if body.get("media_type") != "PHOTO":
                raise Refusal(400, "invalid_param", "media_type must be PHOTO")
            mode = body.get("post_mode")
            if mode not in ("DIRECT_POST", "MEDIA_UPLOAD"):
                raise Refusal(400, "invalid_param", "post_mode must be DIRECT_POST or MEDIA_UPLOAD")
            source = body.get("source_info") or {}
            if source.get("source") != "PULL_FROM_URL":
                raise Refusal(400, "invalid_param", "photos are pulled from URLs only")
            images = source.get("photo_images")
            if not isinstance(images, list) or not 1 <= len(images) <= 35:
                raise Refusal(400, "invalid_param", "photo_images takes 1 to 35 URLs")
            cover = source.get("photo_cover_index", 0)
            if not isinstance(cover, int) or not 0 <= cover < len(images):
                raise Refusal(400, "invalid_param", "photo_cover_index is out of range")
            with self._lock:
                if mode == "DIRECT_POST":
                    self._check_post_info(creator, body.get("post_info") or {}, photo=True)
                for image in images:
                    self._check_pull(image)
                token = request.headers["authorization"].partition(" ")[2]
                self._count_init(token, creator)
                kind = "photo" if mode == "DIRECT_POST" else "inbox"
                publish = self._new_publish(creator, kind, body, "PROCESSING_DOWNLOAD")
            return self.envelope({"publish_id": publish.id})

        @app.put("/upload/")
        async def upload(request: Request) -> Response:
            self._take_fault("upload")
            publish = self.publishes.get(request.query_params.get("upload_id", ""))
            if publish is None or publish.status != "PROCESSING_UPLOAD":
                return Response(status_code=404)
            if self.now() > publish.created_at + timedelta(hours=1):
                return Response(status_code=403)  # the upload URL has expired
            size = int(publish.source_info["video_size"])
            chunk = int(publish.source_info["chunk_size"])
            count = int(publish.source_info["total_chunk_count"])
            try:
                unit, _, spec = request.headers["content-range"].partition(" ")
                span, _, total = spec.partition("/")
                first_text, _, last_text = span.partition("-")
                first, last = int(first_text), int(last_text)
                declared = int(request.headers["content-length"])
            except (KeyError, ValueError) as exc:
                return Response(f"bad Content-Range or Content-Length: {exc}", status_code=400)
            index = len(publish.parts)
            expected_first = index * chunk
            expected_last = size - 1 if index == count - 1 else expected_first + chunk - 1
            if (
                unit != "bytes"
                or int(total) != size
                or (first, last) != (expected_first, expected_last)
                or declared != last - first + 1
                or request.headers.get("content-type")
                not in ("video/mp4", "video/quicktime", "video/webm")
            ):
                return Response(status_code=416)
            received = 0
            async for piece in request.stream():
                received += len(piece)
            if received != declared:
                return Response(f"got {received} bytes of {declared}", status_code=400)
            publish.parts.append((first, last))
            publish.received += received
            if publish.received < size:
                return Response(status_code=206)
            if self.upload_delay:
                await asyncio.sleep(self.upload_delay)
            return Response(status_code=201)

        @app.post("/v2/post/publish/status/fetch/")
        async def status_fetch(request: Request) -> JSONResponse:
            self._take_fault("status")
            creator = self._creator_of(request)
            body = await json_body(request)
            publish = self.publishes.get(str(body.get("publish_id")))
            if publish is None or publish.creator != creator.open_id:
                raise Refusal(400, "invalid_param", "publish_id does not exist")
            with self._lock:
                self._advance(publish)
            data: dict[str, Any] = {"status": publish.status}
            if publish.fail_reason:
                data["fail_reason"] = publish.fail_reason
            if publish.post_id:
                data["publicaly_available_post_id"] = [int(publish.post_id)]
            if publish.source_info.get("source") == "FILE_UPLOAD":
                data["uploaded_bytes"] = publish.received
            return self.envelope(data)

        @app.post("/v2/oauth/token/")
        async def token(request: Request) -> JSONResponse:
            self._take_fault("token")
            form = {k: str(v) for k, v in (await request.form()).items()}

            def oauth_error(error: str, description: str) -> JSONResponse:
                return JSONResponse(
                    {"error": error, "error_description": description, "log_id": "x"},
                    status_code=400,
                )

            client = form.get("client_key", "")
            if client not in self.apps or self.apps[client] != form.get("client_secret"):
                return oauth_error("invalid_client", "Client key or secret is incorrect.")
            grant = form.get("grant_type")
            with self._lock:
                if grant == "authorization_code":
                    grant_ = self._codes.pop(form.get("code", ""), None)
                    if grant_ is None or grant_["client"] != client:
                        return oauth_error("invalid_grant", "Authorization code is expired.")
                    if grant_["redirect_uri"] != form.get("redirect_uri"):
                        return oauth_error("invalid_request", "Redirect URI mismatch.")
                    verifier = form.get("code_verifier", "")
                    digest = hashlib.sha256(verifier.encode()).digest()
                    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                    if grant_["challenge"] and challenge != grant_["challenge"]:
                        return oauth_error(
                            "invalid_request", "Code verifier or code challenge is invalid."
                        )
                    open_id, scope = grant_["open_id"], grant_["scope"]
                elif grant == "refresh_token":
                    old = form.get("refresh_token", "")
                    known = self.refresh_tokens.pop(old, None)
                    if known is None or known[0] != client:
                        return oauth_error("invalid_grant", "Refresh token is invalid or expired.")
                    self.spent_refresh_tokens.add(old)
                    open_id, scope = known[1], "user.info.basic,video.publish,video.upload"
                else:
                    return oauth_error("unsupported_grant_type", "grant_type is not supported.")
                access, refresh = f"act.{self._new_id()}", f"rft.{self._new_id()}"
                self.tokens[access] = open_id
                self.creators.setdefault(open_id, Creator(open_id, f"user{open_id[-4:]}"))
                self.token_expiry[access] = self.now() + self.access_lifetime
                self.refresh_tokens[refresh] = (client, open_id)
            return JSONResponse(
                {
                    "open_id": open_id,
                    "scope": scope,
                    "access_token": access,
                    "expires_in": int(self.access_lifetime.total_seconds()),
                    "refresh_token": refresh,
                    "refresh_expires_in": int(self.refresh_lifetime.total_seconds()),
                    "token_type": "Bearer",
                }
            )

        @app.get("/v2/user/info/")
        async def user_info(request: Request) -> JSONResponse:
            self._take_fault("user_info")
            c = self._creator_of(request)
            return self.envelope(
                {
                    "user": {
                        "open_id": c.open_id,
                        "display_name": c.username.title(),
                        "username": c.username,
                    }
                }
            )

        return app


def media_app(files: dict[str, tuple[str, int]]) -> FastAPI:
    """A media host: `/name` answers `files[name]` = (content type, size) bytes, generated
    as they are sent (nothing of that size is held), with its Content-Length."""
    app = FastAPI()
    piece = bytes(range(256)) * 256  # 64 KiB

    @app.api_route("/{name}", methods=["GET", "HEAD"])
    async def serve(name: str, request: Request) -> Response:
        if name not in files:
            return Response(status_code=404)
        content_type, size = files[name]
        headers = {"content-length": str(size)}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=content_type)

        async def body():  # type: ignore[no-untyped-def]
            left = size
            while left > 0:
                chunk = piece[: min(left, len(piece))]
                left -= len(chunk)
                yield chunk

        return StreamingResponse(body(), headers=headers, media_type=content_type)

    return app
