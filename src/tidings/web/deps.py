"""Who is looking at a page, and the CSRF check every form passes before it acts."""

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from tidings.auth import service
from tidings.auth.deps import CSRF_HEADER, SESSION_COOKIE
from tidings.auth.models import User
from tidings.auth.principal import Principal
from tidings.db.session import SessionDep, StateDep
from tidings.scheduled_posts.lifecycle import PERMISSIONS, Action, Actor
from tidings.timefmt import utcnow
from tidings.workspaces.models import Workspace

#: What owners and admins alone may do (the channels' and the workspace's settings).
MANAGERS = frozenset({Actor.OWNER, Actor.ADMIN})


class SignInRequired(Exception):
    """No session (or an expired one): the person is sent to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class FormRefused(Exception):
    """A form without this session's CSRF token: refused before anything is done."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: their workspace, role, timezone and the session's CSRF token."""

    principal: Principal
    email: str
    csrf_token: str
    workspace_name: str
    #: The person's own timezone, else the workspace's.
    timezone: str
    #: The hash of this sign-in (what an account connection is bound to).
    sign_in: str = ""

    @property
    def role(self) -> Actor:
        return self.principal.actor

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    def may(self, action: str) -> bool:
        """Whether the role may ever take a post `action` (the lifecycle's own table)."""
        return Action(action) in PERMISSIONS[self.role]

    @property
    def manages(self) -> bool:
        """Owners and admins: channels, members, keys, apps."""
        return self.role in MANAGERS


async def current_viewer(request: Request, session: SessionDep) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    active = await service.authenticate_session(session, token, utcnow()) if token else None
    if active is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    return await viewer_of(
        session, active.principal, active.record.csrf_token, active.record.token_hash
    )


async def viewer_of(
    session: AsyncSession, principal: Principal, csrf_token: str, sign_in: str = ""
) -> Viewer:
    user = await session.get(User, principal.user_id)
    workspace = await session.get(Workspace, principal.workspace_id)
    assert user is not None
    assert workspace is not None
    return Viewer(
        principal=principal,
        email=user.email,
        csrf_token=csrf_token,
        workspace_name=workspace.name,
        timezone=user.timezone or workspace.timezone,
        sign_in=sign_in,
    )


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


async def viewer_apart(request: Request, state: StateDep) -> Viewer:
    """The signed-in person, as `CurrentViewer`, read in a short transaction of its own: for
    pages that wait on the network and must hold no connection meanwhile."""
    async with state.db.transaction(write=False) as session:
        return await current_viewer(request, session)


ViewerApart = Annotated[Viewer, Depends(viewer_apart)]


async def checked_form(request: Request, viewer: Viewer) -> FormData:
    """The form, once its CSRF token (field `csrf_token`, or the header htmx sends) is this
    session's."""
    form = await request.form()
    sent = str(form.get("csrf_token") or request.headers.get(CSRF_HEADER) or "")
    if not hmac.compare_digest(sent.encode(), viewer.csrf_token.encode()):
        raise FormRefused
    return form


def sign_in_url(next_url: str) -> str:
    return f"/app/signin?next={quote(next_url, safe='/')}"
