"""Single-use links (invitations, password resets): the link carries a random token, and
only its SHA-256 is stored, so a copy of the database cannot be turned back into links."""

import secrets
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tidings.crypto import token_hash

L = TypeVar("L")


def new_token() -> tuple[str, str]:
    """A fresh link token (256 random bits) and its hash."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def link_url(public_url: str, path: str, token: str) -> str:
    """The link to the web app's page at `path` (ending in `/`) for `token`."""
    return f"{public_url.rstrip('/')}{path}{token}"


async def find_by_token(
    session: AsyncSession,
    entity: type[L],
    column: InstrumentedAttribute[str],
    token: str,
    *,
    lock: bool = False,
) -> L | None:
    """The `entity` whose `column` holds the hash of a link's token, if any; with `lock`,
    locked until the transaction ends, so that two uses of one link at once cannot both
    succeed (the second waits, then sees it used)."""
    query = select(entity).where(column == token_hash(token))
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)
