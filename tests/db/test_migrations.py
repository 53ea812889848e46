"""Migrations build the schema the models describe, on both backends, and can be undone."""

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from tidings.db import migrate
from tidings.db.engine import Database
from tidings.db.models import metadata


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    db = Database.connect(database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    # alembic runs its own event loop, so it is driven from a worker thread here.
    await asyncio.to_thread(migrate.downgrade, database_url, "base")
    db = Database.connect(database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await asyncio.to_thread(migrate.upgrade, database_url)
        async with db.engine.connect() as conn:
            assert {t.name for t in metadata.sorted_tables} <= await conn.run_sync(_tables)
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            assert version is not None
    finally:
        await db.dispose()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database.connect(url)
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.dispose()
