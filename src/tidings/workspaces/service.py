"""Create workspaces and add people to them."""

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import User, UserSession
from tidings.auth.passwords import hash_password, verify_password
from tidings.auth.principal import Principal
from tidings.errors import BadRequest, Conflict, Forbidden, NotFound
from tidings.ids import new_id
from tidings.paging import keyset, page_of
from tidings.scheduled_posts.lifecycle import Actor
from tidings.workspaces.models import Membership, Role, Workspace

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone, else a ValueError that says so."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris)") from None
    return name


async def create_workspace(
    session: AsyncSession, name: str, now: datetime, timezone: str = "UTC"
) -> Workspace:
    name = name.strip()
    if not name:
        raise BadRequest("workspace name must not be empty")
    try:
        check_timezone(timezone)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    workspace = Workspace(
        id=new_id("ws"), name=name, timezone=timezone, created_at=now, updated_at=now
    )
    session.add(workspace)
    await session.flush()
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"workspace {workspace_id} does not exist")
    return workspace


def normalise_email(email: str) -> str:
    """The address as accounts are keyed (trimmed, lower case), or a 400 if it is none."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise BadRequest(f"{email!r} is not an email address")
    return email


def check_password(password: str) -> str:
    """`password` if it is long enough to be a new password, else a 400 saying so."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


async def add_member(
    session: AsyncSession,
    *,
    workspace_id: str,
    email: str,
    password: str,
    role: Role,
    now: datetime,
) -> tuple[User, Membership]:
    """Add a person to a workspace, creating their account if the email is new.

    An existing account keeps its password: the one given must match it. This is for the
    operator (the command line, the first run) and tests; people invite others instead
    (`tidings.workspaces.invitations`), which tells nothing about accounts elsewhere.
    """
    await get_workspace(session, workspace_id)
    email = normalise_email(email)
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        check_password(password)
        user = User(
            id=new_id("usr"),
            email=email,
            password_hash=await hash_password(password),
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        await session.flush()
    elif not await verify_password(user.password_hash, password):
        raise Conflict(f"a user with email {email} exists with a different password")
    elif await session.get(Membership, (workspace_id, user.id)) is not None:
        raise Conflict(f"{email} is already a member of workspace {workspace_id}")
    membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role, created_at=now)
    session.add(membership)
    await session.flush()
    return user, membership


# --- Members, roles and the workspace's settings (the /members and /workspace API, and the
# web app's settings page call these; each checks who may). ---------------------------------

#: Who may manage people and the workspace: owners and admins, signed in (never a key).
MANAGING_ROLES = frozenset({Role.OWNER, Role.ADMIN})


@dataclass(frozen=True)
class Member:
    user: User
    membership: Membership

    @property
    def role(self) -> Role:
        return self.membership.role


def _role_of(principal: Principal) -> Role | None:
    """The person's role; None for an API key (keys stand for no one)."""
    if principal.actor is Actor.API_KEY:
        return None
    return Role(principal.actor.value)


def authorize_manage_members(principal: Principal) -> Role:
    """Owners and admins, signed in, manage people and the workspace's settings."""
    role = _role_of(principal)
    if role is None:
        raise Forbidden("API keys cannot manage members or the workspace; an owner or admin can")
    if role not in MANAGING_ROLES:
        raise Forbidden(f"role {role.value} cannot manage members; owner or admin can")
    return role


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise BadRequest(
            f"{value!r} is not a role; one of: {', '.join(r.value for r in Role)}"
        ) from None


_RANK = {role: str(index) for index, role in enumerate(Role)}
# The members' order as one string key, rank then email (`0:owner@…`), to page by.
_MEMBER_KEY = case(_RANK, value=Membership.role) + ":" + User.email


async def list_members(
    session: AsyncSession, workspace_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Member], str | None]:
    """A page of the workspace's people, owners first, then by email."""
    query = keyset(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id),
        _MEMBER_KEY,
        limit=limit,
        cursor=cursor,
    )
    members = [Member(user, membership) for user, membership in (await session.execute(query))]
    return page_of(members, limit, lambda m: f"{_RANK[m.role]}:{m.user.email}")


async def get_member(session: AsyncSession, workspace_id: str, user_id: str) -> Member:
    membership = await session.get(Membership, (workspace_id, user_id))
    user = await session.get(User, user_id) if membership is not None else None
    if membership is None or user is None:
        raise NotFound(f"member {user_id} not found")
    return Member(user, membership)


async def _owners(session: AsyncSession, workspace_id: str) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == Role.OWNER)
    )
    return int(found or 0)


def owners_only(by: Role, what: str) -> None:
    if by is not Role.OWNER:
        raise Forbidden(f"only an owner can {what}")


async def change_role(
    session: AsyncSession, principal: Principal, user_id: str, role: Role
) -> Member:
    """Change a member's role; owners alone grant or take away the owner role, and the last
    owner keeps it (409)."""
    by = authorize_manage_members(principal)
    member = await get_member(session, principal.workspace_id, user_id)
    if role is member.role:
        return member
    if Role.OWNER in (role, member.role):
        owners_only(by, "grant or take away the owner role")
    if member.role is Role.OWNER and await _owners(session, principal.workspace_id) <= 1:
        raise Conflict("the workspace's last owner cannot be demoted; make another owner first")
    member.membership.role = role
    await session.flush()
    return member


async def remove_member(session: AsyncSession, principal: Principal, user_id: str) -> Member:
    """Take a person out of the workspace (their account stays: it may belong to others).
    Owners alone remove an owner, and the last owner stays (409). Their sign-ins to this
    workspace end at once."""
    by = authorize_manage_members(principal)
    member = await get_member(session, principal.workspace_id, user_id)
    if member.role is Role.OWNER:
        owners_only(by, "remove an owner")
        if await _owners(session, principal.workspace_id) <= 1:
            raise Conflict("the workspace's last owner cannot be removed")
    await session.execute(
        delete(UserSession).where(
            UserSession.workspace_id == principal.workspace_id, UserSession.user_id == user_id
        )
    )
    await session.delete(member.membership)
    await session.flush()
    return member


async def update_workspace(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str | None,
    timezone: str | None,
    now: datetime,
) -> Workspace:
    """Rename the workspace or change its timezone (owners and admins)."""
    authorize_manage_members(principal)
    workspace = await get_workspace(session, principal.workspace_id)
    if name is not None:
        if not name.strip():
            raise BadRequest("workspace name must not be empty")
        workspace.name = name.strip()
    if timezone is not None:
        try:
            workspace.timezone = check_timezone(timezone.strip())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    workspace.updated_at = now
    await session.flush()
    return workspace


async def set_own_timezone(
    session: AsyncSession, principal: Principal, timezone: str | None, now: datetime
) -> User:
    """A signed-in person's own timezone (None or empty: the workspace's)."""
    if principal.user_id is None:
        raise Forbidden("an API key has no timezone of its own; set the workspace's")
    user = await session.get(User, principal.user_id)
    if user is None:
        raise NotFound(f"user {principal.user_id} not found")
    if timezone is None or not timezone.strip():
        user.timezone = None
    else:
        try:
            user.timezone = check_timezone(timezone.strip())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    user.updated_at = now
    await session.flush()
    return user
