"""Keyset paging, one way for every list: `limit`, an opaque `cursor`, `nextCursor`.

A page is the rows after the cursor's key, in key order, one more than asked for (to
know whether there is a next page). Stable under inserts and deletes between pages: a row
is never shown twice, and a row that stays is never skipped.
"""

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar, TypeVarTuple

from fastapi import Query
from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tidings.errors import RequestShapeError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_PAGE = 100

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
PageCursor = Annotated[
    str | None, Query(max_length=500, description="The `nextCursor` of the previous page.")
]


def encode_cursor(last_key: str) -> str:
    raw = json.dumps({"after": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = value["after"]
        if not isinstance(after, str) or not after:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise RequestShapeError(
            "cursor is not one this API returned; pass nextCursor back unchanged",
            ["query", "cursor"],
            "cursor_invalid",
        ) from None


def keyset(
    query: Select[*Ts],
    key: ColumnElement[str] | InstrumentedAttribute[str],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> Select[*Ts]:
    """`query` narrowed to the page after `cursor`, ordered by `key` (unique per row)."""
    if cursor is not None:
        after = decode_cursor(cursor)
        query = query.where(key < after if descending else key > after)
    return query.order_by(key.desc() if descending else key).limit(limit + 1)


def page_of(
    rows: Sequence[T], limit: int, key_of: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The page among `rows` (a `keyset` query's result) and the cursor of the next one."""
    if len(rows) > limit:
        page = list(rows[:limit])
        return page, encode_cursor(key_of(page[-1]))
    return list(rows), None


async def entity_page(
    session: AsyncSession,
    query: Select[T],
    key: InstrumentedAttribute[str],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[T], str | None]:
    """The page after `cursor` of the rows `query` selects (one entity each), ordered by
    their attribute `key` (unique per row, such as the id), and the next page's cursor."""
    paged = keyset(query, key, limit=limit, cursor=cursor, descending=descending)
    rows = (await session.execute(paged)).scalars().all()
    return page_of(rows, limit, lambda row: str(getattr(row, key.key)))


async def every_page(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
) -> list[T]:
    """All the items of a paged list, page by page, for lists bounded some other way (a
    workspace's channels by the cap, its members, one post's history)."""
    items, cursor = await fetch(None)
    while cursor is not None:
        more, cursor = await fetch(cursor)
        items.extend(more)
    return items
