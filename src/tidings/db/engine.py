"""Engines and session makers for SQLite (embedded) and PostgreSQL (scale-out)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table, event, insert, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

#: The LISTEN/NOTIFY channel that tells workers on other processes that a task was added.
TASKS_CHANNEL = "tidings_tasks"
#: Set in `session.info` by whoever adds a task: the commit then notifies the workers.
NOTIFY_WORKERS = "tidings.notify_workers"

T = TypeVar("T")
#: A unit of work for `Database.grouped`: runs inside a transaction it shares with others.
Operation = Callable[[AsyncSession], Awaitable[T]]

_QUEUED_ROWS = "tidings.queued_rows"


async def _write_queued_rows(session: AsyncSession) -> None:
    queued: dict[Table, list[dict[str, Any]]] = session.info.pop(_QUEUED_ROWS, {})
    for table, rows in queued.items():
        await session.execute(insert(table), rows)


_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> URL:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async driver for them."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string()!r}: use postgresql or sqlite"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, foreign keys, and transactions begun the way we ask.

    pysqlite's own implicit BEGIN is turned off so that write transactions can start with
    `BEGIN IMMEDIATE`: a writer then waits for the lock up front instead of failing with
    "database is locked" when it upgrades a read snapshot that another writer has moved past.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine(
    url: str, *, sqlite_busy_timeout_ms: int = 30_000, pool_timeout_seconds: float = 30
) -> AsyncEngine:
    """An async engine for `url`, tuned for its backend; a connection not free within
    `pool_timeout_seconds` is a `sqlalchemy.exc.TimeoutError` (the API answers 503)."""
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, pool_timeout=pool_timeout_seconds)
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    return create_async_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=pool_timeout_seconds,
    )


@dataclass
class Database:
    """The engine and the two session makers a process uses.

    `reader` sessions are for requests that only read; `writer` sessions start their
    transaction as a writer on SQLite (on PostgreSQL both are the same).
    """

    engine: AsyncEngine
    reader: async_sessionmaker[AsyncSession]
    writer: async_sessionmaker[AsyncSession]
    # SQLite has one writer at a time. Queueing this process's writers on a lock keeps them
    # in arrival order; left to SQLite's busy handler they would sleep and retry unfairly.
    write_lock: asyncio.Lock | None = None
    _group: list[tuple[Operation[Any], "asyncio.Future[Any]"]] = field(default_factory=list)
    _group_flusher: "asyncio.Task[None] | None" = None

    @classmethod
    def connect(
        cls, url: str, *, sqlite_busy_timeout_ms: int = 30_000, pool_timeout_seconds: float = 30
    ) -> "Database":
        engine = create_engine(
            url,
            sqlite_busy_timeout_ms=sqlite_busy_timeout_ms,
            pool_timeout_seconds=pool_timeout_seconds,
        )
        write_bind = engine
        if engine.dialect.name == "sqlite":
            write_bind = engine.execution_options(sqlite_begin="IMMEDIATE")
        return cls(
            engine=engine,
            reader=async_sessionmaker(engine, expire_on_commit=False),
            writer=async_sessionmaker(write_bind, expire_on_commit=False),
            write_lock=asyncio.Lock() if engine.dialect.name == "sqlite" else None,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction for a request, job or command: commit on success, else roll back."""
        async with AsyncExitStack() as stack:
            if write and self.write_lock is not None:
                await stack.enter_async_context(self.write_lock)
            session = await stack.enter_async_context((self.writer if write else self.reader)())
            try:
                yield session
                if session.info.pop(NOTIFY_WORKERS, False) and not self.is_sqlite:
                    # Delivered by PostgreSQL only if, and when, the transaction commits.
                    await session.execute(text(f"NOTIFY {TASKS_CHANNEL}"))
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def grouped(self, operation: Operation[T]) -> T:
        """Run `operation` in a write transaction shared with whatever else is queued (group
        commit), and return its result once that transaction has committed.

        Many small writes that arrive together (say, hundreds of concurrent calls each
        recording one row) then cost one transaction instead of hundreds. If the shared
        transaction fails, each operation is run again in a transaction of its own, so one
        bad operation fails only its own caller. The write happens even if the caller stops
        waiting, like a request already sent.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._group.append((operation, future))
        if self._group_flusher is None or self._group_flusher.done():
            self._group_flusher = asyncio.create_task(self._flush_group())
        return await asyncio.shield(future)

    async def grouped_insert(self, table: Table, row: dict[str, Any]) -> None:
        """Insert one row through `grouped`: the rows of a group go in one executemany."""

        async def queue(session: AsyncSession) -> None:
            session.info.setdefault(_QUEUED_ROWS, {}).setdefault(table, []).append(row)

        await self.grouped(queue)

    async def _flush_group(self) -> None:
        while self._group:
            batch, self._group = self._group, []
            try:
                async with self.transaction() as session:
                    results = [await operation(session) for operation, _ in batch]
                    await _write_queued_rows(session)
            except Exception:
                for operation, future in batch:
                    try:
                        async with self.transaction() as session:
                            result = await operation(session)
                            await _write_queued_rows(session)
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
