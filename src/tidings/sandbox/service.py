"""The sandbox network's side: every write is committed before the function returns.

Writes go through `Database.grouped`: calls that arrive together share one transaction (as a
real network's storage would batch them), but none returns before its row is committed.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.db.engine import Database
from tidings.ids import new_id
from tidings.paging import entity_page
from tidings.sandbox.models import SandboxCall, SandboxPost


async def count_call(db: Database, channel_id: str, key: str, operation: str, now: datetime) -> int:
    """Record one more call of `operation` for `key`, arrived at `now`; returns which call
    this is (1-based)."""
    dialect = postgresql if not db.is_sqlite else sqlite
    statement = dialect.insert(SandboxCall).values(
        channel_id=channel_id, key=key, operation=operation, count=1, first_at=now, last_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["channel_id", "key", "operation"],
        set_={"count": SandboxCall.count + 1, "last_at": now},
    ).returning(SandboxCall.count)

    async def write(session: AsyncSession) -> int:
        return int((await session.execute(statement)).scalar_one())

    return await db.grouped(write)


@dataclass(frozen=True)
class Accepted:
    id: str
    published_at: datetime


async def accept_post(
    db: Database,
    *,
    channel_id: str,
    idempotency_key: str,
    post_type: str,
    caption: str,
    media: list[dict[str, Any]],
    media_type: str | None,
    now: datetime,
    received_at: datetime | None = None,
) -> Accepted:
    """Publish: the record is committed before the caller hears anything."""
    accepted = Accepted(new_id("sbx"), now)
    row = {
        "id": accepted.id,
        "channel_id": channel_id,
        "idempotency_key": idempotency_key,
        "type": post_type,
        "caption": caption,
        "media": media,
        "media_type": media_type,
        "published_at": now,
        "received_at": received_at,
        "first_comment": None,
        "first_comment_at": None,
    }
    await db.grouped_insert(cast(Table, SandboxPost.__table__), row)
    return accepted


async def find_by_key(db: Database, channel_id: str, key: str) -> SandboxPost | None:
    async with db.transaction(write=False) as session:
        result = await session.execute(
            select(SandboxPost)
            .where(SandboxPost.channel_id == channel_id, SandboxPost.idempotency_key == key)
            .order_by(SandboxPost.id)
            .limit(1)
        )
        return result.scalar_one_or_none()


async def add_comment(
    db: Database, channel_id: str, post_id: str, text: str, now: datetime
) -> SandboxPost | None:
    """Attach the first comment to a published post; None if there is no such post."""
    async with db.transaction() as session:
        post = await session.get(SandboxPost, post_id)
        if post is None or post.channel_id != channel_id:
            return None
        post.first_comment = text
        post.first_comment_at = now
        return post


async def feed(
    session: AsyncSession,
    channel_id: str,
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
) -> tuple[list[SandboxPost], str | None]:
    """A page of what the channel's feed shows, oldest first unless `newest_first`."""
    return await entity_page(
        session,
        select(SandboxPost).where(SandboxPost.channel_id == channel_id),
        SandboxPost.id,
        limit=limit,
        cursor=cursor,
        descending=newest_first,
    )
