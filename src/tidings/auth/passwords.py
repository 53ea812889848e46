"""Password hashes (argon2), computed off the event loop in a small pool of threads.

An argon2 hash takes tens of milliseconds of CPU and 64 MiB of memory by design. Run on the
event loop, a few sign-ins at once stall every other request of the process; run in
unbounded threads, a burst of them takes all the memory. So every hash and check made while
serving goes through `hash_password` / `verify_password`, which queue on a few threads
(argon2-cffi releases the GIL while it works).
"""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: Hashes computed at once by a process; more sign-ins wait their turn, not the event loop.
HASH_THREADS = 4

_hasher = PasswordHasher()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="tidings-argon2")


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the email is unknown, so a miss costs what a wrong password does."""
    return _hasher.hash("tidings-dummy-password")


def hash_password_blocking(password: str) -> str:
    """The hash to store for `password`, computed in the calling thread (for code with no
    event loop to keep free, such as a script or a test fixture)."""
    return _hasher.hash(password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    """The hash to store for `password`, computed on the hashing threads."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`, checked on the hashing threads.

    With no hash (an unknown email) a dummy hash is checked instead and the answer is False:
    the miss takes as long as a wrong password, so timing does not tell which emails exist.
    """
    return await asyncio.get_running_loop().run_in_executor(
        _pool(), _verify, password_hash, password
    )
