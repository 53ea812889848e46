"""A request that finds every database connection in use waits a bounded time, then is
answered `503 {"message"}` with `Retry-After` (not a 500), and the next one, once a
connection is free, is served: on both databases."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.world import World
from tidings.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"database_pool_timeout_seconds": 0.3})


async def test_no_free_connection_is_503_then_served(world: World) -> None:
    pool = world.db.engine.pool
    held: list[AsyncConnection] = []
    try:
        for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
            connection = await world.db.engine.connect()
            await connection.execute(text("SELECT 1"))
            held.append(connection)
        busy = await world.api().get("/channels")
        assert busy.status_code == 503
        assert busy.json() == {"message": "the database is busy; try again shortly"}
        assert busy.headers["retry-after"] == "1"
    finally:
        for connection in held:
            await connection.close()
    served = await world.api().get("/channels")
    assert served.status_code == 200, served.text
    assert [c["id"] for c in served.json()["data"]] == [world.channel_id]
