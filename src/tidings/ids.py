"""Prefixed, time-sortable identifiers (`post_01J…`, `ch_01J…`)."""

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
# Every pair of digits, so that a 26-digit ULID takes 13 lookups (ids are made by the
# thousand when a burst of posts is due).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def _encode(value: int, length: int) -> str:
    """`value` as `length` Crockford base32 digits (`length` even)."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(5 * length - 10, -1, -10))


def new_id(prefix: str) -> str:
    """A ULID with a type prefix: 48 bits of milliseconds then 80 random bits.

    Within one process identifiers are strictly increasing (the random part is
    incremented when the millisecond repeats), so ordering by id is creation order.
    """
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            random_part = (_last_random + 1) & ((1 << 80) - 1)
        else:
            random_part = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = now_ms, random_part
    return f"{prefix}_{_encode((now_ms << 80) | random_part, 26)}"
