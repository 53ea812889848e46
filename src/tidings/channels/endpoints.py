"""HTTP routes of /channels."""

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import RedirectResponse

from tidings.auth.deps import CurrentPrincipal, PrincipalApart
from tidings.channels import connect, service
from tidings.channels.models import Channel, ChannelStatus, PlatformApp
from tidings.channels.schemas import (
    AccountChoice,
    AccountChoiceMade,
    ChannelCheck,
    ChannelCreate,
    ChannelList,
    ChannelOut,
    ChannelUpdate,
    OfferedAccount,
    PlatformAppList,
    PlatformAppOut,
    PlatformAppSet,
)
from tidings.db.session import WRITES, SessionDep, StateDep
from tidings.errors import TidingsError
from tidings.paging import MAX_PAGE, PageCursor, PageLimit
from tidings.publishing.worker import platform_context
from tidings.scheduled_posts.schemas import ValidationProblem
from tidings.timefmt import utcnow
from tidings.web import channels as web_channels

router = APIRouter(prefix="/channels", tags=["channels"])


def _out(channel: Channel) -> ChannelOut:
    return ChannelOut(
        id=channel.id,
        platform=channel.platform,
        name=channel.name,
        status=channel.status.value,
        options=channel.options or {},
        createdAt=channel.created_at,
        updatedAt=channel.updated_at,
    )


@router.get("", response_model=ChannelList)
async def list_channels(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = MAX_PAGE,
    cursor: PageCursor = None,
) -> ChannelList:
    """List the workspace's channels, oldest first; page with `nextCursor`."""
    channels, next_cursor = await service.list_channels(
        session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return ChannelList(data=[_out(c) for c in channels], nextCursor=next_cursor)


@router.post("", response_model=ChannelOut, status_code=status.HTTP_201_CREATED)
async def add_channel(
    body: ChannelCreate, principal: CurrentPrincipal, session: SessionDep, state: StateDep
) -> ChannelOut:
    """Add a channel (sandbox channels take fault-injection options)."""
    service.authorize_manage(principal)
    channel = await service.add_channel(
        session,
        workspace_id=principal.workspace_id,
        platform=body.platform,
        name=body.name,
        options=body.options,
        now=utcnow(),
        max_channels=state.settings.max_channels_per_workspace,
    )
    return _out(channel)


@router.get("/connect/{platform}", status_code=status.HTTP_302_FOUND, openapi_extra=WRITES)
async def connect_account(
    platform: str,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
) -> RedirectResponse:
    """Start connecting an account (owner or admin, signed in): a redirect to the platform's
    consent page, with a `state` bound to this sign-in."""
    url = await connect.start(
        session,
        principal,
        _sign_in_of(request),
        platform,
        settings=state.settings,
        box=state.box,
        now=utcnow(),
    )
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND)


def _wants_page(request: Request) -> bool:
    """A browser coming back from the consent page (it asks for HTML) gets the web app's
    pages; a client that asks for JSON gets the API's answer."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and getattr(request.state, "user_session", None) is not None


@router.get("/connect/{platform}/callback", response_model=ChannelOut | AccountChoice)
async def connect_account_callback(
    platform: str,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    code: str | None = None,
    oauth_state: Annotated[str | None, Query(alias="state")] = None,
    error: str | None = None,
) -> Any:
    """Where the platform sends the browser back: the account's channel, created (or
    reconnected, keeping its id); or, when the consent covers several accounts (Facebook
    Pages and their Instagram accounts), the accounts to choose from."""
    page = _wants_page(request)
    try:
        outcome = await _finish_connection(
            request, principal, session, state, platform, code, oauth_state, error
        )
    except TidingsError as refused:
        if not page:
            raise
        return web_channels.connection_refused(platform, refused.message)
    if page:
        return await web_channels.connection_page(request, principal, session, outcome)
    if isinstance(outcome, connect.Connected):
        return _out(outcome.channel)
    return AccountChoice(
        connectionId=outcome.connection_id,
        platform=outcome.platform,
        expiresAt=outcome.expires_at,
        accounts=[
            OfferedAccount(
                platform=a.platform, accountId=a.account_id, name=a.name, channelId=a.channel_id
            )
            for a in outcome.accounts
        ],
    )


async def _finish_connection(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    platform: str,
    code: str | None,
    oauth_state: str | None,
    error: str | None,
) -> connect.Connected | connect.Choice:
    sign_in = _sign_in_of(request)
    consent = await connect.check_callback(
        session,
        principal,
        sign_in,
        platform,
        code=code,
        state=oauth_state,
        error=error,
        box=state.box,
        now=utcnow(),
    )
    async with httpx.AsyncClient(timeout=state.settings.platform_http_timeout_seconds) as http:
        accounts = await connect.exchange(consent, settings=state.settings, http=http, now=utcnow())
    # The request's transaction only read (it did not hold SQLite's write lock while the
    # platform answered); what the exchange brought is written in a short one of its own.
    async with state.db.transaction() as writing:
        return await connect.complete(
            writing,
            principal,
            sign_in,
            consent,
            accounts,
            box=state.box,
            now=utcnow(),
            max_channels=state.settings.max_channels_per_workspace,
        )


@router.post("/connect/{platform}/choose", response_model=ChannelList)
async def choose_accounts(
    platform: str,
    body: AccountChoiceMade,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
) -> ChannelList:
    """Choose which of the accounts a consent offered become channels (the same sign-in,
    within ten minutes, once): their channels, created or reconnected."""
    connected = await connect.choose(
        session,
        principal,
        _sign_in_of(request),
        platform,
        connection_id=body.connectionId,
        chosen=[(a.platform, a.accountId) for a in body.accounts],
        box=state.box,
        now=utcnow(),
        max_channels=state.settings.max_channels_per_workspace,
    )
    return ChannelList(data=[_out(c.channel) for c in connected])


def _sign_in_of(request: Request) -> str:
    """The hash of this request's sign-in (empty for keys: they cannot connect accounts)."""
    record = getattr(request.state, "user_session", None)
    return str(record.token_hash) if record is not None else ""


