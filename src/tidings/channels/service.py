"""Add, list and change a workspace's channels."""

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.principal import AuthMethod, Principal
from tidings.channels.models import Channel, ChannelStatus, PlatformApp
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.errors import BadRequest, Conflict, Forbidden, NotFound
from tidings.ids import new_id
from tidings.paging import MAX_PAGE, entity_page, every_page
from tidings.platforms import PLATFORMS
from tidings.platforms.base import ChannelFacts, PlatformContext, Problem
from tidings.platforms.store import Credentials, next_refresh
from tidings.publishing.service import enqueue_refresh
from tidings.scheduled_posts.lifecycle import Actor
from tidings.scheduled_posts.rows import ChannelRow
from tidings.workspaces.models import Workspace
from tidings.workspaces.service import get_workspace

_MANAGERS = frozenset({Actor.OWNER, Actor.ADMIN, Actor.API_KEY})


def authorize_manage(principal: Principal) -> None:
    if principal.actor not in _MANAGERS:
        raise Forbidden(f"role {principal.actor.value} cannot manage channels; owner or admin can")


def authorize_manage_apps(principal: Principal) -> None:
    """The workspace's platform apps decide where every later connection's consent goes
    and which client secret it uses: signed-in owners and admins set them, never a key."""
    if principal.actor is Actor.API_KEY:
        raise Forbidden(
            "API keys cannot set or remove platform apps; an owner or admin can, signed in"
        )
    if principal.method is not AuthMethod.SESSION or principal.actor not in (
        Actor.OWNER,
        Actor.ADMIN,
    ):
        raise Forbidden(
            f"role {principal.actor.value} cannot manage platform apps; owner or admin can"
        )


async def add_channel(
    session: AsyncSession,
    *,
    workspace_id: str,
    platform: str,
    name: str,
    options: dict[str, Any],
    now: datetime,
    credentials: Credentials | None = None,
    box: SecretBox | None = None,
    max_channels: int | None = None,
) -> Channel:
    """A new channel; `credentials` (sealed with `box`) are required by every platform
    but the sandbox. Requests pass `max_channels` (the setting); None, no cap, is for
    fixtures and tools that build a workspace directly."""
    await get_workspace(session, workspace_id)
    if max_channels is not None:
        await ensure_room_for_channel(session, workspace_id, max_channels)
    if platform not in PLATFORMS:
        raise BadRequest(
            f"unknown platform {platform!r}; supported: {', '.join(sorted(PLATFORMS))}"
        )
    if not name.strip():
        raise BadRequest("channel name must not be empty")
    sealed = None
    if credentials is not None:
        if not credentials.account_id.strip() or not credentials.access_token.strip():
            raise BadRequest("an account id and an access token are required")
        if box is None:
            raise BadRequest("storing an access token needs the secret key")
        sealed = credentials.seal(box)
    elif platform != "sandbox":
        raise BadRequest(
            f"a {platform} channel needs the account's access token: connect the account, "
            "or give --account-id and --access-token"
        )
    channel = Channel(
        id=new_id("ch"),
        workspace_id=workspace_id,
        platform=platform,
        name=name.strip(),
        status=ChannelStatus.ACTIVE,
        options=dict(options),
        credentials=sealed,
        created_at=now,
        updated_at=now,
    )
    session.add(channel)
    await session.flush()
    connector = PLATFORMS[platform]
    refreshes = getattr(connector, "refreshes", None)
    if credentials is not None and refreshes is not None and refreshes(credentials):
        enqueue_refresh(
            session,
            workspace_id=workspace_id,
            channel_id=channel.id,
            run_at=next_refresh(credentials, now),
        )
    return channel


async def ensure_room_for_channel(
    session: AsyncSession, workspace_id: str, max_channels: int
) -> None:
    """Refuse one more channel once the workspace has `max_channels` (409)."""
    # Lock the workspace row first: two additions at once must not both see room for one.
    await session.execute(
        select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
    )
    count = await session.scalar(
        select(func.count()).select_from(Channel).where(Channel.workspace_id == workspace_id)
    )
    if int(count or 0) >= max_channels:
        raise Conflict(
            f"the workspace has reached its limit of {max_channels} channels "
            "(TIDINGS_MAX_CHANNELS_PER_WORKSPACE)"
        )


async def list_channels(
    session: AsyncSession, workspace_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Channel], str | None]:
    """A page of the workspace's channels, oldest first."""
    return await entity_page(
        session,
        select(Channel).where(Channel.workspace_id == workspace_id),
        Channel.id,
        limit=limit,
        cursor=cursor,
    )


