"""Settings: members and roles (invitations, reset links), your password, API keys, the
workspace's and one's own timezone, and the workspace's platform apps. Each action calls
the same service as the JSON API, which checks who may (a viewer's forged form is refused
there, not only hidden here)."""

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth import service as auth_service
from tidings.auth.scopes import DEFAULT_SCOPES, Scope, Signing, parse_scopes, parse_signing
from tidings.auth.service import IssuedKey, key_scopes
from tidings.channels import service as channel_service
from tidings.db.session import SessionDep, StateDep, app_state
from tidings.errors import BadRequest, Forbidden, TidingsError
from tidings.paging import MAX_PAGE, every_page
from tidings.timefmt import utcnow
from tidings.web.channels import PLATFORM_NAMES
from tidings.web.deps import CurrentViewer, Viewer, checked_form
from tidings.web.render import redirect, render, sentence
from tidings.workspaces import invitations, passwords
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

router = APIRouter(include_in_schema=False)

PAGE = "/app/settings"
APP_PLATFORMS = [p for p in PLATFORM_NAMES if p != "sandbox"]


@functools.cache
def timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


@dataclass(frozen=True)
class ShownLink:
    """A link shown once on the page: an invitation's or a password reset's."""

    kind: str
    email: str
    url: str


async def _page(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    *,
    issued: IssuedKey | None = None,
    shown_link: ShownLink | None = None,
    status_code: int = 200,
) -> Response:
    workspace = await workspace_service.get_workspace(session, viewer.workspace_id)
    members = await every_page(
        lambda cursor: workspace_service.list_members(
            session, viewer.workspace_id, limit=MAX_PAGE, cursor=cursor
        )
    )
    me = next((m for m in members if m.user.id == viewer.principal.user_id), None)
    keys = await auth_service.list_api_keys(session, viewer.principal) if viewer.manages else []
    apps = await channel_service.list_apps(session, viewer.workspace_id) if viewer.manages else []
    pending = (
        await every_page(
            lambda cursor: invitations.list_pending(
                session, viewer.principal, utcnow(), limit=MAX_PAGE, cursor=cursor
            )
        )
        if viewer.manages
        else []
    )
    grantable = [r for r in Role if r is not Role.OWNER or viewer.role.value == "owner"]
    return render(
        request,
        "settings.html",
        viewer,
        status_code=status_code,
        workspace=workspace,
        members=members,
        own_timezone=me.user.timezone if me else None,
        keys=keys,
        key_scopes=key_scopes,
        scopes=list(Scope),
        default_scopes=DEFAULT_SCOPES,
        issued=issued,
        shown_link=shown_link,
        invitations=pending,
        mailed=app_state(request).settings.smtp_url is not None,
        base_url=str(request.base_url).rstrip("/"),
        apps=apps,
        app_platforms=APP_PLATFORMS,
        platform_names=PLATFORM_NAMES,
        grantable=grantable,
        may_change=lambda role: _may_change(viewer, role),
        timezones=timezones(),
    )


def _may_change(viewer: Viewer, role: Role) -> bool:
    """Whether the page offers to change a member with `role` (the service decides)."""
    return viewer.manages and (role is not Role.OWNER or viewer.role.value == "owner")


@router.get(PAGE, response_class=HTMLResponse)
async def settings_page(request: Request, viewer: CurrentViewer, session: SessionDep) -> Response:
    return await _page(request, viewer, session)


async def _refused(session: AsyncSession, exc: TidingsError, anchor: str) -> Response:
    """A refusal the person can fix (bad input, a conflict): nothing kept, said on the page.
    A forbidden action stays an error page (the page never offered it)."""
    if isinstance(exc, Forbidden):
        raise exc
    return await _said(session, exc, anchor)


async def _said(session: AsyncSession, exc: TidingsError, anchor: str) -> Response:
    """A refusal said on the page at `anchor`, with nothing of the action kept."""
    await session.rollback()
    return redirect(f"{PAGE}#{anchor}", sentence(exc.message), kind="error")


