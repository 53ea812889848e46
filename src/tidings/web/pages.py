"""The way in: the first run (the first workspace and its owner), signing in and out, and
the errors every page shares. Other pages have modules of their own beside this one."""

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import exists, select

from tidings.auth import service
from tidings.auth.deps import SESSION_COOKIE
from tidings.auth.models import User
from tidings.auth.origin import client_address, refuse_cross_site
from tidings.auth.throttle import SignInPolicy
from tidings.db.session import SessionDep, StateDep
from tidings.errors import TidingsError, TooManyRequests
from tidings.timefmt import utcnow
from tidings.web import presession
from tidings.web.deps import (
    CurrentViewer,
    FormRefused,
    SignInRequired,
    checked_form,
    sign_in_url,
)
from tidings.web.render import redirect, render
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

router = APIRouter(include_in_schema=False)


def is_web(request: Request) -> bool:
    """Whether a request is for a page (answered in HTML) rather than the JSON API."""
    path = request.url.path
    return path == "/" or path == "/app" or path.startswith("/app/")


async def _anyone(session: SessionDep) -> bool:
    return bool(await session.scalar(select(exists().where(User.id.is_not(None)))))


def _safe_next(url: str | None) -> str:
    """Where to go after signing in: a page of this app, never another site."""
    if not url or not url.startswith("/") or url.startswith("//") or urlparse(url).netloc:
        return "/app"
    return url


def _signed_in(response: Response, token: str, state: StateDep) -> Response:
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=state.settings.secure_cookies,
        path="/",
    )
    return response


#: What a sign-in or first-run form without its token is told (an old tab, another site).
FORM_EXPIRED = "This form has expired or did not come from this page; please try again."


def _form_page(
    request: Request, state: StateDep, name: str, *, status_code: int = 200, **context: Any
) -> Response:
    """The sign-in or first-run page, with its pre-session CSRF token (and cookie)."""
    secret = state.settings.resolved_secret_key
    token = presession.form_token(request, secret)
    response = render(request, name, status_code=status_code, csrf_token=token.token, **context)
    return presession.keep(response, token, secure=state.settings.secure_cookies)


def _checked_sign_in_post(request: Request, state: StateDep, csrf_token: str) -> bool:
    """Refuse (403) a post from another site; then whether its pre-session token is right."""
    refuse_cross_site(request, state.settings.public_url)
    return presession.is_valid(request, state.settings.resolved_secret_key, csrf_token)


@router.get("/")
async def root(request: Request, session: SessionDep, state: StateDep) -> Response:
    """The first run offers to create the workspace and its owner; afterwards, the app."""
    if not await _anyone(session):
        return _form_page(request, state, "setup.html", form={"timezone": "UTC"})
    return RedirectResponse("/app", status_code=303)


@router.post("/app/setup")
async def setup(
    request: Request,
    session: SessionDep,
    state: StateDep,
    workspace: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "UTC",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Create the first workspace and its owner, and sign them in (only while there is no
    one yet: afterwards people are added by an owner or admin)."""
    form = {"workspace": workspace, "email": email, "timezone": timezone}
    if not _checked_sign_in_post(request, state, csrf_token):
        return _form_page(
            request, state, "setup.html", form=form, error=FORM_EXPIRED, status_code=403
        )
    if await _anyone(session):
        return redirect("/app/signin", "Tidings is set up already: sign in.", kind="error")
    now = utcnow()
    try:
        if not workspace.strip():
            raise ValueError("Name the workspace.")
        ws = await workspace_service.create_workspace(
            session, workspace.strip(), now, timezone=timezone
        )
        # Hashed inside the transaction: this happens once, on a server nobody uses yet.
        owner, _ = await workspace_service.add_member(
            session, workspace_id=ws.id, email=email, password=password, role=Role.OWNER, now=now
        )
    except (TidingsError, ValueError) as exc:
        await session.rollback()
        message = exc.message if isinstance(exc, TidingsError) else str(exc)
        return _form_page(request, state, "setup.html", form=form, error=message, status_code=400)
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    new = await service.start_session(
        session, user_id=owner.id, workspace_id=ws.id, now=now, ttl=ttl
    )
    return _signed_in(
        redirect("/app", f"Welcome to Tidings, {ws.name} is ready."), new.token, state
    )


@router.get("/app/signin", response_class=HTMLResponse)
async def signin_page(
    request: Request, session: SessionDep, state: StateDep, next: str = "/app"
) -> Response:
    if not await _anyone(session):
        return RedirectResponse("/", status_code=303)
    return _form_page(request, state, "signin.html", next=_safe_next(next), form={})


@router.post("/app/signin")
async def signin(
    request: Request,
    state: StateDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/app",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Sign in from the form (throttled like POST /auth/login, and with no SessionDep for
    the same reason: the password is checked while no transaction is open)."""
    again = {"next": _safe_next(next), "form": {"email": email}}
    if not _checked_sign_in_post(request, state, csrf_token):
        return _form_page(
            request, state, "signin.html", error=FORM_EXPIRED, status_code=403, **again
        )
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    try:
        new = await service.sign_in(
            state.db,
            SignInPolicy.from_settings(state.settings),
            email=email,
            password=password,
            workspace_id=None,
            address=client_address(request),
            now=utcnow(),
            ttl=ttl,
        )
    except TidingsError as exc:
        page = _form_page(
            request,
            state,
            "signin.html",
            error=exc.message,
            status_code=exc.status_code if isinstance(exc, TooManyRequests) else 401,
            **again,
        )
        page.headers.update(exc.headers())
        return page
    return _signed_in(redirect(_safe_next(next)), new.token, state)


@router.post("/app/signout")
async def signout(request: Request, session: SessionDep, viewer: CurrentViewer) -> Response:
    await checked_form(request, viewer)
    token = request.cookies.get(SESSION_COOKIE, "")
    active = await service.authenticate_session(session, token, utcnow())
    if active is not None:
        await service.logout(session, active.record)
    response = redirect("/app/signin", "Signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/app", response_class=HTMLResponse)
async def home(request: Request, viewer: CurrentViewer) -> Response:
    return render(request, "home.html", viewer)


def error_page(request: Request, status: int, message: str) -> Response:
    """An error as a page (for a page request), never a trace."""
    titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    return render(
        request,
        "error.html",
        status_code=status,
        title=titles.get(status, "Something went wrong"),
        message=message,
    )


def install(app: FastAPI) -> None:
    """The pages, their static files and what a page does on a missing session or CSRF."""
    from fastapi.staticfiles import StaticFiles

    from tidings.web import calendar, channels, compose, links, review, settings
    from tidings.web.render import HERE

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    for page in (calendar, compose, review, channels, settings, links):
        app.include_router(page.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        url = sign_in_url(exc.next_url)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    @app.exception_handler(FormRefused)
    async def _form_refused(request: Request, exc: FormRefused) -> Response:
        return error_page(
            request, 403, "This form has expired or did not come from this page; reload it."
        )
