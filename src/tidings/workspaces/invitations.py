"""Invitations: an owner or admin invites an email address with a role; whoever holds the
link joins, with a new password or, if the address has an account, signed in as it.

What the inviter is told never depends on whether the address has an account elsewhere:
an invitation is made the same way, with the same answer, for any address not already in
this workspace (whose members the inviter can list anyway). Nobody's account is touched
until its owner accepts. A link is a random token; only its SHA-256 is stored.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import User
from tidings.auth.passwords import hash_password
from tidings.auth.principal import AuthMethod, Principal
from tidings.errors import BadRequest, Conflict, Forbidden, NotFound
from tidings.ids import new_id
from tidings.mail import Mailer
from tidings.paging import entity_page
from tidings.workspaces.models import Invitation, Membership, Role, Workspace
from tidings.workspaces.service import (
    Member,
    authorize_manage_members,
    check_password,
    normalise_email,
    owners_only,
)
from tidings.workspaces.tokens import find_by_token, link_url, new_token

#: Where a link leads in the web app, under TIDINGS_PUBLIC_URL.
INVITATION_PATH = "/app/invitations/"


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation and its token: the only time the token exists outside the link."""

    invitation: Invitation
    token: str


def invitation_url(public_url: str, token: str) -> str:
    return link_url(public_url, INVITATION_PATH, token)


def is_pending(invitation: Invitation, now: datetime) -> bool:
    return (
        invitation.accepted_at is None
        and invitation.revoked_at is None
        and invitation.expires_at > now
    )


async def invite(
    session: AsyncSession,
    principal: Principal,
    *,
    email: str,
    role: Role,
    now: datetime,
    ttl: timedelta,
) -> IssuedInvitation:
    """Invite an address (owners and admins; only an owner invites an owner). A new
    invitation for the same address replaces the one still pending."""
    by = authorize_manage_members(principal)
    if role is Role.OWNER:
        owners_only(by, "invite an owner")
    email = normalise_email(email)
    already = await session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == principal.workspace_id, User.email == email)
    )
    if already is not None:
        raise Conflict(f"{email} is already a member of this workspace")
    await session.execute(
        update(Invitation)
        .where(
            Invitation.workspace_id == principal.workspace_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    token, hashed = new_token()
    invitation = Invitation(
        id=new_id("inv"),
        workspace_id=principal.workspace_id,
        email=email,
        role=role,
        token_hash=hashed,
        invited_by=principal.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()
    return IssuedInvitation(invitation, token)


async def list_pending(
    session: AsyncSession, principal: Principal, now: datetime, *, limit: int, cursor: str | None
) -> tuple[list[Invitation], str | None]:
    """A page of the workspace's invitations not yet accepted, revoked or expired, newest
    first (ids are time-ordered), and the cursor of the next page."""
    authorize_manage_members(principal)
    return await entity_page(
        session,
        select(Invitation).where(
            Invitation.workspace_id == principal.workspace_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        ),
        Invitation.id,
        limit=limit,
        cursor=cursor,
        descending=True,
    )


async def revoke(
    session: AsyncSession, principal: Principal, invitation_id: str, now: datetime
) -> Invitation:
    """Revoke a pending invitation: its link stops working (only an owner revokes an
    invitation to be an owner; one already accepted is 409)."""
    by = authorize_manage_members(principal)
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != principal.workspace_id:
        raise NotFound(f"invitation {invitation_id} not found")
    if invitation.role is Role.OWNER:
        owners_only(by, "revoke an invitation to be an owner")
    if invitation.accepted_at is not None:
        raise Conflict("this invitation was accepted already; remove the member instead")
    if invitation.revoked_at is None:
        invitation.revoked_at = now
        await session.flush()
    return invitation


@dataclass(frozen=True)
class OpenInvitation:
    """An invitation as its link shows it: to which workspace, for which address."""

    invitation: Invitation
    workspace: Workspace
    #: Whether the address has an account (then it is accepted signed in as it).
    has_account: bool


async def open_invitation(
    session: AsyncSession, token: str, now: datetime, *, lock: bool = False
) -> OpenInvitation:
    """The invitation a link carries, if it can still be accepted (404 unknown; 409 used,
    revoked or expired, saying which)."""
    invitation = await find_by_token(session, Invitation, Invitation.token_hash, token, lock=lock)
    if invitation is None:
        raise NotFound("this invitation link is not valid; ask for a new one")
    if invitation.accepted_at is not None:
        raise Conflict("this invitation was used already")
    if invitation.revoked_at is not None:
        raise Conflict("this invitation was revoked; ask for a new one")
    if invitation.expires_at <= now:
        raise Conflict("this invitation has expired; ask for a new one")
    workspace = await session.get(Workspace, invitation.workspace_id)
    assert workspace is not None  # invitations go with their workspace (ON DELETE CASCADE)
    account = await session.scalar(select(User.id).where(User.email == invitation.email))
    return OpenInvitation(invitation, workspace, account is not None)


async def accept(
    session: AsyncSession,
    *,
    token: str,
    password: str | None,
    principal: Principal | None,
    now: datetime,
) -> Member:
    """Join the workspace through a link: signed in as the invited address, or, when the
    address has no account yet, by setting its password. The link is then used up."""
    found = await open_invitation(session, token, now, lock=True)
    invitation = found.invitation
    if principal is not None and principal.method is AuthMethod.SESSION:
        user = await session.get(User, principal.user_id)
        assert user is not None
        if user.email != invitation.email:
            raise Forbidden(
                f"this invitation is for {invitation.email}, and you are signed in as "
                f"{user.email}: sign in as {invitation.email} to accept it"
            )
        if await session.get(Membership, (invitation.workspace_id, user.id)) is not None:
            raise Conflict(f"{user.email} is already a member of this workspace")
    elif found.has_account:
        # Never set an existing account's password from a link someone else may have seen.
        raise Conflict(
            f"{invitation.email} has a Tidings account already: sign in with it, then accept"
        )
    else:
        if not password:
            raise BadRequest("choose a password to accept the invitation")
        check_password(password)
        user = User(
            id=new_id("usr"),
            email=invitation.email,
            password_hash=await hash_password(password),
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            # Another link for this address made its account a moment ago.
            raise Conflict(
                f"{invitation.email} has a Tidings account already: sign in with it, then accept"
            ) from None
    membership = Membership(
        workspace_id=invitation.workspace_id, user_id=user.id, role=invitation.role, created_at=now
    )
    session.add(membership)
    invitation.accepted_at = now
    invitation.accepted_by = user.id
    await session.flush()
    return Member(user, membership)


def invitation_mail(
    mailer: Mailer, issued: IssuedInvitation, workspace_name: str, public_url: str
) -> EmailMessage:
    """The message that carries an invitation's link to its address."""
    invitation = issued.invitation
    return mailer.message(
        invitation.email,
        f"You are invited to {workspace_name} on Tidings",
        f"You are invited to join {workspace_name} on Tidings as {invitation.role.value}.\n\n"
        f"Open this link to accept (it works once, until "
        f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n\n"
        f"{invitation_url(public_url, issued.token)}\n\n"
        "If you did not expect this, ignore this message.\n",
    )
