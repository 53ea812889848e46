"""The per-request transaction: one session, committed when the endpoint returns."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.state import AppState

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.tidings
    return state


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Open the request's transaction; commit after the endpoint, roll back on any error.

    Used with `scope="function"`, so the commit happens before the response is sent: a
    client never sees a success that was not committed.
    """
    db = app_state(request).db
    async with db.transaction(write=request.method not in _READ_METHODS) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
StateDep = Annotated[AppState, Depends(app_state)]
