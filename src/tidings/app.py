"""The FastAPI application factory. Nothing connects at import: the lifespan does."""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tidings import __version__
from tidings.auth.deps import SESSION_COOKIE, current_principal
from tidings.auth.endpoints import router as auth_router
from tidings.auth.keys import router as api_keys_router
from tidings.auth.principal import Principal
from tidings.bodylimit import BodyLimit
from tidings.channels.endpoints import apps_router as platform_apps_router
from tidings.channels.endpoints import router as channels_router
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.db.session import SessionDep, StateDep
from tidings.errors import Forbidden, RequestShapeError, TidingsError
from tidings.fetch import FetchGate
from tidings.headers import SecurityHeaders, install_docs
from tidings.publishing.health import engine_report
from tidings.publishing.worker import Worker, engine_config, platform_context
from tidings.sandbox.endpoints import router as sandbox_router
from tidings.scheduled_posts.endpoints import router as scheduled_posts_router
from tidings.scheduled_posts.lifecycle import Actor
from tidings.schemas import ERROR_RESPONSES, document_nul_in_url, refuse_nul_in_url
from tidings.state import AppState
from tidings.timefmt import utcnow
from tidings.web import pages as web_pages
from tidings.workspaces.endpoints import links_router, members_router, workspace_router

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
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())

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

    @app.exception_handler(PoolTimeout)
    async def _pool_full(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every connection is in use (a burst, or slow queries): a moment's wait, not a bug.
        log.warning("no free database connection: %s", exc)
        return JSONResponse(
            {"message": "the database is busy; try again shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

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


#: Who may read /metrics besides the holder of TIDINGS_METRICS_TOKEN.
METRICS_READERS = frozenset({Actor.OWNER, Actor.ADMIN, Actor.API_KEY})


def authorize_metrics(principal: Principal) -> None:
    """Refuse /metrics to anyone but an owner or admin signed in, or an API key (whose
    `metrics:read` scope the authentication has already checked, as for any route).

    The metrics describe the whole instance, not one workspace: people who manage a
    workspace may read them, editors, reviewers and viewers may not.
    """
    if principal.actor not in METRICS_READERS:
        raise Forbidden(
            "reading metrics needs an owner or admin, an API key with metrics:read, or the "
            "metrics token"
        )


_metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="TIDINGS_METRICS_TOKEN (or an API key's token).",
)


async def metrics_reader(
    request: Request,
    session: SessionDep,
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_metrics_bearer)],
) -> None:
    """Let a scraper in with `Authorization: Bearer <TIDINGS_METRICS_TOKEN>` (compared in
    constant time), else authenticate as any route does and ask `authorize_metrics`."""
    token = state.settings.metrics_token
    if token is not None and bearer is not None:
        expected = token.get_secret_value().encode()
        if hmac.compare_digest(bearer.credentials.encode(), expected):
            return
    principal = await current_principal(
        request,
        session,
        state,
        x_api_key=request.headers.get("x-api-key"),
        bearer=bearer,
        cookie=request.cookies.get(SESSION_COOKIE),
    )
    authorize_metrics(principal)


class TidingsAPI(FastAPI):
    """FastAPI with the security headers outside everything else, so that even the answer
    to an unexpected error (rendered by the outermost, server-error layer) carries them."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


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
            settings.resolved_database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
        )
        state = AppState(
            settings=settings,
            db=db,
            box=SecretBox(settings.resolved_secret_key),
            fetch_gate=FetchGate(settings.fetch_max_concurrent, settings.dry_runs_per_minute),
        )
        app.state.tidings = state
        # Loading the CA bundle blocks for a moment: once here, not in a request's time.
        _ = settings.fetch_policy.ssl_context
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

    app = TidingsAPI(
        title="Tidings",
        version=__version__,
        description="Compose once, approve, publish at an exact instant to many channels.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(refuse_nul_in_url)],
        # Served by install_docs, with the nonce their policy asks for.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app, title=app.title)
    generate_openapi = app.openapi
    app.openapi = lambda: document_nul_in_url(generate_openapi())  # type: ignore[method-assign]
    # Trailing slashes are redirected by the 404 handler, which sees the path as sent.
    app.router.redirect_slashes = False
    install_error_handlers(app)
    if settings.trusted_proxy_list:
        # The client's address and scheme as the reverse proxy saw them (sign-ins are
        # throttled per address), believed only when the proxy itself is named.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(auth_router)
    app.include_router(channels_router)
    app.include_router(platform_apps_router)
    app.include_router(scheduled_posts_router)
    app.include_router(sandbox_router)
    app.include_router(api_keys_router)
    app.include_router(members_router)
    app.include_router(workspace_router)
    app.include_router(links_router)
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
        # Whatever goes wrong (no connection free in the pool, a lock, a server gone), the
        # answer is a 503 that says so, in time: a health check that hangs is no answer.
        waited = settings.health_timeout_seconds
        try:
            async with asyncio.timeout(waited), state.db.transaction(write=False) as session:
                report = await engine_report(session, utcnow(), fresh_within=max_age)
        except TimeoutError:
            cause = f"no answer within {waited:g} s (connections exhausted or locked)"
            return JSONResponse({"status": "unavailable", "database": cause}, status_code=503)
        except Exception as exc:
            log.warning("health check: the database failed", exc_info=exc)
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

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        dependencies=[Depends(metrics_reader)],
    )
    async def metrics(state: StateDep, session: SessionDep) -> Response:
        """Prometheus metrics: the queue as the database sees it, and this process's worker
        (for the metrics token, an owner or admin, or an API key with `metrics:read`)."""
        max_age = timedelta(seconds=state.settings.health_max_heartbeat_age_seconds)
        report = await engine_report(session, utcnow(), fresh_within=max_age)
        return Response(state.metrics.render(report), media_type=CONTENT_TYPE_LATEST)

    return app
