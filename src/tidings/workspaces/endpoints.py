"""HTTP routes of /members (people, their roles, invitations and reset links), /workspace
(its name, timezone), and the public ends of the links (accepting an invitation, setting a
password with a reset link).

Everyone in the workspace, and its API keys, may read members; owners and admins, signed
in, change them (an admin never makes, demotes, resets or removes an owner, nor invites
one; the last owner stays). People join only by accepting an invitation."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, status

from tidings.auth.deps import SESSION_COOKIE, CurrentPrincipal, current_principal
from tidings.auth.principal import Principal
from tidings.db.session import SessionDep, StateDep
from tidings.paging import MAX_PAGE, PageCursor, PageLimit
from tidings.timefmt import utcnow
from tidings.workspaces import invitations, passwords, service
from tidings.workspaces.models import Invitation, Role, Workspace
from tidings.workspaces.schemas import (
    Accepted,
    InvitationAccept,
    InvitationCreate,
    InvitationIssued,
    InvitationList,
    InvitationOut,
    MemberList,
    MemberOut,
    MemberUpdate,
    PasswordResetIssued,
    PasswordResetUse,
    WorkspaceOut,
    WorkspaceUpdate,
)

members_router = APIRouter(prefix="/members", tags=["workspace"])
workspace_router = APIRouter(prefix="/workspace", tags=["workspace"])
#: The routes a link leads to: no key, and a session only when there is one.
links_router = APIRouter(tags=["workspace"])


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


def _invitation_out(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=invitation.role.value,
        invitedBy=invitation.invited_by,
        createdAt=invitation.created_at,
        expiresAt=invitation.expires_at,
    )


@members_router.post(
    "/invitations", response_model=InvitationIssued, status_code=status.HTTP_201_CREATED
)
async def create_invitation(
    body: InvitationCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> InvitationIssued:
    """Invite an email address with a role (owners and admins; only an owner invites an
    owner). The single-use link is e-mailed when SMTP is configured, else in this answer
    only. The answer is the same whether or not the address has an account elsewhere."""
    settings = state.settings
    issued = await invitations.invite(
        session,
        principal,
        email=body.email,
        role=Role(body.role),
        now=utcnow(),
        ttl=timedelta(hours=settings.invitation_ttl_hours),
    )
    mailer = settings.mailer
    if mailer is not None:
        workspace = await service.get_workspace(session, principal.workspace_id)
        mail = invitations.invitation_mail(mailer, issued, workspace.name, settings.public_url)
        # After the response, so after the commit: no mail for an invitation that failed.
        background.add_task(mailer.deliver, mail)
    link = None if mailer else invitations.invitation_url(settings.public_url, issued.token)
    out = _invitation_out(issued.invitation)
    return InvitationIssued(**out.model_dump(), link=link, mailed=mailer is not None)


@members_router.get("/invitations", response_model=InvitationList)
async def list_invitations(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> InvitationList:
    """The invitations still pending (owners and admins), newest first; page with
    `nextCursor`."""
    pending, next_cursor = await invitations.list_pending(
        session, principal, utcnow(), limit=limit, cursor=cursor
    )
    return InvitationList(data=[_invitation_out(i) for i in pending], nextCursor=next_cursor)


@members_router.delete("/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: str, principal: CurrentPrincipal, session: SessionDep
) -> None:
    """Revoke a pending invitation: its link stops working."""
    await invitations.revoke(session, principal, invitation_id, utcnow())


@members_router.post(
    "/{user_id}/password-reset",
    response_model=PasswordResetIssued,
    status_code=status.HTTP_201_CREATED,
)
async def create_password_reset(
    user_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> PasswordResetIssued:
    """A single-use link for a member to set a new password (owners and admins; only an
    owner for an owner): e-mailed when SMTP is configured, else in this answer only."""
    settings = state.settings
    mailer = settings.mailer
    issued = await passwords.issue_reset(
        session,
        principal,
        user_id,
        now=utcnow(),
        ttl=timedelta(hours=settings.password_reset_ttl_hours),
        mailed=mailer is not None,
    )
    if mailer is not None:
        workspace = await service.get_workspace(session, principal.workspace_id)
        mail = passwords.reset_mail(mailer, issued, workspace.name, settings.public_url)
        background.add_task(mailer.deliver, mail)
    return PasswordResetIssued(
        userId=issued.member.user.id,
        email=issued.member.user.email,
        expiresAt=issued.reset.expires_at,
        link=None if mailer else passwords.reset_url(settings.public_url, issued.token),
        mailed=mailer is not None,
    )


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


async def _signed_in_or_none(
    request: Request, session: SessionDep, state: StateDep
) -> Principal | None:
    """The signed-in person (checked as any route checks a session, CSRF included), or None
    for a request without a session cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    return await current_principal(request, session, state, None, None, cookie)


@links_router.post("/invitations/accept", response_model=Accepted)
async def accept_invitation(
    body: InvitationAccept,
    session: SessionDep,
    principal: Annotated[Principal | None, Depends(_signed_in_or_none)],
) -> Accepted:
    """Join a workspace with an invitation's token: with a password for an address that has
    no account yet, or signed in as the invited address. Works once."""
    member = await invitations.accept(
        session, token=body.token, password=body.password, principal=principal, now=utcnow()
    )
    return Accepted(
        workspaceId=member.membership.workspace_id,
        userId=member.user.id,
        email=member.user.email,
        role=member.role.value,
    )


@links_router.post("/auth/password-reset", status_code=status.HTTP_204_NO_CONTENT)
async def use_password_reset(body: PasswordResetUse, session: SessionDep) -> None:
    """Set a new password with a reset link's token (no sign-in): works once, and ends every
    sign-in of the person."""
    await passwords.use_reset(session, body.token, body.newPassword, utcnow())
