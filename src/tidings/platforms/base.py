"""What every platform connector offers, and the plain values its rules are checked on."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


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
    def looks_like_video(self) -> bool:
        path = self.url.split("?", 1)[0].split("#", 1)[0]
        return bool(_VIDEO_SUFFIX.search(path))


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


class Platform(Protocol):
    """A connector. This issue's part is validation; publishing comes with the engine."""

    name: str

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        """Every way `target` breaks this platform's rules (empty when it can publish)."""
        ...
