"""What every platform connector offers, and the plain values its rules are checked on."""

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import httpx

from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.fetch import FetchPolicy
from tidings.publishing.states import ErrorKind


class PostType(StrEnum):
    POST = "POST"
    REEL = "REEL"
    STORY = "STORY"
    CAROUSEL = "CAROUSEL"


class MediaType(StrEnum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    CAROUSEL = "CAROUSEL"


_VIDEO_SUFFIX = re.compile(r"\.(mp4|mov|m4v|webm|avi|mkv)$", re.IGNORECASE)


@dataclass(frozen=True)
class MediaItem:
    url: str
    alt_text: str | None = None

    @property
    def path(self) -> str:
        """The URL without its query and fragment (what a file extension is read from)."""
        return self.url.split("?", 1)[0].split("#", 1)[0]

    @property
    def looks_like_video(self) -> bool:
        return bool(_VIDEO_SUFFIX.search(self.path))


def media_items(media: Any) -> list[MediaItem]:
    """The media of a post as a list, whichever of the accepted shapes it was given in."""
    if media is None:
        return []
    if isinstance(media, str):
        return [MediaItem(media)]
    items = []
    for entry in media:
        if isinstance(entry, str):
            items.append(MediaItem(entry))
        else:
            items.append(MediaItem(entry["url"], entry.get("altText")))
    return items


@dataclass(frozen=True)
class PostContent:
    """What is published, independent of storage: the post-level fields."""

    type: PostType
    media: list[MediaItem]
    media_type: MediaType | None
    scheduled_for: datetime | None

    @property
    def effective_media_type(self) -> MediaType | None:
        """`mediaType` as given, else inferred: several items are a carousel, a video
        file extension is a video, anything else an image."""
        if self.media_type is not None:
            return self.media_type
        if not self.media:
            return None
        if len(self.media) > 1:
            return MediaType.CAROUSEL
        return MediaType.VIDEO if self.media[0].looks_like_video else MediaType.IMAGE


@dataclass(frozen=True)
class TargetContent:
    """What is published on one channel."""

    channel_id: str
    caption: str | None
    first_comment: str | None
    options: dict[str, Any] = field(default_factory=dict)


MB = 1024 * 1024


@dataclass(frozen=True)
class MediaLimit:
    """What a platform takes of one kind of media (`image`, `video`): content types, bytes
    at most, and for a video its length in seconds at least and at most (each None: no
    documented bound). The dry run reads a video's length from its container."""

    types: frozenset[str]
    max_bytes: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class ChannelFacts:
    id: str
    platform: str
    name: str
    status: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """One reason a post cannot be published; `rule` is stable, `message` is for people."""

    channel_id: str | None
    rule: str
    message: str


class Problems(list[Problem]):
    """The problems a platform finds with one channel's target, each rule named under the
    platform (`instagram.caption_too_long`) and each message naming the channel."""

    def __init__(self, platform: str, channel: ChannelFacts) -> None:
        super().__init__()
        self.platform, self.channel = platform, channel

    def add(self, rule: str, message: str) -> None:
        channel_id = self.channel.id
        self.append(
            Problem(channel_id, f"{self.platform}.{rule}", f"channel {channel_id}: {message}")
        )


@dataclass(frozen=True)
class PublishRequest:
    """One attempt to publish one target. `idempotency_key` is stable across attempts, so
    the platform's copy of the post can be found again if the outcome of an attempt is lost."""

    post_id: str
    channel: ChannelFacts
    content: PostContent
    target: TargetContent
    idempotency_key: str
    attempt: int


@dataclass(frozen=True)
class Published:
    """What the platform says it published."""

    external_post_id: str
    external_url: str | None
    published_at: datetime
    request_id: str | None = None
    #: Handed to the account's owner to finish in the platform's app (TikTok's inbox), not
    #: posted: `external_post_id` is then the platform's handle of the upload.
    sent_to_inbox: bool = False


class PublishFailure(Exception):
    """A platform call that did not publish, classified by the connector.

    `outcome_unknown` means the request may have been applied (a timeout after sending):
    the engine must reconcile before it tries again.
    """

    def __init__(
        self,
        kind: ErrorKind,
        code: str,
        message: str,
        *,
        retry_at: datetime | None = None,
        request_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.retry_at = retry_at
        self.request_id = request_id
        self.outcome_unknown = outcome_unknown


class LookupUnavailable(Exception):
    """The platform cannot say whether a post with a given key exists."""


@dataclass(frozen=True)
class Endpoints:
    """Where each platform's API is. Every base URL is configurable, so that any server that
    speaks the documented protocol (a local emulator, a rehearsal proxy) can stand in."""

    instagram: str = "https://graph.instagram.com"
    facebook: str = "https://graph.facebook.com"
    threads: str = "https://graph.threads.net"
    tiktok: str = "https://open.tiktokapis.com"
    graph_version: str = "v25.0"
    threads_version: str = "v1.0"
    #: Seconds one HTTP request to a platform may take.
    http_timeout: float = 30.0
    #: Seconds between polls of a platform's processing (a container, an upload), doubling
    #: up to 30 s, and how long to wait for it in all before trying again later.
    poll_every: float = 2.0
    poll_for: float = 300.0
    #: Bytes per part of a TikTok FILE_UPLOAD (5 to 64 MiB; a video under 5 MiB goes whole).
    tiktok_chunk_bytes: int = 16 * 1024 * 1024


class PlatformContext:
    """What a connector may use: the database (the sandbox keeps its network there, and
    connectors their tokens and handles), where the platforms are, the key that opens
    stored tokens, and one HTTP client shared by the calls of a process."""

    def __init__(
        self,
        db: Database,
        *,
        endpoints: Endpoints | None = None,
        box: SecretBox | None = None,
        fetch: FetchPolicy | None = None,
    ) -> None:
        self.db = db
        self.endpoints = endpoints or Endpoints()
        self.box = box
        #: How a connector fetches a URL a user supplied (a video to upload): never with
        #: `http`, which is for the platform's own API.
        self.fetch = fetch or FetchPolicy()
        self._http: httpx.AsyncClient | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        """One lock per `key` in this process (say, a channel whose token is being renewed)."""
        return self._locks.setdefault(key, asyncio.Lock())

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.endpoints.http_timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class Platform(Protocol):
    """A connector: pure validation, then the platform calls the engine makes."""

    name: str
    #: Whether a post needs media here (Threads publishes text alone).
    needs_media: bool

    @property
    def media_limits(self) -> Mapping[str, MediaLimit]:
        """What the platform's servers accept, by kind (`image`, `video`), for the media
        checks of a dry run (the files themselves are looked at, not their names). A key
        `<type>:<kind>` (`reel:video`, `story:video`) is the limit for posts of that type,
        in place of the general one."""
        ...

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        """Every way `target` breaks this platform's rules (empty when it can publish)."""
        ...

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        """Publish one target; raises `PublishFailure`, classified."""
        ...

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        """Find what an earlier attempt of `request` (same idempotency key, same persisted
        handle) published, or None if it did not; `LookupUnavailable` if the platform
        cannot tell."""
        ...

    async def post_comment(
        self, ctx: PlatformContext, channel: ChannelFacts, external_post_id: str, text: str
    ) -> str:
        """Post the first comment under a published post; returns the comment's id."""
        ...
