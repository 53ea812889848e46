"""Sign-in throttling: a few free attempts per email and per client address, then a lock
that doubles with every further failure.

Counters live in the `sign_in_failures` table, so every process on the same database sees
the same locks (no Redis; the limiter libraries we know keep their counters in Redis,
Memcached or memory, not in SQL). An attempt is counted, in a short transaction of its own,
*before* its password is checked: a failed sign-in then has nothing left to write (its own
transaction rolls back harmlessly), and a burst of parallel guesses cannot all slip past
the check while the first ones are still being hashed. A sign-in that succeeds takes its
count back (`forgive`).

An unknown email is counted exactly like a known one, so the answers never tell which
accounts exist.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import SignInFailure
from tidings.config import Settings
from tidings.db.engine import Database
from tidings.errors import TooManyRequests

#: Longest email an account can have (`users.email`): longer ones share one counter.
_MAX_EMAIL = 320
#: Longer than any IP address (with an IPv6 zone): whatever else a proxy forwards is cut.
_MAX_ADDRESS = 64


class KeyKind(StrEnum):
    """What a counter is kept for; its key is `<kind>:<value>`."""

    EMAIL = "email"
    ADDRESS = "ip"


#: How the refusal names each kind of counter.
_REFUSED_FOR = {KeyKind.EMAIL: "for this email", KeyKind.ADDRESS: "from this address"}


@dataclass(frozen=True)
class SignInPolicy:
    """How many failures each kind of key is allowed before it is locked, and for how long.

    After the `free[kind]`-th failure in a row the key is locked for `first_backoff`, and
    each failure after that doubles the lock, up to `max_backoff`. Attempts refused while
    locked are not counted. A key with no counted attempt for `forget_after` starts again.
    """

    free: dict[KeyKind, int]
    first_backoff: timedelta
    max_backoff: timedelta
    forget_after: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SignInPolicy":
        return cls(
            free={
                KeyKind.EMAIL: settings.sign_in_free_attempts,
                KeyKind.ADDRESS: settings.sign_in_free_attempts_per_address,
            },
            first_backoff=timedelta(seconds=settings.sign_in_first_backoff_seconds),
            max_backoff=timedelta(seconds=settings.sign_in_max_backoff_seconds),
        )

    def lock_after(self, kind: KeyKind, failures: int) -> timedelta | None:
        """How long a key is locked once it has `failures` counted (None: not locked)."""
        beyond = failures - self.free[kind]
        if beyond < 0:
            return None
        # Capped before doubling: 2**60 seconds would overflow a timedelta.
        return min(self.first_backoff * (1 << min(beyond, 40)), self.max_backoff)


@dataclass(frozen=True)
class SignInKeys:
    """The counters one sign-in attempt is charged to."""

    email: str
    address: str

    @classmethod
    def of(cls, email: str, address: str) -> "SignInKeys":
        normalised = email.strip().lower()[:_MAX_EMAIL]
        return cls(
            email=f"{KeyKind.EMAIL}:{normalised}",
            address=f"{KeyKind.ADDRESS}:{address[:_MAX_ADDRESS]}",
        )

    def kinds(self) -> dict[str, KeyKind]:
        # Sorted, so that two attempts lock the same rows in the same order (no deadlock).
        return dict(sorted({self.email: KeyKind.EMAIL, self.address: KeyKind.ADDRESS}.items()))


async def _locked_rows(
    session: AsyncSession, keys: list[str], now: datetime, dialect: str
) -> list[SignInFailure]:
    """The counters of `keys`, created if missing, locked for this transaction (PostgreSQL;
    SQLite's write transactions are serialised already)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(SignInFailure)
        .values([{"key": key, "failures": 0, "updated_at": now} for key in keys])
        .on_conflict_do_nothing()
    )
    rows = (
        await session.execute(
            select(SignInFailure)
            .where(SignInFailure.key.in_(keys))
            .order_by(SignInFailure.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalars()
    return list(rows)


async def count_attempt(
    db: Database, policy: SignInPolicy, keys: SignInKeys, now: datetime
) -> None:
    """Count one sign-in attempt against its email and address, in a transaction of its own,
    or refuse it with 429 (and `Retry-After`) while either is locked."""
    kinds = keys.kinds()
    async with db.transaction() as session:
        rows = await _locked_rows(session, list(kinds), now, db.engine.dialect.name)
        locked = [r for r in rows if r.locked_until is not None and r.locked_until > now]
        if locked:
            until = max(r.locked_until for r in locked if r.locked_until is not None)
            wait = max(1, math.ceil((until - now).total_seconds()))
            names = " and ".join(_REFUSED_FOR[kinds[r.key]] for r in locked)
            refusal = TooManyRequests(
                f"too many failed sign-ins {names}; try again in {wait} "
                + ("second" if wait == 1 else "seconds"),
                retry_after=wait,
            )
        else:
            refusal = None
            for row in rows:
                if row.updated_at <= now - policy.forget_after:
                    row.failures = 0
                row.failures += 1
                row.updated_at = now
                lock = policy.lock_after(kinds[row.key], row.failures)
                row.locked_until = now + lock if lock is not None else None
    # Raised after the commit: the rows just created must not be rolled back with it.
    if refusal is not None:
        raise refusal


async def forgive(
    session: AsyncSession, policy: SignInPolicy, keys: SignInKeys, now: datetime
) -> None:
    """Take back a successful sign-in's count: the email starts afresh; the address only
    loses this one attempt (signing in to one's own account must not wipe the failures
    from an address that guesses at others). Stale counters of anyone are swept here."""
    await session.execute(
        delete(SignInFailure)
        .where(
            (SignInFailure.key == keys.email)
            | (SignInFailure.updated_at <= now - policy.forget_after)
        )
        .execution_options(synchronize_session=False)
    )
    address = (
        await session.execute(
            select(SignInFailure).where(SignInFailure.key == keys.address).with_for_update()
        )
    ).scalar_one_or_none()
    if address is not None:
        address.failures = max(0, address.failures - 1)
        if policy.lock_after(KeyKind.ADDRESS, address.failures) is None:
            address.locked_until = None
    await session.flush()
