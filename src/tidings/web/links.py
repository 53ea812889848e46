"""The pages a link leads to: accepting an invitation (`/app/invitations/{token}`) and
setting a new password with a reset link (`/app/password-reset/{token}`). They need no
sign-in; an invitation to an address that has an account is accepted signed in as it.

The token is in the path, so these pages load nothing from elsewhere and ask browsers not
to send a Referer."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from tidings.auth import service as auth_service
from tidings.auth.deps import SESSION_COOKIE
from tidings.db.session import SessionDep
from tidings.errors import BadRequest, Forbidden, TidingsError
from tidings.timefmt import utcnow
from tidings.web.deps import Viewer, checked_form, sign_in_url, viewer_of
from tidings.web.render import redirect, render, sentence
from tidings.workspaces import invitations, passwords
from tidings.workspaces import service as workspace_service

router = APIRouter(include_in_schema=False)

INVITATION = "/app/invitations/{token}"
RESET = "/app/password-reset/{token}"


def _private(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _confirmed(password: str, confirmation: str) -> str:
    """A new password typed twice, as far as a password may go (400 if the two differ)."""
    if password != confirmation:
        raise BadRequest("the password and its confirmation differ")
    return password[:1024]


async def _viewer(request: Request, session: SessionDep) -> Viewer | None:
    """Who is signed in on this browser, if anyone (these pages do not require it)."""
    token = request.cookies.get(SESSION_COOKIE)
    active = await auth_service.authenticate_session(session, token, utcnow()) if token else None
    if active is None:
        return None
    return await viewer_of(
        session, active.principal, active.record.csrf_token, active.record.token_hash
    )


async def _invitation_page(
    request: Request,
    session: SessionDep,
    token: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    found = await invitations.open_invitation(session, token, utcnow())
    viewer = await _viewer(request, session)
    return _private(
        render(
            request,
            "invitation.html",
            viewer,
            invitation=found.invitation,
            workspace=found.workspace,
            has_account=found.has_account,
            token=token,
            sign_in=sign_in_url(request.url.path),
            error=error,
            status_code=status_code,
        )
    )


@router.get(INVITATION, response_class=HTMLResponse)
async def invitation_page(token: str, request: Request, session: SessionDep) -> Response:
    """The invitation: to which workspace and role, and how to accept it."""
    return await _invitation_page(request, session, token)


@router.post(INVITATION)
async def accept_invitation(
    token: str,
    request: Request,
    session: SessionDep,
    password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    """Accept: signed in as the invited address, or with a new account's password."""
    viewer = await _viewer(request, session)
    if viewer is not None:
        await checked_form(request, viewer)
    try:
        chosen = _confirmed(password, confirm_password) if viewer is None else password[:1024]
        member = await invitations.accept(
            session,
            token=token,
            password=chosen or None,
            principal=viewer.principal if viewer else None,
            now=utcnow(),
        )
    except TidingsError as exc:
        if not isinstance(exc, BadRequest | Forbidden):
            raise
        # Something the person can fix here (a short password, the wrong account).
        await session.rollback()
        return await _invitation_page(
            request, session, token, error=sentence(exc.message), status_code=exc.status_code
        )
    workspace = (
        await workspace_service.get_workspace(session, member.membership.workspace_id)
    ).name
    if viewer is not None:
        return redirect(
            "/app/settings",
            f"You joined {workspace} as {member.role.value}.",
        )
    return redirect(
        "/app/signin",
        f"Welcome: you joined {workspace} as {member.role.value}. Sign in with your new password.",
    )


async def _reset_page(
    request: Request,
    session: SessionDep,
    token: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    _, user = await passwords.open_reset(session, token, utcnow())
    return _private(
        render(
            request,
            "password_reset.html",
            None,
            email=user.email,
            token=token,
            error=error,
            status_code=status_code,
        )
    )


@router.get(RESET, response_class=HTMLResponse)
async def reset_page(token: str, request: Request, session: SessionDep) -> Response:
    """The form to set a new password through a reset link."""
    return await _reset_page(request, session, token)


@router.post(RESET)
async def reset_password(
    token: str,
    request: Request,
    session: SessionDep,
    password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    try:
        user = await passwords.use_reset(
            session, token, _confirmed(password, confirm_password), utcnow()
        )
    except BadRequest as exc:
        await session.rollback()
        return await _reset_page(
            request, session, token, error=sentence(exc.message), status_code=400
        )
    response = redirect(
        "/app/signin", f"Password set for {user.email}: sign in with it. Other sign-ins ended."
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
