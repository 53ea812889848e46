"""Connecting an account by OAuth (the authorization-code flow), with the workspace's own
app (`/platform-apps`).

1. `start`: a random `state` is kept (hashed) with the person's sign-in and workspace, and
   the browser is sent to the platform's consent page with it.
2. `finish`: the platform sends the browser back with a `code` and the `state`. The state
   must be this sign-in's, unused and under ten minutes old; a connection it completes
   spends it. The code is
   exchanged for a token, upgraded to the long-lived token, the account is read, and its
   channel is created, or reconnected if the workspace already has one for that account
   (same channel id, new token, ACTIVE again; a stored refresh token is never wiped).

Instagram (Instagram Login) is supported; the platforms' URLs are settings, so a local
emulator can stand in.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.principal import AuthMethod, Principal
from tidings.channels.models import Channel, ChannelStatus, OAuthState, PlatformApp
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.errors import BadRequest, Forbidden
from tidings.ids import new_id
from tidings.platforms.store import Credentials, next_refresh
from tidings.publishing.service import enqueue_refresh
from tidings.scheduled_posts.lifecycle import Actor

STATE_LIFETIME = timedelta(minutes=10)
#: What Tidings asks an Instagram account for: publishing, comments (first comments).
INSTAGRAM_SCOPES = (
    "instagram_business_basic",
    "instagram_business_content_publish",
    "instagram_business_manage_comments",
)
CONNECTABLE = frozenset({"instagram"})


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_uri(settings: Settings, platform: str) -> str:
    return f"{settings.public_url.rstrip('/')}/channels/connect/{platform}/callback"


def _authorize(principal: Principal, platform: str) -> None:
    if principal.method is not AuthMethod.SESSION:
        raise Forbidden("connecting an account is done by a signed-in person, in a browser")
    if principal.actor not in (Actor.OWNER, Actor.ADMIN):
        raise Forbidden(f"role {principal.actor.value} cannot connect accounts; owner or admin can")
    if platform not in CONNECTABLE:
        raise BadRequest(
            f"connecting a {platform} account is not supported; supported: "
            f"{', '.join(sorted(CONNECTABLE))} (or add a token with tidings channels add)"
        )


async def _app(
    session: AsyncSession, workspace_id: str, platform: str, box: SecretBox
) -> tuple[str, str]:
    app = await session.get(PlatformApp, (workspace_id, platform))
    secret = box.open(app.client_secret) if app is not None else None
    if app is None or secret is None:
        raise BadRequest(
            f"set the workspace's {platform} app first (PUT /platform-apps/{platform})"
        )
    return app.client_id, secret


async def start(
    session: AsyncSession,
    principal: Principal,
    session_token_hash: str,
    platform: str,
    *,
    settings: Settings,
    box: SecretBox,
    now: datetime,
) -> str:
    """Where to send the browser: the platform's consent page, with a fresh `state`."""
    _authorize(principal, platform)
    client_id, _ = await _app(session, principal.workspace_id, platform, box)
    state = secrets.token_urlsafe(32)
    session.add(
        OAuthState(
            state_hash=_hash(state),
            workspace_id=principal.workspace_id,
            session_hash=session_token_hash,
            platform=platform,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )
    )
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri(settings, platform),
        "scope": ",".join(INSTAGRAM_SCOPES),
        "response_type": "code",
        "state": state,
    }
    return f"{settings.instagram_oauth_url}?{urlencode(query)}"


@dataclass(frozen=True)
class Connected:
    channel: Channel
    reconnected: bool


