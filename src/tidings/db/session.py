"""The per-request transaction: one session, committed when the endpoint returns."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.db.engine import Operation
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

_HOLDS_WRITE_LOCK = "tidings.holds_write_lock"
_IF_ROLLED_BACK = "tidings.if_rolled_back"


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
    pending: list[Operation[Any]] = []  # see `if_rolled_back`
    try:
        async with db.transaction(write=write) as session:
            session.info[_HOLDS_WRITE_LOCK] = write and db.is_sqlite
            session.info[_IF_ROLLED_BACK] = pending
            yield session
    except Exception:
        for operation in pending:
            async with db.transaction() as again:
                await operation(again)
        raise


def holds_write_lock(session: AsyncSession) -> bool:
    """Whether the request's transaction is a writer on SQLite: it then holds the write
    lock, so no other transaction of this process can write until it ends."""
    return bool(session.info.get(_HOLDS_WRITE_LOCK, False))


def if_rolled_back(session: AsyncSession, operation: Operation[Any]) -> None:
    """Run `operation` in a transaction of its own if the request's is rolled back: for a
    write that must stay even when the request fails (a signature spent)."""
    session.info.setdefault(_IF_ROLLED_BACK, []).append(operation)


SessionDep = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
StateDep = Annotated[AppState, Depends(app_state)]
