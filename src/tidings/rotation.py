"""Rotating the secret key: every value sealed at rest is sealed again under the newest key
of the ring, in batches, so that the older keys can then be dropped.

Where sealed values live is one table (`SEALED`); `tidings secrets rotate` and
`tidings secrets drop-old` are its only users. Each batch is a transaction of its own, so a
rotation of many rows holds no lock for long and can be run again after an interruption:
a value already under the newest key is counted as current and left as it is.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from tidings.auth.models import ApiKey
from tidings.channels.models import Channel, PendingConnection, PlatformApp
from tidings.config import PRIVATE_FILE_MODE
from tidings.crypto import SecretBox
from tidings.db.engine import Database


@dataclass(frozen=True)
class SealedColumn:
    """A column holding one sealed value per row (or None)."""

    name: str
    column: InstrumentedAttribute[Any]
    keys: tuple[InstrumentedAttribute[Any], ...]


#: Every column that holds a value sealed with the secret key.
SEALED: tuple[SealedColumn, ...] = (
    SealedColumn("api_keys.secret_encrypted", ApiKey.secret_encrypted, (ApiKey.id,)),
    SealedColumn("channels.credentials", Channel.credentials, (Channel.id,)),
    SealedColumn(
        "platform_apps.client_secret",
        PlatformApp.client_secret,
        (PlatformApp.workspace_id, PlatformApp.platform),
    ),
)
#: A consent waiting for its accounts to be chosen keeps each account's credentials sealed
#: inside its JSON (`accounts[*].credentials`, the Fernet token as text).
PENDING_CONNECTIONS = "pending_connections.accounts"


@dataclass
class Tally:
    """What a pass over one place found: values already under the newest key (`current`),
    values only an older key opens (`older`), of which `resealed` were sealed again now and
    `changed` were changed by someone else meanwhile (left as that change made them), and
    values no key of the ring opens (`unreadable`)."""

    current: int = 0
    older: int = 0
    resealed: int = 0
    changed: int = 0
    unreadable: int = 0

    def add(self, other: "Tally") -> None:
        for name in _TALLY_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _TALLY_FIELDS}


_TALLY_FIELDS = ("current", "older", "resealed", "changed", "unreadable")


@dataclass
class Report:
    """A rotation's counts, per place and in all."""

    places: dict[str, Tally] = field(default_factory=dict)

    def total(self) -> Tally:
        total = Tally()
        for tally in self.places.values():
            total.add(tally)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "places": {name: tally.as_dict() for name, tally in self.places.items()},
            "total": self.total().as_dict(),
        }


def _after(keys: tuple[InstrumentedAttribute[Any], ...], last: tuple[Any, ...]) -> Any:
    """Rows whose primary key comes after `last` (keyset paging, any number of columns)."""
    clauses = []
    for i, column in enumerate(keys):
        equal = [keys[j] == last[j] for j in range(i)]
        clauses.append(and_(*equal, column > last[i]))
    return or_(*clauses)


def _classify(box: SecretBox, sealed: bytes, tally: Tally) -> bytes | None:
    """The value re-sealed under the newest key, or None when it needs (or allows) nothing."""
    if box.opens_with_newest(sealed):
        tally.current += 1
        return None
    resealed = box.reseal(sealed)
    if resealed is None:
        tally.unreadable += 1
    else:
        tally.older += 1
    return resealed


async def _reseal_column(
    db: Database, box: SecretBox, place: SealedColumn, batch_size: int, *, write: bool
) -> Tally:
    tally = Tally()
    last: tuple[Any, ...] | None = None
    while True:
        async with db.transaction(write=write) as session:
            query = select(*place.keys, place.column).order_by(*place.keys).limit(batch_size)
            if last is not None:
                query = query.where(_after(place.keys, last))
            rows = (await session.execute(query)).all()
            for row in rows:
                *key, sealed = row
                if sealed is None:
                    continue
                resealed = _classify(box, sealed, tally)
                if resealed is None or not write:
                    continue
                # Only if nobody changed it meanwhile (a worker renewing a token seals anew).
                match = [c == v for c, v in zip(place.keys, key, strict=True)]
                done = await session.execute(
                    update(place.column.class_)
                    .where(*match, place.column == sealed)
                    .values({place.column.key: resealed})
                )
                if getattr(done, "rowcount", 0) == 1:
                    tally.resealed += 1
                else:
                    tally.changed += 1
        if len(rows) < batch_size:
            return tally
        last = tuple(rows[-1][: len(place.keys)])


def _reseal_accounts(
    box: SecretBox, accounts: list[dict[str, str]], tally: Tally
) -> list[dict[str, str]] | None:
    """The accounts with their credentials re-sealed, or None if none needed it."""
    out, touched = [], False
    for account in accounts:
        sealed = account.get("credentials")
        resealed = _classify(box, sealed.encode(), tally) if isinstance(sealed, str) else None
        if resealed is None:
            out.append(account)
            continue
        out.append({**account, "credentials": resealed.decode()})
        touched = True
    return out if touched else None


async def _reseal_pending(db: Database, box: SecretBox, batch_size: int, *, write: bool) -> Tally:
    tally = Tally()
    last: str | None = None
    while True:
        async with db.transaction(write=write) as session:
            query = (
                select(PendingConnection.token_hash, PendingConnection.accounts)
                .order_by(PendingConnection.token_hash)
                .limit(batch_size)
            )
            if last is not None:
                query = query.where(PendingConnection.token_hash > last)
            rows = (await session.execute(query)).all()
            for token_hash, accounts in rows:
                found = Tally()
                renewed = _reseal_accounts(box, accounts, found)
                if renewed is not None and write:
                    done = await session.execute(
                        update(PendingConnection)
                        .where(PendingConnection.token_hash == token_hash)
                        .values(accounts=renewed)
                    )
                    # Chosen (and deleted) meanwhile: nothing left to re-seal.
                    if getattr(done, "rowcount", 0) == 1:
                        found.resealed = found.older
                    else:
                        found.changed = found.older
                tally.add(found)
        if len(rows) < batch_size:
            return tally
        last = rows[-1][0]


async def reseal_all(db: Database, box: SecretBox, *, batch_size: int = 500) -> Report:
    """Seal every sealed value again under the newest key of `box`'s ring, in batches."""
    return await _pass(db, box, batch_size, write=True)


async def survey(db: Database, box: SecretBox, *, batch_size: int = 500) -> Report:
    """Count, changing nothing, the values under the newest key, under an older one (these
    keep the older keys needed) and under none."""
    return await _pass(db, box, batch_size, write=False)


async def _pass(db: Database, box: SecretBox, batch_size: int, *, write: bool) -> Report:
    report = Report()
    for place in SEALED:
        report.places[place.name] = await _reseal_column(db, box, place, batch_size, write=write)
    report.places[PENDING_CONNECTIONS] = await _reseal_pending(db, box, batch_size, write=write)
    return report


def write_key_ring(path: Path, keys: list[str]) -> None:
    """Replace the data directory's key ring with `keys` (newest first), all at once: a
    process reading it meanwhile sees the old ring or the new one, never half of one."""
    draft = path.with_name(path.name + ".new")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(keys) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(draft, path)
