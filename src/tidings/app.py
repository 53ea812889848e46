"""The FastAPI application factory. Nothing connects at import: the lifespan does."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from tidings import __version__
from tidings.auth.endpoints import router as auth_router
from tidings.auth.keys import router as api_keys_router
from tidings.channels.endpoints import apps_router as platform_apps_router
from tidings.channels.endpoints import router as channels_router
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.db.session import StateDep
from tidings.errors import RequestShapeError, TidingsError
from tidings.publishing.health import engine_report
from tidings.publishing.worker import Worker, engine_config, platform_context
from tidings.sandbox.endpoints import router as sandbox_router
from tidings.scheduled_posts.endpoints import router as scheduled_posts_router
from tidings.schemas import ERROR_RESPONSES, document_nul_in_url, refuse_nul_in_url
from tidings.state import AppState
from tidings.timefmt import utcnow
from tidings.web import pages as web_pages
from tidings.workspaces.endpoints import members_router, workspace_router

log = logging.getLogger("tidings")
_UNPARSABLE_BODY = "There was an error parsing the body"


def _jsonable(value: Any) -> Any:
    """Pydantic error contexts can hold exceptions and other objects: keep JSON, else str."""
    if isinstance(value, BaseException):
        # jsonable_encoder would render an exception as {}, losing what it says.
        return str(value)
    try:
        return jsonable_encoder(value)
    except (TypeError, ValueError):
        return str(value)


def _validation_error(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        # Body errors are paths into the JSON document; query/header/path keep their location.
        if loc and loc[0] == "body":
            loc = loc[1:]
        errors.append(
            {
                "message": err.get("msg", "invalid"),
                "path": loc,
                "type": err.get("type", "value_error"),
                "context": {k: _jsonable(v) for k, v in (err.get("ctx") or {}).items()},
            }
        )
    return {"error": errors}


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _methods_of(request: Request, path: str) -> list[str]:
    """The methods some route (not a mount) answers at `path`, asked of each route as the
    router asks it; Starlette's 405 names only the first route matching the path."""
    found = []
    for method in METHODS:
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "root_path": request.scope.get("root_path", ""),
            "headers": [],
            "query_string": b"",
        }
        for route in request.app.router.routes:
            if isinstance(route, Mount):
                continue
            if route.matches(scope)[0] is Match.FULL:
                found.append(method)
                break
    return found


def _allowed_methods(request: Request) -> str:
    """The Allow header of a 405: every method of every route of the path."""
    return ", ".join(_methods_of(request, request.url.path))


