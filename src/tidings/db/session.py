"""The per-request transaction: one session, committed when the endpoint returns."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.state import AppState

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: `openapi_extra` of a POST route that writes little or nothing (the composer's check): its
#: transaction starts as a reader, so on SQLite it does not hold the write lock (and every
#: writer behind it). A route that waits on the network takes no `SessionDep` at all (see
#: `PrincipalApart`): it opens short transactions of its own around the wait.
READ_MOSTLY = {"x-read-mostly": True}
#: `openapi_extra` of a GET route that writes (an OAuth callback: the browser comes back
#: with a GET).
WRITES = {"x-writes": True}


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.tidings
    return state


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Open the request's transaction; commit after the endpoint, roll back on any error.

    Used with `scope="function"`, so the commit happens before the response is sent: a
    client never sees a success that was not committed.
    """
    db = app_state(request).db
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    write = bool(extra.get("x-writes")) or (
        request.method not in _READ_METHODS and not extra.get("x-read-mostly")
    )
    async with db.transaction(write=write) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
StateDep = Annotated[AppState, Depends(app_state)]
