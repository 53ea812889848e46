"""Passwords, API keys (HMAC-signed and Bearer requests) and browser sessions."""

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth import throttle
from tidings.auth.models import ApiKey, UsedSignature, User, UserSession
from tidings.auth.passwords import verify_password
from tidings.auth.principal import AuthMethod, Principal
from tidings.auth.scopes import DEFAULT_SCOPES, Scope, Signing, ordered
from tidings.crypto import SecretBox, token_hash
from tidings.db.engine import Database
from tidings.errors import BadRequest, Forbidden, NotFound, Unauthorized
from tidings.ids import new_id
from tidings.scheduled_posts.lifecycle import Actor
from tidings.timefmt import parse_iso_instant
from tidings.workspaces.models import Membership, Role, Workspace

TOKEN_SEPARATOR = "."


def sign(secret: str, message: str) -> str:
    """An `x-signature`: the lowercase hex HMAC-SHA256 of `message`, keyed by the secret."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedRequest:
    """What a request-signing key signs, as the request arrived: the method, the path as
    sent (before percent-decoding), the raw query string (without `?`) and the raw body."""

    method: str
    path: str
    query: str
    body: bytes

    def canonical(self, x_date: str) -> str:
        """The string a request-signing key signs."""
        target = f"{self.path}?{self.query}" if self.query else self.path
        digest = hashlib.sha256(self.body).hexdigest()
        return f"{self.method.upper()}\n{target}\n{x_date}\n{digest}"


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str

    @property
    def token(self) -> str:
        """The Bearer token: the key id and its secret, so one key works both ways."""
        return f"{self.key.id}{TOKEN_SEPARATOR}{self.secret}"


async def create_api_key(
    session: AsyncSession,
    box: SecretBox,
    workspace_id: str,
    name: str,
    now: datetime,
    *,
    signing: Signing = Signing.REQUEST,
    scopes: Iterable[Scope] = DEFAULT_SCOPES,
) -> IssuedKey:
    if await session.get(Workspace, workspace_id) is None:
        raise NotFound(f"workspace {workspace_id} does not exist")
    chosen = ordered(scopes)
    if not chosen:
        raise BadRequest("give the key at least one scope")
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=name,
        secret_encrypted=box.seal(secret),
        created_at=now,
        signing=signing,
        scopes=[s.value for s in chosen],
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key, secret)


async def revoke_api_key(session: AsyncSession, key_id: str, now: datetime) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist")
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
    return key


async def _usable_key(session: AsyncSession, box: SecretBox, key_id: str) -> tuple[ApiKey, str]:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise Unauthorized("unknown API key")
    if key.revoked_at is not None:
        raise Unauthorized("API key has been revoked")
    secret = box.open(key.secret_encrypted)
    if secret is None:
        # Sealed under another TIDINGS_SECRET_KEY: the key can no longer be verified.
        raise Unauthorized("API key cannot be verified with this server's secret key; re-issue it")
    return key, secret


_KNOWN_SCOPES = frozenset(s.value for s in Scope)


def key_scopes(key: ApiKey) -> frozenset[Scope]:
    """The key's scopes (a name this release does not know is ignored, never granted)."""
    return frozenset(Scope(s) for s in key.scopes if s in _KNOWN_SCOPES)


def _key_principal(key: ApiKey, method: AuthMethod) -> Principal:
    return Principal(
        workspace_id=key.workspace_id,
        actor=Actor.API_KEY,
        method=method,
        api_key_id=key.id,
        scopes=key_scopes(key),
    )


@dataclass(frozen=True)
class SignatureCheck:
    """A signed request that passed: who it is, and, for a date-signing key, the signature
    to spend (`spend_signature`) before the request may go on."""

    principal: Principal
    to_spend: UsedSignature | None