def _slashless(request: Request) -> str | None:
    """Where a path written with a trailing slash lives without it, if it does.

    Starlette's own redirect (turned off in create_app) looks at the decoded path, so an id
    ending in an encoded slash (`/scheduled-posts/abc%2F`) was redirected to another id.
    """
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    raw_path = raw.split(b"?", 1)[0]
    if not raw_path.endswith(b"/") or raw_path == b"/":
        return None
    path = request.url.path.rstrip("/")
    if not _methods_of(request, path):
        return None
    query = request.url.query
    return f"{path}?{query}" if query else path


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as `{"message"}` or the 422 `{"error": [...]}` shape, never a trace."""

    @app.exception_handler(TidingsError)
    async def _tidings_error(request: Request, exc: TidingsError) -> Response:
        if web_pages.is_web(request):
            return web_pages.error_page(request, exc.status_code, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        elif exc.status_code == 404 and (slashless := _slashless(request)) is not None:
            return RedirectResponse(slashless, status_code=307)
        if web_pages.is_web(request):
            page = web_pages.error_page(request, exc.status_code, str(exc.detail))
            page.headers.update(headers)
            return page
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            # FastAPI's own answer to a body it cannot decode (not UTF-8, absurd nesting).
            error = RequestShapeError("the body is not valid JSON", [], "json_invalid")
            return JSONResponse(error.body(), status_code=422)
        return JSONResponse(
            {"message": str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(StaleDataError)
    async def _stale(_: Request, exc: StaleDataError) -> JSONResponse:
        return JSONResponse(
            {"message": "the post was changed by another request at the same time; reload it"},
            status_code=409,
        )

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the schemas let through: the client's input, not us.
        log.warning("database refused a value: %s", exc.orig)
        error = RequestShapeError("a value cannot be stored", [], "value_error")
        return JSONResponse(error.body(), status_code=422)

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database error", exc_info=exc)
        return JSONResponse({"message": "database unavailable; try again"}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        if web_pages.is_web(request):
            return web_pages.error_page(request, 500, "Something went wrong on our side.")
        return JSONResponse({"message": "internal error"}, status_code=500)


class HealthReport(BaseModel):
    """What /health answers; an unreachable database leaves only status and database."""

    status: Literal["ok", "unavailable"]
    database: str
    version: str | None = None
    workers: int | None = None
    heartbeatAgeSeconds: float | None = None
    oldestOverdueSeconds: float | None = None
    tasksDue: int | None = None
    problems: list[str] | None = None


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; engines and clients are created when it starts, closed when it stops."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.connect(
            settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        state = AppState(settings=settings, db=db, box=SecretBox(settings.resolved_secret_key))
        app.state.tidings = state
        stop = asyncio.Event()
        running: asyncio.Task[None] | None = None
        context = platform_context(settings, db)
        if settings.embedded_worker:
            worker = Worker(
                db,
                config=engine_config(settings),
                concurrency=settings.worker_concurrency,
                metrics=state.metrics,
                context=context,
            )
            state.wakers.append(worker.wake)
            running = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            if running is not None:
                await running
            await context.aclose()
            await db.dispose()

    app = FastAPI(
        title="Tidings",
        version=__version__,
        description="Compose once, approve, publish at an exact instant to many channels.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(refuse_nul_in_url)],
    )
    generate_openapi = app.openapi
    app.openapi = lambda: document_nul_in_url(generate_openapi())  # type: ignore[method-assign]
    # Trailing slashes are redirected by the 404 handler, which sees the path as sent.
    app.router.redirect_slashes = False
    install_error_handlers(app)
    app.include_router(auth_router)
    app.include_router(channels_router)
    app.include_router(platform_apps_router)
    app.include_router(scheduled_posts_router)
    app.include_router(sandbox_router)
    app.include_router(api_keys_router)
    app.include_router(members_router)
    app.include_router(workspace_router)
    web_pages.install(app)

    @app.get(
        "/health",
        tags=["operations"],
        responses={
            200: {"model": HealthReport, "description": "Healthy"},
            503: {"model": HealthReport, "description": "Unhealthy: `problems` says why"},
        },
    )
    async def health(state: StateDep) -> JSONResponse:
        """Liveness: the database answers, a worker is alive, and due work is picked up."""
        settings = state.settings
        max_age = timedelta(seconds=settings.health_max_heartbeat_age_seconds)
        try:
            async with state.db.transaction(write=False) as session:
                report = await engine_report(session, utcnow(), fresh_within=max_age)
        except (DBAPIError, OSError) as exc:
            return JSONResponse(
                {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        problems = report.problems(
            max_heartbeat_age=max_age,
            max_lag=timedelta(seconds=settings.health_max_lag_seconds),
        )
        age = report.heartbeat_age
        body = {
            "status": "unavailable" if problems else "ok",
            "version": __version__,
            "database": "ok",
            "workers": report.fresh_workers,
            "heartbeatAgeSeconds": round(age.total_seconds(), 3) if age is not None else None,
            "oldestOverdueSeconds": round(report.oldest_overdue.total_seconds(), 3),
            "tasksDue": report.tasks_due,
            "problems": problems,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(state: StateDep) -> Response:
        """Prometheus metrics: the queue as the database sees it, and this process's worker."""
        max_age = timedelta(seconds=state.settings.health_max_heartbeat_age_seconds)
        async with state.db.transaction(write=False) as session:
            report = await engine_report(session, utcnow(), fresh_within=max_age)
        return Response(state.metrics.render(report), media_type=CONTENT_TYPE_LATEST)

    return app
