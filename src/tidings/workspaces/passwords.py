"""Passwords after sign-up: a person changes their own, an owner or admin makes a
single-use reset link for a member, and the operator sets one from the command line.

A new password ends the person's other sign-ins: whoever knew the old one is out.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import User, UserSession
from tidings.auth.passwords import hash_password, verify_password
from tidings.auth.principal import AuthMethod, Principal
from tidings.errors import Conflict, Forbidden, NotFound, Unauthorized
from tidings.mail import Mailer
from tidings.workspaces.models import Membership, PasswordReset, Role
from tidings.workspaces.service import (
    Member,
    authorize_manage_members,
    check_password,
    get_member,
    normalise_email,
    owners_only,
)
from tidings.workspaces.tokens import find_by_token, link_url, new_token

#: Where a reset link leads in the web app, under TIDINGS_PUBLIC_URL.
RESET_PATH = "/app/password-reset/"


def reset_url(public_url: str, token: str) -> str:
    return link_url(public_url, RESET_PATH, token)


async def _set_password(
    session: AsyncSession, user: User, password: str, now: datetime, *, keep: str | None = None
) -> None:
    """Store a new password and end every sign-in of the person but `keep` (a token hash)."""
    user.password_hash = await hash_password(check_password(password))
    user.updated_at = now
    ended = delete(UserSession).where(UserSession.user_id == user.id)
    if keep is not None:
        ended = ended.where(UserSession.token_hash != keep)
    await session.execute(ended.execution_options(synchronize_session=False))
    await session.flush()


async def change_own_password(
    session: AsyncSession,
    principal: Principal,
    *,
    current: str,
    new: str,
    session_hash: str,
    now: datetime,
) -> User:
    """A signed-in person changes their password, proving the current one (403 if wrong);
    their other sign-ins end, this one stays."""
    if principal.method is not AuthMethod.SESSION or principal.user_id is None:
        raise Unauthorized("changing a password needs a signed-in session")
    user = await session.get(User, principal.user_id)
    assert user is not None
    if not await verify_password(user.password_hash, current):
        raise Forbidden("the current password is not right")
    await _set_password(session, user, new, now, keep=session_hash)
    return user


@dataclass(frozen=True)
class IssuedReset:
    """A reset link's record and its token (the only time the token exists)."""

    reset: PasswordReset
    member: Member
    token: str


async def issue_reset(
    session: AsyncSession,
    principal: Principal,
    user_id: str,
    *,
    now: datetime,
    ttl: timedelta,
    mailed: bool,
) -> IssuedReset:
    """A single-use link for a member to set a new password (owners and admins; only an
    owner for an owner). A link the admin is shown (`mailed` False: no SMTP) is refused for
    a person who is also in another workspace: it would let this workspace's admin into
    that one. Earlier unused links of the person from this workspace stop working."""
    by = authorize_manage_members(principal)
    member = await get_member(session, principal.workspace_id, user_id)
    if member.role is Role.OWNER:
        owners_only(by, "reset an owner's password")
    if not mailed:
        elsewhere = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.user_id == user_id, Membership.workspace_id != principal.workspace_id)
        )
        if elsewhere:
            raise Conflict(
                f"{member.user.email} is also a member of another workspace, so their reset "
                "link can only be e-mailed to them (TIDINGS_SMTP_URL), or the operator sets "
                "their password (tidings users set-password)"
            )
    await session.execute(
        delete(PasswordReset)
        .where(
            PasswordReset.user_id == user_id,
            PasswordReset.workspace_id == principal.workspace_id,
            PasswordReset.used_at.is_(None),
        )
        .execution_options(synchronize_session=False)
    )
    token, hashed = new_token()
    reset = PasswordReset(
        token_hash=hashed,
        user_id=user_id,
        workspace_id=principal.workspace_id,
        created_by=principal.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(reset)
    await session.flush()
    return IssuedReset(reset, member, token)


async def open_reset(
    session: AsyncSession, token: str, now: datetime, *, lock: bool = False
) -> tuple[PasswordReset, User]:
    """The reset a link carries if it can still be used (404 unknown; 409 used or expired,
    or the person left the workspace that made it)."""
    reset = await find_by_token(session, PasswordReset, PasswordReset.token_hash, token, lock=lock)
    if reset is None:
        raise NotFound("this password reset link is not valid; ask for a new one")
    if reset.used_at is not None:
        raise Conflict("this password reset link was used already")
    if reset.expires_at <= now:
        raise Conflict("this password reset link has expired; ask for a new one")
    if await session.get(Membership, (reset.workspace_id, reset.user_id)) is None:
        raise Conflict("this password reset link's workspace no longer has this person")
    user = await session.get(User, reset.user_id)
    assert user is not None  # resets go with their user (ON DELETE CASCADE)
    return reset, user


async def use_reset(session: AsyncSession, token: str, password: str, now: datetime) -> User:
    """Set a new password through a reset link: the link is used up and every sign-in of
    the person ends."""
    reset, user = await open_reset(session, token, now, lock=True)
    await _set_password(session, user, password, now)
    reset.used_at = now
    await session.flush()
    return user


async def set_password(session: AsyncSession, email: str, password: str, now: datetime) -> User:
    """The operator sets a person's password (`tidings users set-password`); their sign-ins
    end."""
    email = normalise_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        raise NotFound(f"no account with email {email}")
    await _set_password(session, user, password, now)
    return user


def reset_mail(
    mailer: Mailer, issued: IssuedReset, workspace_name: str, public_url: str
) -> EmailMessage:
    """The message that carries a reset link to the person."""
    return mailer.message(
        issued.member.user.email,
        "Set a new Tidings password",
        f"An owner or admin of {workspace_name} made you a link to set a new Tidings "
        f"password. It works once, until {issued.reset.expires_at:%Y-%m-%d %H:%M} UTC:\n\n"
        f"{reset_url(public_url, issued.token)}\n\n"
        "Setting a password signs you out everywhere. If you did not ask for this, tell "
        "them.\n",
    )
