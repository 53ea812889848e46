"""Alembic environment: async engines on both backends, batch mode for SQLite."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from tidings.db.engine import create_engine
from tidings.db.models import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


url = config.attributes.get("database_url")
if url is None:
    raise RuntimeError("run migrations with `tidings migrate` (TIDINGS_DATABASE_URL)")
asyncio.run(_run_async(url))