@router.post(f"{PAGE}/invitations", response_class=HTMLResponse)
async def invite(
    request: Request,
    viewer: CurrentViewer,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> Response:
    """Invite an address: the link is e-mailed when SMTP is configured, else shown on the
    page this answers with, once."""
    form = await checked_form(request, viewer)
    settings = state.settings
    try:
        issued = await invitations.invite(
            session,
            viewer.principal,
            email=str(form.get("email") or "")[:320],
            role=workspace_service.parse_role(str(form.get("role") or "")),
            now=utcnow(),
            ttl=timedelta(hours=settings.invitation_ttl_hours),
        )
    except TidingsError as exc:
        return await _refused(session, exc, "members")
    mailer = settings.mailer
    if mailer is not None:
        mail = invitations.invitation_mail(
            mailer, issued, viewer.workspace_name, settings.public_url
        )
        background.add_task(mailer.deliver, mail)
        invitation = issued.invitation
        return redirect(
            f"{PAGE}#invitations",
            f"Invitation e-mailed to {invitation.email} (as {invitation.role.value}).",
        )
    link = invitations.invitation_url(settings.public_url, issued.token)
    return await _page(
        request,
        viewer,
        session,
        shown_link=ShownLink("invitation", issued.invitation.email, link),
        status_code=201,
    )


@router.post(f"{PAGE}/invitations/{{invitation_id}}/revoke")
async def revoke_invitation(
    invitation_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    await checked_form(request, viewer)
    try:
        invitation = await invitations.revoke(session, viewer.principal, invitation_id, utcnow())
    except TidingsError as exc:
        return await _refused(session, exc, "invitations")
    return redirect(
        f"{PAGE}#invitations",
        f"The invitation of {invitation.email} is revoked: its link no longer works.",
    )


@router.post(f"{PAGE}/members/{{user_id}}/password-reset", response_class=HTMLResponse)
async def password_reset(
    user_id: str,
    request: Request,
    viewer: CurrentViewer,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> Response:
    """A reset link for a member: e-mailed when SMTP is configured, else shown once."""
    await checked_form(request, viewer)
    settings = state.settings
    mailer = settings.mailer
    try:
        issued = await passwords.issue_reset(
            session,
            viewer.principal,
            user_id,
            now=utcnow(),
            ttl=timedelta(hours=settings.password_reset_ttl_hours),
            mailed=mailer is not None,
        )
    except TidingsError as exc:
        return await _refused(session, exc, "members")
    email = issued.member.user.email
    if mailer is not None:
        mail = passwords.reset_mail(mailer, issued, viewer.workspace_name, settings.public_url)
        background.add_task(mailer.deliver, mail)
        return redirect(f"{PAGE}#members", f"A password reset link was e-mailed to {email}.")
    link = passwords.reset_url(settings.public_url, issued.token)
    return await _page(
        request, viewer, session, shown_link=ShownLink("reset", email, link), status_code=201
    )


@router.post(f"{PAGE}/password")
async def change_password(request: Request, viewer: CurrentViewer, session: SessionDep) -> Response:
    form = await checked_form(request, viewer)
    try:
        if str(form.get("new_password") or "") != str(form.get("confirm_password") or ""):
            raise BadRequest("the new password and its confirmation differ")
        await passwords.change_own_password(
            session,
            viewer.principal,
            current=str(form.get("current_password") or "")[:1024],
            new=str(form.get("new_password") or "")[:1024],
            session_hash=viewer.sign_in,
            now=utcnow(),
        )
    except TidingsError as exc:
        if isinstance(exc, Forbidden):
            # A wrong current password is the person's to fix, not a forbidden action.
            return await _said(session, exc, "password")
        return await _refused(session, exc, "password")
    return redirect(f"{PAGE}#password", "Password changed. Your other sign-ins have ended.")


@router.post(f"{PAGE}/members/{{user_id}}/role")
async def change_role(
    user_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    form = await checked_form(request, viewer)
    try:
        role = workspace_service.parse_role(str(form.get("role") or ""))
        member = await workspace_service.change_role(session, viewer.principal, user_id, role)
    except TidingsError as exc:
        return await _refused(session, exc, "members")
    return redirect(f"{PAGE}#members", f"{member.user.email} is now {member.role.value}.")


@router.post(f"{PAGE}/members/{{user_id}}/remove")
async def remove_member(
    user_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    await checked_form(request, viewer)
    try:
        member = await workspace_service.remove_member(session, viewer.principal, user_id)
    except TidingsError as exc:
        return await _refused(session, exc, "members")
    return redirect(f"{PAGE}#members", f"{member.user.email} was removed from the workspace.")


@router.post(f"{PAGE}/keys", response_class=HTMLResponse)
async def create_key(
    request: Request, viewer: CurrentViewer, session: SessionDep, state: StateDep
) -> Response:
    """A new key; its secret is on the page this answers with, and never again."""
    form = await checked_form(request, viewer)
    try:
        # Who may comes before what was asked: a forged form is refused, not corrected.
        auth_service.authorize_manage_keys(viewer.principal)
        issued = await auth_service.issue_api_key(
            session,
            viewer.principal,
            state.box,
            str(form.get("name") or "")[:200],
            utcnow(),
            signing=parse_signing(str(form.get("signing") or Signing.REQUEST.value)),
            scopes=parse_scopes(str(s) for s in form.getlist("scope")),
        )
    except TidingsError as exc:
        return await _refused(session, exc, "keys")
    return await _page(request, viewer, session, issued=issued, status_code=201)


@router.post(f"{PAGE}/keys/{{key_id}}/revoke")
async def revoke_key(
    key_id: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    await checked_form(request, viewer)
    try:
        key = await auth_service.revoke_workspace_key(session, viewer.principal, key_id, utcnow())
    except TidingsError as exc:
        return await _refused(session, exc, "keys")
    return redirect(f"{PAGE}#keys", f"Key “{key.name}” revoked: it is refused from now on.")


@router.post(f"{PAGE}/workspace")
async def update_workspace(
    request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    form = await checked_form(request, viewer)
    try:
        workspace = await workspace_service.update_workspace(
            session,
            viewer.principal,
            name=str(form["name"]) if "name" in form else None,
            timezone=str(form["timezone"]) if "timezone" in form else None,
            now=utcnow(),
        )
    except TidingsError as exc:
        return await _refused(session, exc, "workspace")
    return redirect(
        f"{PAGE}#workspace", f"Workspace saved: {workspace.name}, in {workspace.timezone}."
    )


@router.post(f"{PAGE}/timezone")
async def set_own_timezone(
    request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    form = await checked_form(request, viewer)
    wanted = str(form.get("timezone") or "").strip()
    try:
        await workspace_service.set_own_timezone(session, viewer.principal, wanted, utcnow())
    except TidingsError as exc:
        return await _refused(session, exc, "you")
    message = (
        f"Times are now shown in {wanted}."
        if wanted
        else "Times are now shown in the workspace's timezone."
    )
    return redirect(f"{PAGE}#you", message)


@router.post(f"{PAGE}/apps")
async def set_app(
    request: Request, viewer: CurrentViewer, session: SessionDep, state: StateDep
) -> Response:
    form = await checked_form(request, viewer)
    platform = str(form.get("platform") or "")
    try:
        channel_service.authorize_manage_apps(viewer.principal)
        await channel_service.set_app(
            session,
            viewer.workspace_id,
            platform,
            client_id=str(form.get("client_id") or "")[:200],
            client_secret=str(form.get("client_secret") or "")[:500],
            box=state.box,
            now=utcnow(),
        )
    except TidingsError as exc:
        return await _refused(session, exc, "apps")
    name = PLATFORM_NAMES.get(platform, platform)
    return redirect(f"{PAGE}#apps", f"The {name} app is set: its accounts can be connected.")


@router.post(f"{PAGE}/apps/{{platform}}/remove")
async def remove_app(
    platform: str, request: Request, viewer: CurrentViewer, session: SessionDep
) -> Response:
    await checked_form(request, viewer)
    try:
        channel_service.authorize_manage_apps(viewer.principal)
        await channel_service.delete_app(session, viewer.workspace_id, platform)
    except TidingsError as exc:
        return await _refused(session, exc, "apps")
    return redirect(f"{PAGE}#apps", f"The {PLATFORM_NAMES.get(platform, platform)} app is removed.")
