"""Read the sandbox network's own record of what it published."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from tidings.auth.deps import CurrentPrincipal
from tidings.channels.service import get_channel
from tidings.db.session import SessionDep
from tidings.errors import NotFound
from tidings.paging import MAX_PAGE, PageCursor, PageLimit
from tidings.sandbox import service

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


class SandboxPostOut(BaseModel):
    id: str
    channelId: str
    type: str
    caption: str
    media: list[dict[str, Any]]
    mediaType: str | None
    idempotencyKey: str | None
    publishedAt: datetime
    receivedAt: datetime | None = None
    firstComment: str | None
    firstCommentAt: datetime | None


class SandboxFeed(BaseModel):
    data: list[SandboxPostOut]
    nextCursor: str | None


@router.get("/channels/{channel_id}/posts", response_model=SandboxFeed)
async def sandbox_feed(
    channel_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = MAX_PAGE,
    cursor: PageCursor = None,
) -> SandboxFeed:
    """What the sandbox network shows on a channel's feed, oldest first, by its own record;
    page with `nextCursor`."""
    channel = await get_channel(session, principal.workspace_id, channel_id)
    if channel.platform != "sandbox":
        raise NotFound(f"channel {channel_id} is not a sandbox channel")
    posts, next_cursor = await service.feed(session, channel.id, limit=limit, cursor=cursor)
    return SandboxFeed(
        nextCursor=next_cursor,
        data=[
            SandboxPostOut(
                id=p.id,
                channelId=p.channel_id,
                type=p.type,
                caption=p.caption,
                media=p.media,
                mediaType=p.media_type,
                idempotencyKey=p.idempotency_key,
                publishedAt=p.published_at,
                receivedAt=p.received_at,
                firstComment=p.first_comment,
                firstCommentAt=p.first_comment_at,
            )
            for p in posts
        ],
    )