async def authenticate_signature(
    session: AsyncSession,
    box: SecretBox,
    *,
    key_id: str,
    x_date: str | None,
    signature: str | None,
    request: SignedRequest,
    now: datetime,
    max_future: timedelta,
    max_age: timedelta,
) -> SignatureCheck:
    """Check an `x-api-key` / `x-date` / `x-signature` request; each failure says which.

    A request-signing key's signature covers `request.canonical(x_date)`; a date-signing
    key's covers the x-date alone and is accepted once (the caller spends it).
    """
    key, secret = await _usable_key(session, box, key_id)
    if not x_date:
        raise Unauthorized("missing x-date header")
    if not signature:
        raise Unauthorized("missing x-signature header")
    try:
        signed_at = parse_iso_instant(x_date)
    except ValueError as exc:
        raise Unauthorized(f"x-date is not an ISO-8601 timestamp with an offset: {exc}") from None
    age = now - signed_at
    if age < -max_future:
        raise Unauthorized(
            f"x-date is {-age.total_seconds():.1f} s in the future; "
            f"at most {max_future.total_seconds():g} s is accepted"
        )
    if age > max_age:
        raise Unauthorized(
            f"x-date is stale: {age.total_seconds():.1f} s old; "
            f"at most {max_age.total_seconds():g} s is accepted"
        )
    if key.signing is Signing.DATE:
        expected, covers = sign(secret, x_date), "x-date"
    else:
        expected = sign(secret, request.canonical(x_date))
        covers = "METHOD\\npath[?query]\\nx-date\\nhex SHA-256 of the body"
    # Bytes, not str: compare_digest refuses non-ASCII str, and headers may carry any byte.
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(
            f"invalid signature: x-signature is not HMAC-SHA256(secret, {covers}) "
            f"for this {key.signing.value}-signing key"
        )
    to_spend = None
    if key.signing is Signing.DATE:
        # Kept until the x-date could no longer be accepted anyway.
        to_spend = UsedSignature(
            api_key_id=key.id, signature=expected, expires_at=signed_at + max_age
        )
    return SignatureCheck(_key_principal(key, AuthMethod.SIGNATURE), to_spend)


