"""HTTP routes of /members (people and their roles) and /workspace (its name, timezone).

Everyone in the workspace, and its API keys, may read them; owners and admins, signed in,
change them (an admin never makes, demotes or removes an owner; the last owner stays)."""

from fastapi import APIRouter, status

from tidings.auth.deps import CurrentPrincipal
from tidings.db.session import SessionDep
from tidings.paging import MAX_PAGE, PageCursor, PageLimit
from tidings.timefmt import utcnow
from tidings.workspaces import service
from tidings.workspaces.models import Role, Workspace
from tidings.workspaces.schemas import (
    MemberAdd,
    MemberList,
    MemberOut,
    MemberUpdate,
    WorkspaceOut,
    WorkspaceUpdate,
)

members_router = APIRouter(prefix="/members", tags=["workspace"])
workspace_router = APIRouter(prefix="/workspace", tags=["workspace"])


def _member_out(member: service.Member) -> MemberOut:
    return MemberOut(
        userId=member.user.id,
        email=member.user.email,
        role=member.role.value,
        timezone=member.user.timezone,
        joinedAt=member.membership.created_at,
    )


def _workspace_out(workspace: Workspace) -> WorkspaceOut:
    return WorkspaceOut(id=workspace.id, name=workspace.name, timezone=workspace.timezone)


@members_router.get("", response_model=MemberList)
async def list_members(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = MAX_PAGE,
    cursor: PageCursor = None,
) -> MemberList:
    """The workspace's people and their roles, owners first; page with `nextCursor`."""
    members, next_cursor = await service.list_members(
        session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return MemberList(data=[_member_out(m) for m in members], nextCursor=next_cursor)


@members_router.post("", response_model=MemberOut, status_code=status.HTTP_201_CREATED)
async def add_member(
    body: MemberAdd, principal: CurrentPrincipal, session: SessionDep
) -> MemberOut:
    """Add a person (owners and admins; only an owner adds an owner). A new email gets an
    account with this password; an existing account joins if the password is its own."""
    member = await service.invite_member(
        session,
        principal,
        email=body.email,
        password=body.password,
        role=Role(body.role),
        now=utcnow(),
    )
    return _member_out(member)


@members_router.patch("/{user_id}", response_model=MemberOut)
async def change_role(
    user_id: str, body: MemberUpdate, principal: CurrentPrincipal, session: SessionDep
) -> MemberOut:
    """Change a member's role (the last owner cannot be demoted: 409)."""
    return _member_out(await service.change_role(session, principal, user_id, Role(body.role)))


@members_router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(user_id: str, principal: CurrentPrincipal, session: SessionDep) -> None:
    """Take a person out of the workspace (the last owner cannot be removed: 409); their
    sign-ins to it end."""
    await service.remove_member(session, principal, user_id)


@workspace_router.get("", response_model=WorkspaceOut)
async def get_workspace(principal: CurrentPrincipal, session: SessionDep) -> WorkspaceOut:
    """The workspace: its name and timezone."""
    return _workspace_out(await service.get_workspace(session, principal.workspace_id))


@workspace_router.patch("", response_model=WorkspaceOut)
async def update_workspace(
    body: WorkspaceUpdate, principal: CurrentPrincipal, session: SessionDep
) -> WorkspaceOut:
    """Rename the workspace or change its timezone (IANA; owners and admins)."""
    workspace = await service.update_workspace(
        session, principal, name=body.name, timezone=body.timezone, now=utcnow()
    )
    return _workspace_out(workspace)
