"""The way in: the first run (the first workspace and its owner), signing in and out, and
the errors every page shares. Other pages have modules of their own beside this one."""

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import exists, select

from tidings.auth import service
from tidings.auth.deps import SESSION_COOKIE
from tidings.auth.models import User
from tidings.db.session import SessionDep, StateDep
from tidings.errors import TidingsError
from tidings.timefmt import utcnow
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


@router.get("/")
async def root(request: Request, session: SessionDep) -> Response:
    """The first run offers to create the workspace and its owner; afterwards, the app."""
    if not await _anyone(session):
        return render(request, "setup.html", form={"timezone": "UTC"})
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
) -> Response:
    """Create the first workspace and its owner, and sign them in (only while there is no
    one yet: afterwards people are added by an owner or admin)."""
    if await _anyone(session):
        return redirect("/app/signin", "Tidings is set up already: sign in.", kind="error")
    form = {"workspace": workspace, "email": email, "timezone": timezone}
    now = utcnow()
    try:
        if not workspace.strip():
            raise ValueError("Name the workspace.")
        ws = await workspace_service.create_workspace(
            session, workspace.strip(), now, timezone=timezone
        )
        await workspace_service.add_member(
            session, workspace_id=ws.id, email=email, password=password, role=Role.OWNER, now=now
        )
    except (TidingsError, ValueError) as exc:
        await session.rollback()
        message = exc.message if isinstance(exc, TidingsError) else str(exc)
        return render(request, "setup.html", form=form, error=message, status_code=400)
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    new = await service.login(
        session, email=email, password=password, workspace_id=ws.id, now=now, ttl=ttl
    )
    return _signed_in(
        redirect("/app", f"Welcome to Tidings, {ws.name} is ready."), new.token, state
    )


@router.get("/app/signin", response_class=HTMLResponse)
async def signin_page(request: Request, session: SessionDep, next: str = "/app") -> Response:
    if not await _anyone(session):
        return RedirectResponse("/", status_code=303)
    return render(request, "signin.html", next=_safe_next(next), form={})


@router.post("/app/signin")
async def signin(
    request: Request,
    session: SessionDep,
    state: StateDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/app",
) -> Response:
    ttl = timedelta(minutes=state.settings.session_ttl_minutes)
    try:
        new = await service.login(
            session, email=email, password=password, workspace_id=None, now=utcnow(), ttl=ttl
        )
    except TidingsError as exc:
        return render(
            request,
            "signin.html",
            next=_safe_next(next),
            form={"email": email},
            error=exc.message,
            status_code=401,
        )
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
