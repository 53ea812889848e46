"""Channels: the workspace's accounts, checking and (re)connecting them, adding a sandbox
channel, and a sandbox channel's feed (what the fake network shows, live)."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.principal import Principal
from tidings.channels import connect, service
from tidings.channels.models import Channel, ChannelStatus
from tidings.db.session import SessionDep, StateDep
from tidings.errors import Conflict, TidingsError
from tidings.paging import MAX_PAGE
from tidings.publishing.worker import platform_context
from tidings.sandbox import service as sandbox_service
from tidings.sandbox.models import SandboxPost
from tidings.timefmt import utcnow
from tidings.web.deps import CurrentViewer, Viewer, ViewerApart, checked_form, viewer_of
from tidings.web.render import redirect, render

router = APIRouter(include_in_schema=False)

#: How each platform is named on the page.
PLATFORM_NAMES = {
    "sandbox": "Sandbox",
    "instagram": "Instagram",
    "facebook": "Facebook Page",
    "threads": "Threads",
    "tiktok": "TikTok",
}
STATUS_LABELS = {
    ChannelStatus.ACTIVE: "Active",
    ChannelStatus.NEEDS_RECONNECT: "Needs reconnecting",
    ChannelStatus.DISABLED: "Disabled",
}


def _context() -> dict[str, Any]:
    return {"platform_names": PLATFORM_NAMES, "status_labels": STATUS_LABELS}


async def _apps(session: AsyncSession, viewer: Viewer) -> set[str]:
    """The platforms the workspace has an app on (accounts there can be (re)connected)."""
    if not viewer.manages:
        return set()
    return {a.platform for a in await service.list_apps(session, viewer.workspace_id)}


@router.get("/app/channels", response_class=HTMLResponse)
async def channels_page(request: Request, viewer: CurrentViewer, session: SessionDep) -> Response:
    channels = await service.all_channels(session, viewer.workspace_id)
    apps = await _apps(session, viewer)
    connectable = [
        {"platform": p, "name": PLATFORM_NAMES.get(p, p), "ready": p in apps}
        for p in sorted(connect.CONNECTABLE)
    ]
    return render(
        request,
        "channels.html",
        viewer,
        channels=channels,
        connectable=connectable,
        apps=apps,
        **_context(),
    )


@router.post("/app/channels")
async def add_sandbox_channel(
    request: Request, viewer: CurrentViewer, session: SessionDep, state: StateDep
) -> Response:
    """A new sandbox channel (owners and admins): the fake network, for trying Tidings."""
    form = await checked_form(request, viewer)
    service.authorize_manage(viewer.principal)
    name = str(form.get("name") or "").strip()
    if not name:
        return redirect("/app/channels", "Name the channel.", kind="error")
    if len(name) > 200:
        return redirect("/app/channels", "A channel name has 200 characters at most.", kind="error")
    try:
        channel = await service.add_channel(
            session,
            workspace_id=viewer.workspace_id,
            platform="sandbox",
            name=name,
            options={},
            now=utcnow(),
            max_channels=state.settings.max_channels_per_workspace,
        )
    except Conflict as full:
        return redirect("/app/channels", f"No channel was added: {full.message}.", kind="error")
    return redirect(f"/app/channels/{channel.id}", f"Sandbox channel “{channel.name}” added.")


@router.post("/app/channels/{channel_id}/check")
async def check_channel(
    channel_id: str, request: Request, viewer: ViewerApart, state: StateDep
) -> Response:
    """Ask the platform now whether the channel can publish (as POST /channels/{id}/check)."""
    form = await checked_form(request, viewer)
    service.authorize_manage(viewer.principal)
    back = "/app/channels" if form.get("back") != "detail" else f"/app/channels/{channel_id}"
    context = platform_context(state.settings, state.db)
    try:
        channel, problems = await service.check_channel(
            state.db, viewer.workspace_id, channel_id, context, utcnow()
        )
    finally:
        await context.aclose()
    if not problems:
        return redirect(back, f"{channel.name}: ready to publish, the platform found no problem.")
    listed = "; ".join(p.message for p in problems)
    return redirect(back, f"{channel.name}: {listed}", kind="error")


@router.post("/app/channels/{channel_id}/status")
async def set_status(
    channel_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    """Disable a channel (nothing is published to it) or enable it again."""
    form = await checked_form(request, viewer)
    service.authorize_manage(viewer.principal)
    wanted = str(form.get("status") or "")
    if wanted not in (ChannelStatus.ACTIVE.value, ChannelStatus.DISABLED.value):
        return redirect("/app/channels", "Choose Active or Disabled.", kind="error")
    channel = await service.update_channel(
        session,
        viewer.workspace_id,
        channel_id,
        name=None,
        options=None,
        status=ChannelStatus(wanted),
        now=utcnow(),
    )
    done = "enabled" if channel.status is ChannelStatus.ACTIVE else "disabled"
    return redirect("/app/channels", f"{channel.name} {done}.")


@router.get("/app/channels/{channel_id}", response_class=HTMLResponse)
async def channel_page(
    channel_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    channel = await service.get_channel(session, viewer.workspace_id, channel_id)
    posts = await _feed(session, channel)
    return render(
        request,
        "channels_detail.html",
        viewer,
        channel=channel,
        posts=posts,
        version=feed_version(posts),
        apps=await _apps(session, viewer),
        **_context(),
    )


@router.get("/app/channels/{channel_id}/feed", response_class=HTMLResponse)
async def channel_feed(
    channel_id: str,
    request: Request,
    viewer: CurrentViewer,
    session: SessionDep,
    seen: str = "",
) -> Response:
    """The sandbox feed alone, for htmx to refresh in place; nothing (204: htmx leaves the
    page as it is) while it shows what the page has `seen` already."""
    channel = await service.get_channel(session, viewer.workspace_id, channel_id)
    posts = await _feed(session, channel)
    if seen and seen == feed_version(posts):
        return Response(status_code=204)
    return render(
        request,
        "channels_feed.html",
        viewer,
        channel=channel,
        posts=posts,
        version=feed_version(posts),
    )


def feed_version(posts: list[SandboxPost]) -> str:
    """What the feed shows, in short: its posts and their first comments."""
    comments = sum(1 for p in posts if p.first_comment_at is not None)
    return f"{len(posts)}.{posts[0].id if posts else ''}.{comments}"


async def _feed(session: AsyncSession, channel: Channel) -> list[SandboxPost]:
    """What the sandbox network shows on the channel, its newest page, newest first (real
    platforms' feeds live on the platform)."""
    if channel.platform != "sandbox":
        return []
    posts, _ = await sandbox_service.feed(
        session, channel.id, limit=MAX_PAGE, cursor=None, newest_first=True
    )
    return posts


# --- coming back from a platform's consent page (OAuth) ------------------------------------


def connection_refused(platform: str, message: str) -> Response:
    """A connection the callback refused, told on the channels page."""
    return redirect("/app/channels", f"Connecting {platform} failed: {message}", kind="error")


async def connection_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    outcome: connect.Connected | connect.Choice,
) -> Response:
    """A browser back from the consent page: the channel connected (to its page), or the
    accounts the consent covers, to choose from (rendered here: the connection id is shown
    once and never put in a URL)."""
    if isinstance(outcome, connect.Connected):
        channel = outcome.channel
        verb = "Reconnected" if outcome.reconnected else "Connected"
        return redirect(f"/app/channels/{channel.id}", f"{verb} {channel.name}.")
    record = request.state.user_session
    viewer = await viewer_of(session, principal, record.csrf_token, record.token_hash)
    return render(request, "channels_choose.html", viewer, choice=outcome)


@router.post("/app/channels/choose")
async def choose_accounts(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    """Connect the accounts ticked among those a consent offered."""
    form = await checked_form(request, viewer)
    platform = str(form.get("platform") or "")
    picked = [str(value).split(":", 1) for value in form.getlist("account")]
    chosen = [(p, a) for p, a in (pair for pair in picked if len(pair) == 2)]
    if not chosen:
        return redirect(
            "/app/channels",
            "No account was chosen, so none was connected: connect again to choose.",
            kind="error",
        )
    state = request.app.state.tidings
    try:
        connected = await connect.choose(
            session,
            viewer.principal,
            viewer.sign_in,
            platform,
            connection_id=str(form.get("connection_id") or ""),
            chosen=chosen,
            box=state.box,
            now=utcnow(),
            max_channels=state.settings.max_channels_per_workspace,
        )
    except TidingsError as refused:
        await session.rollback()
        return redirect("/app/channels", f"Nothing was connected: {refused.message}", kind="error")
    names = ", ".join(c.channel.name for c in connected)
    return redirect("/app/channels", f"Connected {names}.")
