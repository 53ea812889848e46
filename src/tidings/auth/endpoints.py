"""Sign in and out; ask who you are."""

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from tidings.auth import service
from tidings.auth.deps import SESSION_COOKIE, CurrentPrincipal, require_session
from tidings.auth.origin import client_address, refuse_cross_site
from tidings.auth.schemas import (
    LoginRequest,
    LoginResponse,
    OwnSettings,
    OwnSettingsOut,
    WhoAmI,
)
from tidings.auth.throttle import SignInPolicy
from tidings.db.session import SessionDep, StateDep
from tidings.schemas import MessageBody
from tidings.timefmt import utcnow
from tidings.workspaces import passwords
from tidings.workspaces import service as workspace_service
from tidings.workspaces.schemas import PasswordChange

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/login",
    response_model=LoginResponse,
    responses={429: {"model": MessageBody, "description": "Too many failed sign-ins: wait"}},
)
async def login(
    body: LoginRequest, request: Request, response: Response, state: StateDep
) -> LoginResponse:
    """Sign a person in: sets the session cookie and returns the CSRF token for writes."""
    # No SessionDep: sign_in opens short transactions of its own around the password check.
    refuse_cross_site(request, state.settings.public_url)
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    new = await service.sign_in(
        state.db,
        SignInPolicy.from_settings(state.settings),
        email=body.email,
        password=body.password,
        workspace_id=body.workspaceId,
        address=client_address(request),
        now=utcnow(),
        ttl=ttl,
    )
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=state.settings.secure_cookies,
        path="/",
    )
    return LoginResponse(
        csrfToken=new.record.csrf_token,
        userId=new.record.user_id,
        workspaceId=new.record.workspace_id,
        role=new.role.value,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    request: Request, principal: CurrentPrincipal, session: SessionDep, state: StateDep
) -> Response:
    """End the current session (needs the session cookie and X-CSRF-Token)."""
    require_session(principal)
    await service.logout(session, request.state.user_session)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=state.settings.secure_cookies,
    )
    return response


@router.get("/me", response_model=WhoAmI)
async def me(principal: CurrentPrincipal) -> WhoAmI:
    """Who the request is authenticated as, and in which workspace."""
    return WhoAmI(
        workspaceId=principal.workspace_id,
        actor=principal.actor.value,
        method=principal.method.value,
        userId=principal.user_id,
        apiKeyId=principal.api_key_id,
    )


@router.patch("/me", response_model=OwnSettingsOut)
async def update_me(
    body: OwnSettings, principal: CurrentPrincipal, session: SessionDep
) -> OwnSettingsOut:
    """Set your own timezone (a signed-in person; null or "" goes back to the workspace's)."""
    require_session(principal)
    user = await workspace_service.set_own_timezone(session, principal, body.timezone, utcnow())
    workspace = await workspace_service.get_workspace(session, principal.workspace_id)
    return OwnSettingsOut(
        userId=user.id,
        timezone=user.timezone,
        effectiveTimezone=user.timezone or workspace.timezone,
    )


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange, request: Request, principal: CurrentPrincipal, session: SessionDep
) -> None:
    """Change your own password (signed in; the current one is asked). Your other sign-ins
    end; this one stays."""
    require_session(principal)
    await passwords.change_own_password(
        session,
        principal,
        current=body.currentPassword,
        new=body.newPassword,
        session_hash=request.state.user_session.token_hash,
        now=utcnow(),
    )
