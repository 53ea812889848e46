"""Write a session's new and changed objects with a few executemany statements.

The ORM's unit of work spends on the order of a hundred microseconds per object it flushes
(history, dependency sorting, version checks, one statement per differing column set).
The publishing engine changes thousands of targets, attempts and tasks per transaction, so
its hot paths call `write_changes` instead: rows are grouped by table and by the columns
that changed, each group is one executemany, and the objects are then detached so that the
commit has nothing left to flush.

Only for transactions that already hold the rows they change (PostgreSQL `FOR UPDATE`, or
SQLite's single writer): the ORM's optimistic `version_id_col` check is not repeated here,
although a changed version column is written like any other.
"""

import functools
from typing import Any

from sqlalchemy import Table, and_, bindparam, insert, inspect, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper

from tidings.db.base import Base

Group = tuple[Table, tuple[str, ...]]


@functools.cache
def _columns(mapper: Mapper[Any]) -> dict[str, str]:
    """Attribute key -> column key, for every column attribute of a mapped class."""
    return {prop.key: prop.columns[0].key for prop in mapper.column_attrs}


@functools.cache
def _insert_order() -> dict[Table, int]:
    """Tables in dependency order (parents first), sorted once."""
    return {table: n for n, table in enumerate(Base.metadata.sorted_tables)}


async def write_changes(session: AsyncSession) -> None:
    """Insert the session's new objects and update its changed ones, then detach them all.

    Deleted objects, if any, are left to the ORM's own flush.
    """
    sync = session.sync_session
    inserts: dict[Group, list[dict[str, Any]]] = {}
    updates: dict[Group, list[dict[str, Any]]] = {}
    for obj in sync.new:
        state = inspect(obj)
        values = {
            column: state.dict[attr]
            for attr, column in _columns(state.mapper).items()
            if attr in state.dict
        }
        inserts.setdefault((state.mapper.local_table, tuple(sorted(values))), []).append(values)
    for obj in sync.dirty:
        state = inspect(obj)
        # `committed_state` holds the attributes set since the load: the changed ones.
        columns = _columns(state.mapper)
        changed = {
            columns[attr]: state.dict.get(attr) for attr in state.committed_state if attr in columns
        }
        if not changed:
            continue
        table = state.mapper.local_table
        for column, value in zip(
            (c.key for c in state.mapper.primary_key),
            state.mapper.primary_key_from_instance(obj),
            strict=True,
        ):
            changed[f"pk_{column}"] = value
        updates.setdefault((table, tuple(sorted(changed))), []).append(changed)
    if not inserts and not updates:
        return
    # Through the connection, not the session: a session would autoflush the same objects.
    connection = await session.connection()
    order = _insert_order()
    for (table, _), rows in sorted(inserts.items(), key=lambda item: order.get(item[0][0], 0)):
        await connection.execute(insert(table), rows)
    for (table, keys), rows in updates.items():
        statement = (
            update(table)
            .where(
                and_(
                    *(
                        table.c[key[3:]] == bindparam(key, type_=table.c[key[3:]].type)
                        for key in keys
                        if key.startswith("pk_")
                    )
                )
            )
            .values(
                {
                    table.c[key]: bindparam(f"v_{key}", type_=table.c[key].type)
                    for key in keys
                    if not key.startswith("pk_")
                }
            )
        )
        params = [
            {(k if k.startswith("pk_") else f"v_{k}"): v for k, v in row.items()} for row in rows
        ]
        await connection.execute(statement, params)
    sync.expunge_all()
