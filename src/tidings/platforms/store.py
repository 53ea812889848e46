"""What connectors keep in the database: a channel's tokens (sealed), and a target's
platform state (the handle persisted before the irreversible call).

Both are written in transactions of their own, committed before the connector goes on: a
handle must be on disk before the call it protects, whatever happens to the worker next.
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from tidings.crypto import SecretBox
from tidings.platforms.base import PlatformContext, PublishFailure
from tidings.publishing.states import ErrorKind


@dataclass(frozen=True)
class Credentials:
    """An account's tokens. `account_id` is the platform's id of what is published to (an
    Instagram professional account, a Page, a TikTok creator)."""

    account_id: str
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def seal(self, box: SecretBox) -> bytes:
        values = asdict(self)
        for name in ("expires_at", "refresh_expires_at"):
            when = values[name]
            values[name] = when.isoformat() if when is not None else None
        return box.seal(json.dumps(values))

    @classmethod
    def open(cls, box: SecretBox, sealed: bytes) -> "Credentials | None":
        """The credentials, or None if they were sealed under another key."""
        plain = box.open(sealed)
        if plain is None:
            return None
        values = json.loads(plain)
        for name in ("expires_at", "refresh_expires_at"):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


#: A token is renewed this long before it expires, and no sooner than a day after it was
#: issued (Instagram and Threads refuse to refresh a token younger than 24 h).
REFRESH_AHEAD = timedelta(days=7)
REFRESH_NOT_BEFORE = timedelta(days=1)


def next_refresh(creds: Credentials, now: datetime) -> datetime:
    """When to renew `creds` (issued around `now`): ahead of its expiry, or in a day when
    the expiry is unknown."""
    if creds.expires_at is None:
        return now + REFRESH_NOT_BEFORE
    return max(now + REFRESH_NOT_BEFORE, creds.expires_at - REFRESH_AHEAD)


async def credentials(ctx: PlatformContext, channel_id: str) -> Credentials:
    """The channel's tokens; an AUTH failure (reconnect the channel) if it has none that
    this process can open."""
    from tidings.channels.models import Channel  # (the models import the platforms)

    async with ctx.db.transaction(write=False) as session:
        sealed = await session.scalar(select(Channel.credentials).where(Channel.id == channel_id))
    opened = Credentials.open(ctx.box, sealed) if sealed is not None and ctx.box else None
    if opened is None:
        raise PublishFailure(
            ErrorKind.AUTH,
            "CREDENTIALS_MISSING",
            "the channel has no usable access token (connect it again)",
        )
    return opened


async def save_credentials(ctx: PlatformContext, channel_id: str, creds: Credentials) -> None:
    from tidings.channels.models import Channel  # (the models import the platforms)

    assert ctx.box is not None, "storing tokens needs the secret key"
    async with ctx.db.transaction() as session:
        await session.execute(
            update(Channel).where(Channel.id == channel_id).values(credentials=creds.seal(ctx.box))
        )


async def renew_credentials(
    ctx: PlatformContext,
    channel_id: str,
    renew: Callable[[Credentials], Awaitable[Credentials | None]],
) -> Credentials:
    """Renew a channel's tokens one renewal at a time, and store the result before anyone
    can use the old ones again: what rotating refresh tokens need (TikTok's work once).

    `renew` gets the stored credentials and returns new ones, or None when they need no
    renewal (another call has just renewed them). Calls are serialised per channel within
    the process; on PostgreSQL the channel's row is also locked (`FOR UPDATE`) across the
    renewal, so workers on other machines wait and then see the new tokens. (SQLite has one
    process, and holding its write lock over a network call would stall every writer.)
    """
    from tidings.channels.models import Channel  # (the models import the platforms)

    async with ctx.lock(f"credentials:{channel_id}"):
        if ctx.db.is_sqlite:
            current = await credentials(ctx, channel_id)
            renewed = await renew(current)
            if renewed is None:
                return current
            await save_credentials(ctx, channel_id, renewed)
            return renewed
        assert ctx.box is not None, "renewing tokens needs the secret key"
        async with ctx.db.transaction() as session:
            sealed = await session.scalar(
                select(Channel.credentials).where(Channel.id == channel_id).with_for_update()
            )
            opened = Credentials.open(ctx.box, sealed) if sealed is not None else None
            if opened is None:
                return await credentials(ctx, channel_id)  # raises: nothing to renew
            renewed = await renew(opened)
            if renewed is None:
                return opened
            await session.execute(
                update(Channel)
                .where(Channel.id == channel_id)
                .values(credentials=renewed.seal(ctx.box))
            )
            return renewed


async def load_state(ctx: PlatformContext, post_id: str, channel_id: str) -> dict[str, Any]:
    """What a connector persisted for this target (empty if nothing)."""
    from tidings.scheduled_posts.models import Target  # (the models import the platforms)

    async with ctx.db.transaction(write=False) as session:
        state = await session.scalar(
            select(Target.platform_state).where(
                Target.post_id == post_id, Target.channel_id == channel_id
            )
        )
    return dict(state or {})


async def save_state(
    ctx: PlatformContext, post_id: str, channel_id: str, state: dict[str, Any] | None
) -> None:
    """Persist (commit) the target's platform state before going on; None clears it."""
    from tidings.scheduled_posts.models import Target  # (the models import the platforms)

    async with ctx.db.transaction() as session:
        await session.execute(
            update(Target)
            .where(Target.post_id == post_id, Target.channel_id == channel_id)
            .values(platform_state=state)
        )