async def all_channels(session: AsyncSession, workspace_id: str) -> list[Channel]:
    """Every channel of the workspace (for the web app's pickers; the cap bounds them)."""
    return await every_page(
        lambda cursor: list_channels(session, workspace_id, limit=MAX_PAGE, cursor=cursor)
    )


async def get_channel(session: AsyncSession, workspace_id: str, channel_id: str) -> Channel:
    channel = await session.get(Channel, channel_id)
    if channel is None or channel.workspace_id != workspace_id:
        raise NotFound(f"channel {channel_id} not found")
    return channel


async def update_channel(
    session: AsyncSession,
    workspace_id: str,
    channel_id: str,
    *,
    name: str | None,
    options: dict[str, Any] | None,
    status: ChannelStatus | None,
    now: datetime,
) -> Channel:
    """Rename, replace options, or change status; fields given as None are kept."""
    channel = await get_channel(session, workspace_id, channel_id)
    if name is not None:
        channel.name = name
    if options is not None:
        channel.options = dict(options)
    if status is not None:
        channel.status = status
    channel.updated_at = now
    await session.flush()
    return channel


async def channels_by_id(
    session: AsyncSession, workspace_id: str, channel_ids: Sequence[str]
) -> dict[str, Channel]:
    """The workspace's channels among `channel_ids` (ids of other workspaces are absent)."""
    if not channel_ids:
        return {}
    result = await session.execute(
        select(Channel).where(Channel.workspace_id == workspace_id, Channel.id.in_(channel_ids))
    )
    return {c.id: c for c in result.scalars()}


def facts(channel: Channel | ChannelRow) -> ChannelFacts:
    return ChannelFacts(
        id=channel.id,
        platform=channel.platform,
        name=channel.name,
        status=channel.status.value,
        options=dict(channel.options or {}),
    )


async def check_channel(
    db: Database,
    workspace_id: str,
    channel_id: str,
    context: PlatformContext,
    now: datetime,
) -> tuple[Channel, list[Problem]]:
    """The platform's live answer about a channel; a refused token (a recognised auth
    error, never a timeout or a 5xx) marks it NEEDS_RECONNECT.

    It waits on the platform, so it owns its transactions (unlike the other use cases here)
    and none is open while it waits: read the channel, close, ask, then write what changed."""
    from tidings.platforms import get_platform

    async with db.transaction(write=False) as session:
        found = facts(await get_channel(session, workspace_id, channel_id))
    ask = getattr(get_platform(found.platform), "live_problems", None)
    problems: list[Problem] = []
    # Each call has its timeout; the check as a whole has this one (a few calls at most).
    waited = 2 * context.endpoints.http_timeout
    try:
        async with asyncio.timeout(waited):
            problems = await ask(context, found) if ask is not None else []
    except TimeoutError:
        problems = [
            Problem(
                found.id,
                f"{found.platform}.unreachable",
                f"{found.platform} did not answer within {waited:g} s; try again later",
            )
        ]
    refused = any(p.rule.endswith(".token") for p in problems)
    async with db.transaction(write=refused) as session:
        channel = await get_channel(session, workspace_id, channel_id)
        if refused:
            channel.status = ChannelStatus.NEEDS_RECONNECT
            channel.updated_at = now
            await session.flush()
    return channel, problems


async def set_app(
    session: AsyncSession,
    workspace_id: str,
    platform: str,
    *,
    client_id: str,
    client_secret: str,
    box: SecretBox,
    now: datetime,
) -> PlatformApp:
    """Set (or replace) the workspace's app on a platform; the secret is sealed."""
    await get_workspace(session, workspace_id)
    if platform not in PLATFORMS or platform == "sandbox":
        real = sorted(p for p in PLATFORMS if p != "sandbox")
        raise BadRequest(f"no app for platform {platform!r}; one of: {', '.join(real)}")
    if not client_id.strip() or not client_secret.strip():
        raise BadRequest("a client id and a client secret are required")
    app = await session.get(PlatformApp, (workspace_id, platform))
    if app is None:
        app = PlatformApp(workspace_id=workspace_id, platform=platform, created_at=now)
        session.add(app)
    app.client_id = client_id.strip()
    app.client_secret = box.seal(client_secret)
    app.updated_at = now
    await session.flush()
    return app


async def list_apps(session: AsyncSession, workspace_id: str) -> Sequence[PlatformApp]:
    result = await session.execute(
        select(PlatformApp)
        .where(PlatformApp.workspace_id == workspace_id)
        .order_by(PlatformApp.platform)
    )
    return result.scalars().all()


async def delete_app(session: AsyncSession, workspace_id: str, platform: str) -> None:
    app = await session.get(PlatformApp, (workspace_id, platform))
    if app is None:
        raise NotFound(f"no {platform} app is set for this workspace")
    await session.delete(app)
