"""Posts with their targets and channels as plain rows, for work on thousands at once.

When a burst of posts falls due, the publishing engine reads every one of them, changes a
few columns of each target and writes them back. As ORM objects, that cost more than the
work itself (identity map, attribute events, change tracking, flush). These rows are read
with two Core queries, changed in place (marking what changed), and written back with one
executemany per table by `write_rows`.

Only for transactions that hold the rows they change (PostgreSQL `FOR UPDATE`, or SQLite's
single writer): like `tidings.db.bulk`, the optimistic revision check is not repeated.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Channel, ChannelStatus
from tidings.platforms.base import MediaType, PostType
from tidings.publishing.states import TargetStatus
from tidings.scheduled_posts.lifecycle import PostStatus
from tidings.scheduled_posts.models import ScheduledPost, Target

_POSTS = cast(Table, ScheduledPost.__table__)
_TARGETS = cast(Table, Target.__table__)
_CHANNELS = cast(Table, Channel.__table__)


@dataclass(slots=True, eq=False)
class ChannelRow:
    id: str
    workspace_id: str
    platform: str
    name: str
    status: ChannelStatus
    options: dict[str, Any]


@dataclass(slots=True, eq=False)
class TargetRow:
    channel: ChannelRow
    post_id: str
    channel_id: str
    caption: str | None
    first_comment: str | None
    options: dict[str, Any]
    status: TargetStatus | None
    attempt_count: int
    error_code: str | None
    error_message: str | None
    idempotency_key: str | None
    #: Set by whoever changes the row, so that `write_rows` writes it.
    changed: bool = False


@dataclass(slots=True, eq=False)
class PostRow:
    id: str
    workspace_id: str
    type: PostType
    media: Any
    media_type: MediaType | None
    scheduled_for: datetime | None
    task_id: str | None
    status: PostStatus
    deleted_at: datetime | None
    revision: int
    updated_at: datetime
    targets: list[TargetRow] = field(default_factory=list)
    changed: bool = False

    def touch(self, now: datetime) -> None:
        """Mark one change, as `ScheduledPost.touch` does."""
        self.revision += 1
        self.updated_at = now
        self.changed = True


def _names(row_type: type, *, leave: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(row_type) if f.name not in leave)


_POST_COLUMNS = _names(PostRow, leave=("targets", "changed"))
_TARGET_COLUMNS = _names(TargetRow, leave=("channel", "changed"))
_CHANNEL_COLUMNS = _names(ChannelRow, leave=())
# What the engine changes: a target's progress, and a post's derived status.
_TARGET_WRITES = ("status", "attempt_count", "error_code", "error_message", "idempotency_key")
_POST_WRITES = ("status", "revision", "updated_at")


async def load_rows(session: AsyncSession, ids: Iterable[str], *, lock: bool) -> dict[str, PostRow]:
    """The posts `ids` (those that exist), with their targets in position order and each
    target's channel; with `lock`, the posts are locked in id order (PostgreSQL)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = (
        select(*(_POSTS.c[name] for name in _POST_COLUMNS))
        .where(_POSTS.c.id.in_(wanted))
        .order_by(_POSTS.c.id)
    )
    if lock:
        query = query.with_for_update()
    posts = {row[0]: PostRow(*row) for row in await session.execute(query)}
    if not posts:
        return posts
    width = len(_TARGET_COLUMNS)
    query = (
        select(
            *(_TARGETS.c[name] for name in _TARGET_COLUMNS),
            *(_CHANNELS.c[name] for name in _CHANNEL_COLUMNS),
        )
        .join(_CHANNELS, _CHANNELS.c.id == _TARGETS.c.channel_id)
        .where(_TARGETS.c.post_id.in_(list(posts)))
        .order_by(_TARGETS.c.post_id, _TARGETS.c.position)
    )
    channels: dict[str, ChannelRow] = {}
    for row in await session.execute(query):
        channel = channels.get(row[1])
        if channel is None:
            channel = channels[row[1]] = ChannelRow(*row[width:])
            channel.options = dict(channel.options or {})
        target = TargetRow(channel, *row[:width])
        target.options = dict(target.options or {})
        posts[target.post_id].targets.append(target)
    return posts


async def write_rows(session: AsyncSession, posts: Iterable[PostRow]) -> None:
    """Write back the changed targets and posts (one executemany per table)."""
    posts = list(posts)
    targets = [
        {"k_post_id": t.post_id, "k_channel_id": t.channel_id}
        | {f"v_{name}": getattr(t, name) for name in _TARGET_WRITES}
        for post in posts
        for t in post.targets
        if t.changed
    ]
    changed = [
        {"k_id": p.id} | {f"v_{name}": getattr(p, name) for name in _POST_WRITES}
        for p in posts
        if p.changed
    ]
    connection = await session.connection()
    if targets:
        await connection.execute(
            update(_TARGETS)
            .where(
                and_(
                    _TARGETS.c.post_id == bindparam("k_post_id"),
                    _TARGETS.c.channel_id == bindparam("k_channel_id"),
                )
            )
            .values(
                {
                    name: bindparam(f"v_{name}", type_=_TARGETS.c[name].type)
                    for name in _TARGET_WRITES
                }
            ),
            targets,
        )
    if changed:
        await connection.execute(
            update(_POSTS)
            .where(_POSTS.c.id == bindparam("k_id"))
            .values(
                {name: bindparam(f"v_{name}", type_=_POSTS.c[name].type) for name in _POST_WRITES}
            ),
            changed,
        )
    for post in posts:
        post.changed = False
        for target in post.targets:
            target.changed = False
