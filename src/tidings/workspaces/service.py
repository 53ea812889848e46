"""Create workspaces and add people to them."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import User
from tidings.auth.service import hash_password, verify_password
from tidings.errors import BadRequest, Conflict, NotFound
from tidings.ids import new_id
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

    An existing account keeps its password: the one given must match it.
    """
    await get_workspace(session, workspace_id)
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise BadRequest(f"{email!r} is not an email address")
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
        user = User(
            id=new_id("usr"),
            email=email,
            password_hash=hash_password(password),
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        await session.flush()
    elif not verify_password(user.password_hash, password):
        raise Conflict(f"a user with email {email} exists with a different password")
    elif await session.get(Membership, (workspace_id, user.id)) is not None:
        raise Conflict(f"{email} is already a member of workspace {workspace_id}")
    membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role, created_at=now)
    session.add(membership)
    await session.flush()
    return user, membership