@router.get("/{channel_id}", response_model=ChannelOut)
async def get_channel(
    channel_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ChannelOut:
    """Read one channel."""
    return _out(await service.get_channel(session, principal.workspace_id, channel_id))


@router.patch("/{channel_id}", response_model=ChannelOut)
async def update_channel(
    channel_id: str, body: ChannelUpdate, principal: CurrentPrincipal, session: SessionDep
) -> ChannelOut:
    """Rename a channel, replace its options, or disable and re-enable it."""
    service.authorize_manage(principal)
    channel = await service.update_channel(
        session,
        principal.workspace_id,
        channel_id,
        name=body.name,
        options=body.options,
        status=ChannelStatus(body.status) if body.status else None,
        now=utcnow(),
    )
    return _out(channel)


@router.post("/{channel_id}/check", response_model=ChannelCheck)
async def check_channel(
    channel_id: str, principal: PrincipalApart, state: StateDep
) -> ChannelCheck:
    """Ask the platform now whether the channel can publish: its token works, it has the
    permissions, and (Instagram, Threads) its publishing quota has room. A token the
    platform refuses marks the channel NEEDS_RECONNECT."""
    service.authorize_manage(principal)
    context = platform_context(state.settings, state.db)
    try:
        channel, problems = await service.check_channel(
            state.db, principal.workspace_id, channel_id, context, utcnow()
        )
    finally:
        await context.aclose()
    return ChannelCheck(
        ok=not problems,
        status=channel.status.value,
        problems=[
            ValidationProblem(channelId=p.channel_id, rule=p.rule, message=p.message)
            for p in problems
        ],
    )


apps_router = APIRouter(prefix="/platform-apps", tags=["channels"])


def _app_out(app: PlatformApp) -> PlatformAppOut:
    return PlatformAppOut(
        platform=app.platform,
        clientId=app.client_id,
        createdAt=app.created_at,
        updatedAt=app.updated_at,
    )


@apps_router.get("", response_model=PlatformAppList)
async def list_platform_apps(principal: CurrentPrincipal, session: SessionDep) -> PlatformAppList:
    """The workspace's own apps (OAuth clients), by platform, without their secrets."""
    service.authorize_manage(principal)
    return PlatformAppList(
        data=[_app_out(a) for a in await service.list_apps(session, principal.workspace_id)]
    )


@apps_router.put("/{platform}", response_model=PlatformAppOut)
async def set_platform_app(
    platform: str,
    body: PlatformAppSet,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
) -> PlatformAppOut:
    """Set the workspace's app on a platform (its client id and secret), replacing any
    (signed-in owners and admins; keys are refused)."""
    service.authorize_manage_apps(principal)
    app = await service.set_app(
        session,
        principal.workspace_id,
        platform,
        client_id=body.clientId,
        client_secret=body.clientSecret,
        box=state.box,
        now=utcnow(),
    )
    return _app_out(app)


@apps_router.delete("/{platform}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_platform_app(
    platform: str, principal: CurrentPrincipal, session: SessionDep
) -> None:
    """Remove the workspace's app on a platform."""
    service.authorize_manage_apps(principal)
    await service.delete_app(session, principal.workspace_id, platform)
