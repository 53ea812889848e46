"""Connecting accounts by OAuth (the authorization-code flow), with the workspace's own app
(`/platform-apps`). What differs per platform is a `Flow` (`channels.flows`); the steps are
the same for every one:

1. `start`: a random `state` is kept (hashed) with the person's sign-in and workspace, and
   with a PKCE code verifier when the flow takes one; the browser is sent to the
   platform's consent page.
2. The platform sends the browser back with a `code` and the `state`. `check_callback`: the
   state must be this sign-in's and under ten minutes old. `exchange`: the code becomes
   the accounts the person consented to (the flow's token exchange, outside any database
   transaction: it waits on the platform). `complete`: the state is spent (once: a second
   callback with it is refused), then
   - one account: its channel is created, or reconnected if the workspace already has one
     for that account (same channel id, new token, ACTIVE again; a stored refresh token
     is never wiped);
   - several (a Facebook consent covers Pages and their Instagram accounts): they are kept,
     tokens sealed, as a `PendingConnection` for ten minutes, and offered to the person.
3. `choose`: the same sign-in picks which of the offered accounts become channels (created
   or reconnected as above); the pending connection is spent.

Token renewal is (re)planned for each connected channel whose connector renews its tokens
(Instagram Login, Threads); a reconnected channel's earlier renewals are cancelled first.
"""

import base64
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.principal import AuthMethod, Principal
from tidings.channels.flows import FLOWS, Account, Exchange
from tidings.channels.models import (
    Channel,
    ChannelStatus,
    OAuthState,
    PendingConnection,
    PlatformApp,
)
from tidings.channels.service import ensure_room_for_channel
from tidings.config import Settings
from tidings.crypto import SecretBox, token_hash
from tidings.errors import BadRequest, Forbidden
from tidings.ids import new_id
from tidings.platforms import get_platform
from tidings.platforms.store import Credentials, next_refresh
from tidings.publishing.models import Task, TaskKind, TaskStatus
from tidings.publishing.service import enqueue_refresh
from tidings.scheduled_posts.lifecycle import Actor

STATE_LIFETIME = timedelta(minutes=10)
CHOICE_LIFETIME = timedelta(minutes=10)
CONNECTABLE = frozenset(FLOWS)


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


