"""/metrics on an address of its own (`TIDINGS_METRICS_BIND`), for a scraper on a private
network: served beside `tidings serve` or `tidings worker` by a second server in the same
process, without credentials, and answering nothing else."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tidings.db.engine import Database
from tidings.headers import SecurityHeaders
from tidings.publishing.health import engine_report
from tidings.publishing.metrics import EngineMetrics
from tidings.timefmt import utcnow


@dataclass(frozen=True)
class MetricsSource:
    """Where the numbers come from: the database (the queue) and this process's counters."""

    db: Database
    metrics: EngineMetrics
    max_heartbeat_age: timedelta


def scrape_app(source: Callable[[], MetricsSource | None]) -> SecurityHeaders:
    """The app of the metrics address: `GET /metrics`, or `503` while the process starts."""

    async def metrics(_: Request) -> Response:
        found = source()
        if found is None:
            return JSONResponse({"message": "starting; try again"}, status_code=503)
        async with found.db.transaction(write=False) as session:
            report = await engine_report(session, utcnow(), fresh_within=found.max_heartbeat_age)
        return Response(found.metrics.render(report), media_type=CONTENT_TYPE_LATEST)

    async def refused(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return JSONResponse({"message": "only GET /metrics is served here"}, status_code=status)

    app = Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"])],
        exception_handlers={HTTPException: refused},
    )
    return SecurityHeaders(app)


def parse_bind(bind: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as uvicorn takes it."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


class SideServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to the main one: it stops when
    told (`should_exit`), after the main server or the worker has."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def side_server(bind: str, app: SecurityHeaders) -> SideServer:
    host, port = parse_bind(bind)
    return SideServer(uvicorn.Config(app, host=host, port=port, log_level="warning"))
