"""Request and response bodies of /scheduled-posts (camelCase, as on the wire)."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
)

from tidings.platforms.base import MediaType, PostType
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.schemas import RequestModel, bounded_json
from tidings.timefmt import to_utc
from tidings.workspaces.service import check_timezone

MAX_TEXT = 100_000
MAX_MEDIA_ITEMS = 35
MAX_CHANNELS = 50
# Platform options are a few flags and names; these leave room for any platform's.
MAX_OPTIONS_BYTES = 16 * 1024
MAX_OPTIONS_DEPTH = 4


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


_ISO_DATE_PREFIX = re.compile(r"^\s*\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    # Instants come as ISO-8601 text; numbers (even as strings) would be read as Unix seconds.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE_PREFIX.match(value):
        raise ValueError("must be an ISO-8601 string such as 2026-11-22T09:00:00Z")
    return value


MediaUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(to_utc)]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_timezone)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
ChannelId = Annotated[str, StringConstraints(min_length=1, max_length=40)]
PlatformOptions = Annotated[dict[str, Any], bounded_json(MAX_OPTIONS_BYTES, MAX_OPTIONS_DEPTH)]


class MediaObject(RequestModel):
    url: MediaUrl
    altText: Annotated[str, StringConstraints(max_length=1000)] | None = None


Media = MediaUrl | Annotated[list[MediaUrl | MediaObject], Field(max_length=MAX_MEDIA_ITEMS)]


class ChannelEntry(RequestModel):
    """What to publish on one channel; in PATCH, omitted fields keep their value."""

    caption: Text | None = None
    firstComment: Text | None = None
    options: PlatformOptions | None = None


class ScheduledPostCreate(RequestModel):
    status: Literal["DRAFT", "WAITING_FOR_APPROVAL"] = "DRAFT"
    type: PostType = PostType.POST
    media: Media | None = None
    mediaType: MediaType | None = None
    scheduledFor: Instant | None = None
    timezone: Timezone | None = None
    channels: Annotated[dict[ChannelId, ChannelEntry], Field(max_length=MAX_CHANNELS)] = Field(
        default_factory=dict
    )
    notes: Text | None = None


class ScheduledPostUpdate(RequestModel):
    """A partial update: only the fields sent change; a channel set to null is removed."""

    status: Literal["DRAFT"] | None = Field(
        default=None, description="Only DRAFT: moves a REJECTED or WAITING post back to draft."
    )
    type: PostType | None = None
    media: Media | None = None
    mediaType: MediaType | None = None
    scheduledFor: Instant | None = None
    timezone: Timezone | None = None
    channels: (
        Annotated[dict[ChannelId, ChannelEntry | None], Field(max_length=MAX_CHANNELS)] | None
    ) = None
    notes: Text | None = None


NonBlank = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)
]


class RejectRequest(RequestModel):
    notes: NonBlank = Field(description="Why the post was rejected; required and not blank.")


class ApproveRequest(RequestModel):
    scheduledFor: Instant | None = Field(
        default=None, description="A new future instant; required if the current one has passed."
    )


class ResolveRequest(RequestModel):
    """How a person settles a target whose outcome the engine could not determine."""

    outcome: Literal["PUBLISHED", "RETRY"] = Field(
        description="PUBLISHED: it is live (give its id if you know it); RETRY: it is not, "
        "publish it again."
    )
    externalPostId: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class MediumData(BaseModel):
    caption: str | None
    firstComment: str | None
    options: dict[str, Any]
    mediumType: str
    mediumName: str
    failedToPublish: bool
    status: str | None
    externalPostId: str | None
    externalUrl: str | None
    publishedAt: datetime | None
    attemptCount: int
    errorCode: str | None
    errorMessage: str | None
    #: The first comment's result once the post is live: PENDING, PUBLISHED or FAILED.
    firstCommentStatus: str | None = None
    firstCommentId: str | None = None
    firstCommentError: str | None = None


class ScheduledPostOut(BaseModel):
    id: str
    orgId: str
    type: PostType
    media: Any
    mediaType: MediaType | None
    scheduledFor: datetime | None
    timezone: str | None
    taskId: str | None
    status: PostStatus
    notes: str | None
    mediumsData: dict[str, MediumData]
    createdBy: str
    approvedBy: str | None
    approvedAt: datetime | None
    rejectedBy: str | None
    rejectedAt: datetime | None
    createdAt: datetime
    updatedAt: datetime
    revision: int


class ScheduledPostPage(BaseModel):
    data: list[ScheduledPostOut]
    nextCursor: str | None


class PostEventOut(BaseModel):
    id: str
    action: str
    actorType: str
    actorId: str
    fromStatus: PostStatus | None
    toStatus: PostStatus
    notes: str | None
    revision: int
    createdAt: datetime


class PostEventList(BaseModel):
    data: list[PostEventOut]
    nextCursor: str | None


class PublishAttemptOut(BaseModel):
    id: str
    channelId: str
    operation: str
    number: int
    worker: str
    startedAt: datetime
    endedAt: datetime | None
    outcome: str
    errorKind: str | None
    errorCode: str | None
    errorMessage: str | None
    requestId: str | None


class PublishAttemptList(BaseModel):
    data: list[PublishAttemptOut]
    nextCursor: str | None


class ValidationProblem(BaseModel):
    channelId: str | None
    rule: str
    message: str


class ValidationOut(BaseModel):
    """A dry run: `valid` when nothing stands in the way of publishing."""

    valid: bool
    problems: list[ValidationProblem]