def _challenge(verifier: str) -> str:
    """PKCE's S256 code challenge of `verifier`."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


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
    flow = FLOWS[platform]
    client_id, _ = await _app(session, principal.workspace_id, platform, box)
    # Connections never finished are forgotten once they can no longer be used.
    await session.execute(delete(OAuthState).where(OAuthState.expires_at <= now))
    await session.execute(delete(PendingConnection).where(PendingConnection.expires_at <= now))
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64) if flow.pkce else None
    session.add(
        OAuthState(
            state_hash=token_hash(state),
            workspace_id=principal.workspace_id,
            session_hash=session_token_hash,
            platform=platform,
            code_verifier=verifier,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )
    )
    query = {
        flow.client_id_param: client_id,
        "redirect_uri": redirect_uri(settings, platform),
        "scope": ",".join(flow.scopes),
        "response_type": "code",
        "state": state,
    }
    if verifier is not None:
        query |= {"code_challenge": _challenge(verifier), "code_challenge_method": "S256"}
    return f"{flow.consent_url(settings)}?{urlencode(query)}"


@dataclass(frozen=True)
class Consent:
    """A callback whose state checked out: what exchanging its code takes."""

    platform: str
    state_hash: str
    code: str = field(repr=False)
    code_verifier: str | None = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)


async def check_callback(
    session: AsyncSession,
    principal: Principal,
    session_token_hash: str,
    platform: str,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
    box: SecretBox,
    now: datetime,
) -> Consent:
    """The state must be this sign-in's, for this platform, unused and under ten minutes
    old; the person must have granted access. Reads only."""
    _authorize(principal, platform)
    if not state:
        raise BadRequest("the platform sent no state: start connecting again")
    pending = await session.get(OAuthState, token_hash(state))
    if (
        pending is None
        or pending.session_hash != session_token_hash
        or pending.workspace_id != principal.workspace_id
        or pending.platform != platform
    ):
        raise BadRequest("this connection was not started from this sign-in: start again")
    if pending.expires_at <= now:
        raise BadRequest("this connection took longer than ten minutes: start again")
    if error:
        raise BadRequest(f"the platform did not grant access ({error})")
    if not code:
        raise BadRequest("the platform sent no code: start connecting again")
    client_id, client_secret = await _app(session, principal.workspace_id, platform, box)
    return Consent(
        platform, pending.state_hash, code, pending.code_verifier, client_id, client_secret
    )


async def exchange(
    consent: Consent, *, settings: Settings, http: httpx.AsyncClient, now: datetime
) -> list[Account]:
    """The accounts the person consented to (the platform's token exchange; no database)."""
    accounts = await FLOWS[consent.platform].accounts(
        Exchange(
            http=http,
            settings=settings,
            client_id=consent.client_id,
            client_secret=consent.client_secret,
            code=consent.code,
            redirect_uri=redirect_uri(settings, consent.platform),
            code_verifier=consent.code_verifier,
            now=now,
        )
    )
    if not accounts:
        raise BadRequest(
            f"the {consent.platform} consent shared no account that can publish: connect "
            "again and choose at least one (for Facebook, a Page you can post on)"
        )
    # Once each, should a listing name an account twice (a Page across two listings).
    return list({(a.platform, a.credentials.account_id): a for a in accounts}.values())


@dataclass(frozen=True)
class Connected:
    channel: Channel
    reconnected: bool


@dataclass(frozen=True)
class Offered:
    """An account a consent gave access to; `channel_id` if the workspace has it already."""

    platform: str
    account_id: str
    name: str
    channel_id: str | None


@dataclass(frozen=True)
class Choice:
    """Several accounts to choose from, with `connection_id` (shown once) to choose with."""

    connection_id: str
    platform: str
    expires_at: datetime
    accounts: list[Offered]


async def complete(
    session: AsyncSession,
    principal: Principal,
    session_token_hash: str,
    consent: Consent,
    accounts: Sequence[Account],
    *,
    box: SecretBox,
    now: datetime,
    max_channels: int,
) -> Connected | Choice:
    """Spend the state; connect the one account, or keep several for the person to choose."""
    spent = await session.execute(
        delete(OAuthState).where(OAuthState.state_hash == consent.state_hash)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise BadRequest("this connection was completed already: start again")
    held = await _held(session, principal.workspace_id, {a.platform for a in accounts}, box)
    if len(accounts) == 1:
        return await _connect(
            session, principal.workspace_id, accounts[0], held, box, now, max_channels
        )
    token = secrets.token_urlsafe(32)
    pending = PendingConnection(
        token_hash=token_hash(token),
        workspace_id=principal.workspace_id,
        session_hash=session_token_hash,
        platform=consent.platform,
        accounts=[
            {
                "platform": a.platform,
                "accountId": a.credentials.account_id,
                "name": a.name,
                "credentials": a.credentials.seal(box).decode(),
            }
            for a in accounts
        ],
        created_at=now,
        expires_at=now + CHOICE_LIFETIME,
    )
    session.add(pending)
    await session.flush()
    offered = []
    for a in accounts:
        found = held.get((a.platform, a.credentials.account_id))
        offered.append(
            Offered(a.platform, a.credentials.account_id, a.name, found[0].id if found else None)
        )
    return Choice(token, consent.platform, pending.expires_at, offered)


async def choose(
    session: AsyncSession,
    principal: Principal,
    session_token_hash: str,
    platform: str,
    *,
    connection_id: str,
    chosen: Sequence[tuple[str, str]],
    box: SecretBox,
    now: datetime,
    max_channels: int,
) -> list[Connected]:
    """Connect the chosen `(platform, account id)` pairs among those a consent offered to
    this sign-in; the offer is spent by the choice."""
    _authorize(principal, platform)
    pending = await session.get(PendingConnection, token_hash(connection_id))
    if (
        pending is None
        or pending.session_hash != session_token_hash
        or pending.workspace_id != principal.workspace_id
        or pending.platform != platform
    ):
        raise BadRequest(
            "no such connection for this sign-in (it was completed already, or started "
            "elsewhere): connect again"
        )
    if pending.expires_at <= now:
        raise BadRequest("this choice was not made within ten minutes: connect again")
    offered = {(a["platform"], a["accountId"]): a for a in pending.accounts}
    wanted = list(dict.fromkeys(chosen))
    for key in wanted:
        if key not in offered:
            choices = ", ".join(f"{p} {i}" for p, i in offered)
            raise BadRequest(
                f"{key[0]} account {key[1]} was not offered by this connection; offered: {choices}"
            )
    spent = await session.execute(
        delete(PendingConnection).where(PendingConnection.token_hash == pending.token_hash)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise BadRequest("this choice was made already: connect again")
    held = await _held(session, principal.workspace_id, {p for p, _ in wanted}, box)
    connected = []
    for key in wanted:
        item = offered[key]
        creds = Credentials.open(box, item["credentials"].encode())
        if creds is None:
            raise BadRequest("this connection was sealed under another secret key: connect again")
        account = Account(item["platform"], item["name"], creds)
        connected.append(
            await _connect(session, principal.workspace_id, account, held, box, now, max_channels)
        )
    return connected


Held = dict[tuple[str, str], tuple[Channel, Credentials]]


async def _held(
    session: AsyncSession, workspace_id: str, platforms: Iterable[str], box: SecretBox
) -> Held:
    """The workspace's channels on `platforms`, by (platform, account id), with their
    current credentials (channels whose tokens this key cannot open are left out)."""
    channels = (
        await session.execute(
            select(Channel).where(
                Channel.workspace_id == workspace_id, Channel.platform.in_(set(platforms))
            )
        )
    ).scalars()
    held: Held = {}
    for channel in channels:
        opened = Credentials.open(box, channel.credentials) if channel.credentials else None
        if opened is not None:
            held.setdefault((channel.platform, opened.account_id), (channel, opened))
    return held


async def _connect(
    session: AsyncSession,
    workspace_id: str,
    account: Account,
    held: Held,
    box: SecretBox,
    now: datetime,
    max_channels: int,
) -> Connected:
    """Create the account's channel (within `max_channels`), or reconnect the one the
    workspace has for it."""
    creds = account.credentials
    found = held.get((account.platform, creds.account_id))
    if found is not None:
        channel, old = found
        if old.refresh_token and not creds.refresh_token:
            creds = replace(creds, refresh_token=old.refresh_token)  # never wiped
        channel.credentials = creds.seal(box)
        channel.status = ChannelStatus.ACTIVE
        channel.updated_at = now
        # Renewals planned for the old token (or for another login) are replaced below.
        await session.execute(
            update(Task)
            .where(
                Task.channel_id == channel.id,
                Task.kind == TaskKind.REFRESH_TOKEN,
                Task.status == TaskStatus.PENDING,
            )
            .values(status=TaskStatus.CANCELED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    else:
        await ensure_room_for_channel(session, workspace_id, max_channels)
        channel = Channel(
            id=new_id("ch"),
            workspace_id=workspace_id,
            platform=account.platform,
            name=account.name,
            status=ChannelStatus.ACTIVE,
            options={},
            credentials=creds.seal(box),
            created_at=now,
            updated_at=now,
        )
        session.add(channel)
    held[(account.platform, creds.account_id)] = (channel, creds)
    await session.flush()
    refreshes = getattr(get_platform(account.platform), "refreshes", None)
    if refreshes is not None and refreshes(creds):
        enqueue_refresh(
            session,
            workspace_id=workspace_id,
            channel_id=channel.id,
            run_at=next_refresh(creds, now),
        )
    return Connected(channel, found is not None)