async def spend_signature(session: AsyncSession, used: UsedSignature, now: datetime) -> bool:
    """Record a date-signing key's signature as used; False if it already was (a replay).

    The INSERT conflicts on the primary key when any process spent it first (on PostgreSQL
    a concurrent insert waits for the first one's transaction, then conflicts). Expired
    signatures are pruned on the way.
    """
    await session.execute(
        delete(UsedSignature)
        .where(UsedSignature.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = await session.execute(
        dialect.insert(UsedSignature)
        .values(api_key_id=used.api_key_id, signature=used.signature, expires_at=used.expires_at)
        .on_conflict_do_nothing(index_elements=["api_key_id", "signature"])
        .returning(UsedSignature.signature)
    )
    return inserted.scalar_one_or_none() is not None


async def authenticate_bearer(session: AsyncSession, box: SecretBox, token: str) -> Principal:
    key_id, sep, presented = token.partition(TOKEN_SEPARATOR)
    if not sep or not key_id or not presented:
        raise Unauthorized("malformed Bearer token")
    key, secret = await _usable_key(session, box, key_id)
    if not hmac.compare_digest(secret.encode(), presented.encode()):
        raise Unauthorized("invalid Bearer token")
    return _key_principal(key, AuthMethod.BEARER)


@dataclass(frozen=True)
class NewSession:
    token: str
    record: UserSession
    role: Role


BAD_CREDENTIALS = "invalid email or password"


async def sign_in(
    db: Database,
    policy: throttle.SignInPolicy,
    *,
    email: str,
    password: str,
    workspace_id: str | None,
    address: str,
    now: datetime,
    ttl: timedelta,
) -> NewSession:
    """Check a person's password and start their browser session, throttled per email and
    per client address (429 while either is locked, even for the right password).

    Each step has its own short transaction, and the password is checked while none is
    open: hashing takes long, and must not hold SQLite's write lock (or a connection).
    """
    keys = throttle.SignInKeys.of(email, address)
    await throttle.count_attempt(db, policy, keys, now)
    async with db.transaction(write=False) as session:
        user = (
            await session.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()
        user_id, password_hash = (user.id, user.password_hash) if user else (None, None)
    # An unknown email is checked against a dummy hash: it costs what a wrong password does.
    if not await verify_password(password_hash, password) or user_id is None:
        raise Unauthorized(BAD_CREDENTIALS)
    async with db.transaction() as session:
        new = await start_session(
            session, user_id=user_id, workspace_id=workspace_id, now=now, ttl=ttl
        )
        await throttle.forgive(session, policy, keys, now)
    return new


async def start_session(
    session: AsyncSession,
    *,
    user_id: str,
    workspace_id: str | None,
    now: datetime,
    ttl: timedelta,
) -> NewSession:
    """Start a browser session for a person already known to be who they say, in one of
    their workspaces (their first by default)."""
    query = select(Membership).where(Membership.user_id == user_id)
    if workspace_id is not None:
        query = query.where(Membership.workspace_id == workspace_id)
    membership = (
        (await session.execute(query.order_by(Membership.created_at, Membership.workspace_id)))
        .scalars()
        .first()
    )
    if membership is None:
        raise Unauthorized(
            "this account is not a member of that workspace"
            if workspace_id
            else "this account is not a member of any workspace"
        )
    token = secrets.token_urlsafe(32)
    record = UserSession(
        token_hash=token_hash(token),
        user_id=user_id,
        workspace_id=membership.workspace_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(record)
    # Expired sessions are swept here rather than by a separate job.
    await session.execute(
        delete(UserSession)
        .where(UserSession.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return NewSession(token, record, membership.role)


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    record: UserSession


async def authenticate_session(
    session: AsyncSession, token: str, now: datetime
) -> ActiveSession | None:
    """The signed-in person behind a session cookie, or None when it is unknown or expired."""
    record = await session.get(UserSession, token_hash(token))
    if record is None or record.expires_at <= now:
        return None
    membership = await session.get(Membership, (record.workspace_id, record.user_id))
    if membership is None:
        return None
    principal = Principal(
        workspace_id=record.workspace_id,
        actor=Actor(membership.role.value),
        method=AuthMethod.SESSION,
        user_id=record.user_id,
    )
    return ActiveSession(principal, record)


async def logout(session: AsyncSession, record: UserSession) -> None:
    await session.delete(record)
    await session.flush()


# --- Managing keys (the /api-keys API and the settings page) --------------------------------


def authorize_manage_keys(principal: Principal) -> None:
    """Owners and admins, signed in, manage keys: a key never lists, makes or revokes keys."""
    if principal.actor is Actor.API_KEY:
        raise Forbidden("API keys cannot manage API keys; an owner or admin can, signed in")
    if principal.actor not in (Actor.OWNER, Actor.ADMIN):
        raise Forbidden(f"role {principal.actor.value} cannot manage API keys; owner or admin can")


async def list_api_keys(session: AsyncSession, principal: Principal) -> Sequence[ApiKey]:
    """The workspace's keys, newest first (revoked ones too, marked so)."""
    authorize_manage_keys(principal)
    result = await session.execute(
        select(ApiKey)
        .where(ApiKey.workspace_id == principal.workspace_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    return result.scalars().all()


async def issue_api_key(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    name: str,
    now: datetime,
    *,
    signing: Signing = Signing.REQUEST,
    scopes: Iterable[Scope] = DEFAULT_SCOPES,
) -> IssuedKey:
    """A new key for the workspace; its secret is in the answer and nowhere else."""
    authorize_manage_keys(principal)
    name = name.strip()
    if not name:
        raise BadRequest("name the key (e.g. what will use it)")
    return await create_api_key(
        session, box, principal.workspace_id, name, now, signing=signing, scopes=scopes
    )


async def revoke_workspace_key(
    session: AsyncSession, principal: Principal, key_id: str, now: datetime
) -> ApiKey:
    """Revoke one of the workspace's keys (another workspace's is not found)."""
    authorize_manage_keys(principal)
    key = await session.get(ApiKey, key_id)
    if key is None or key.workspace_id != principal.workspace_id:
        raise NotFound(f"API key {key_id} not found")
    return await revoke_api_key(session, key_id, now)