async def finish(
    session: AsyncSession,
    principal: Principal,
    session_token_hash: str,
    platform: str,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
    settings: Settings,
    box: SecretBox,
    http: httpx.AsyncClient,
    now: datetime,
) -> Connected:
    """Check the state, exchange the code, and create or reconnect the account's channel."""
    _authorize(principal, platform)
    if not state:
        raise BadRequest("the platform sent no state: start connecting again")
    pending = await session.get(OAuthState, _hash(state))
    if (
        pending is None
        or pending.session_hash != session_token_hash
        or pending.workspace_id != principal.workspace_id
        or pending.platform != platform
    ):
        raise BadRequest("this connection was not started from this sign-in: start again")
    # Spent by the connection it completes (a refused one is rolled back with it, and its
    # state stays bound to this sign-in until it expires).
    await session.delete(pending)
    await session.flush()
    if pending.expires_at <= now:
        raise BadRequest("this connection took longer than ten minutes: start again")
    if error:
        raise BadRequest(f"the platform did not grant access ({error})")
    if not code:
        raise BadRequest("the platform sent no code: start connecting again")
    client_id, client_secret = await _app(session, principal.workspace_id, platform, box)
    creds, username = await _instagram_tokens(
        http, settings, client_id, client_secret, code, redirect_uri(settings, platform), now
    )
    existing = (
        await session.execute(
            select(Channel).where(
                Channel.workspace_id == principal.workspace_id,
                Channel.platform == platform,
            )
        )
    ).scalars()
    channel, old = _same_account(existing, creds.account_id, box)
    reconnected = channel is not None
    if channel is not None:
        if old is not None and old.refresh_token and not creds.refresh_token:
            creds = replace(creds, refresh_token=old.refresh_token)  # never wiped
        channel.credentials = creds.seal(box)
        channel.status = ChannelStatus.ACTIVE
        channel.updated_at = now
    else:
        channel = Channel(
            id=new_id("ch"),
            workspace_id=principal.workspace_id,
            platform=platform,
            name=f"@{username}" if username else f"Instagram {creds.account_id}",
            status=ChannelStatus.ACTIVE,
            options={},
            credentials=creds.seal(box),
            created_at=now,
            updated_at=now,
        )
        session.add(channel)
    await session.flush()
    enqueue_refresh(
        session,
        workspace_id=principal.workspace_id,
        channel_id=channel.id,
        run_at=next_refresh(creds, now),
    )
    return Connected(channel, reconnected)


def _same_account(
    channels: Iterable[Channel], account_id: str, box: SecretBox
) -> tuple[Channel | None, Credentials | None]:
    """The channel already holding `account_id`, with its current credentials."""
    for channel in channels:
        if channel.credentials is None:
            continue
        held = Credentials.open(box, channel.credentials)
        if held is not None and held.account_id == account_id:
            return channel, held
    return None, None


async def _instagram_tokens(
    http: httpx.AsyncClient,
    settings: Settings,
    client_id: str,
    client_secret: str,
    code: str,
    redirect: str,
    now: datetime,
) -> tuple[Credentials, str | None]:
    """Code -> short-lived token -> long-lived (60-day) token -> the account."""
    short = await _json(
        http.post(
            settings.instagram_token_url,
            data={
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "authorization_code",
                "redirect_uri": redirect,
                "code": code,
            },
        ),
        "exchanging the code",
    )
    if isinstance(short.get("data"), list) and short["data"]:
        short = short["data"][0]  # the newer shape wraps it in a list
    host = settings.instagram_api_url.rstrip("/")
    long = await _json(
        http.get(
            f"{host}/access_token",
            params={
                "grant_type": "ig_exchange_token",
                "client_secret": client_secret,
                "access_token": str(short.get("access_token", "")),
            },
        ),
        "getting the long-lived token",
    )
    token = str(long.get("access_token", ""))
    me = await _json(
        http.get(
            f"{host}/{settings.graph_api_version}/me",
            params={"fields": "user_id,username"},
            headers={"Authorization": f"Bearer {token}"},
        ),
        "reading the account",
    )
    account = str(me.get("user_id") or me.get("id") or short.get("user_id") or "")
    if not token or not account:
        raise BadRequest("Instagram answered without a token or an account")
    expires_in = long.get("expires_in")
    expires_at = now + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None
    creds = Credentials(account_id=account, access_token=token, expires_at=expires_at)
    return creds, me.get("username")


async def _json(request: Any, what: str) -> dict[str, Any]:
    try:
        response = await request
    except httpx.HTTPError as exc:
        raise BadRequest(f"the platform could not be reached while {what}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error or not isinstance(body, dict):
        detail = body.get("error_message") or body.get("error") if isinstance(body, dict) else None
        raise BadRequest(f"the platform refused while {what} ({response.status_code}: {detail})")
    return body
