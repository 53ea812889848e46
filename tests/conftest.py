"""Fixtures: every database test runs twice, on SQLite and on PostgreSQL, through real migrations.

PostgreSQL is reached at TIDINGS_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
a fresh database is created for the run and dropped after it. It is required, not optional:
if it cannot be reached the PostgreSQL half of the suite fails.
"""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.world import World
from tidings.app import create_app
from tidings.config import Settings
from tidings.db import migrate
from tidings.db.engine import Database, create_engine
from tidings.db.models import metadata

ADMIN_URL = os.environ.get(
    "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
BACKENDS = ["sqlite", "postgresql"]
#: Where tests' own servers listen, opened to the guarded fetcher.
LOCAL_NETWORKS = "127.0.0.0/8"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "tidings.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def run_apart(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion in a thread of its own: the browser tests' Playwright
    keeps an event loop running in the main thread, where `asyncio.run` is refused."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work()).result()


def postgres_admin(statement: str, url: str = ADMIN_URL) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE) on the server at `url`."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    run_apart(run)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run."""
    name = f"tidings_test_{uuid.uuid4().hex[:10]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    # DELETE, children first: on tables this small it is several times faster than TRUNCATE.
    async def run() -> None:
        db = Database.connect(url)
        try:
            async with db.engine.begin() as conn:
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(table.delete())
        finally:
            await db.dispose()

    run_apart(run)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # No embedded worker: tests that publish run a Worker themselves, so every other test
    # sees tasks exactly as the API left them.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        embedded_worker=False,
        # The media hosts and emulators of the tests are on 127.0.0.1 (tests/test_fetch.py
        # proves the guard itself, without this).
        fetch_allowed_networks=LOCAL_NETWORKS,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app with its lifespan running (engines open, closed after the test)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.tidings.db
    return database


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with no credentials, talking to the app in-process."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tidings.test"
    ) as c:
        yield c


@pytest.fixture
async def world(app: FastAPI) -> AsyncIterator[World]:
    """A workspace with one person per role, an API key and a sandbox channel."""
    async with World.build(app) as w:
        yield w
