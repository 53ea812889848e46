"""How many platform calls one worker makes at once, per channel and per platform.

A channel's option `max_concurrency` bounds the calls to that channel; the engine's
`platform_limits` (`TIDINGS_PLATFORM_CONCURRENCY`, e.g. `{"instagram": 4}`) bound the calls to
every channel of a platform together. Both are per worker process: with several workers the
bound is the sum of theirs. Tasks beyond a bound are simply not claimed (they stay due, for
this worker's next round or another worker), so one busy channel never holds up the others.
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def channel_limit(options: Mapping[str, Any]) -> int | None:
    """The channel option `max_concurrency`, when it is a positive whole number."""
    raw = options.get("max_concurrency")
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


class Limits:
    def __init__(self, platform_limits: Mapping[str, int]) -> None:
        self.platform_limits = dict(platform_limits)
        self.platform_of: dict[str, str] = {}
        self.channel_limits: dict[str, int | None] = {}
        self.by_channel: Counter[str] = Counter()
        self.by_platform: Counter[str] = Counter()
        self._taken: list[str] | None = None

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """Whatever is taken inside is given back if the block fails (say, its transaction
        rolled back, so the tasks were never claimed)."""
        self._taken = []
        try:
            yield
        except BaseException:
            for channel_id in self._taken:
                self.give(channel_id)
            raise
        finally:
            self._taken = None

    def learn(self, channel_id: str, platform: str, options: Mapping[str, Any]) -> None:
        self.platform_of[channel_id] = platform
        self.channel_limits[channel_id] = channel_limit(options)

    def unknown(self, channel_ids: Iterable[str | None]) -> set[str]:
        return {c for c in channel_ids if c is not None and c not in self.platform_of}

    def has_room(self, channel_id: str | None) -> bool:
        if channel_id is None:
            return True
        limit = self.channel_limits.get(channel_id)
        if limit is not None and self.by_channel[channel_id] >= limit:
            return False
        platform = self.platform_of.get(channel_id)
        platform_limit = self.platform_limits.get(platform) if platform else None
        return platform_limit is None or self.by_platform[platform or ""] < platform_limit

    def take(self, channel_id: str | None) -> None:
        if channel_id is None:
            return
        self.by_channel[channel_id] += 1
        if self._taken is not None:
            self._taken.append(channel_id)
        platform = self.platform_of.get(channel_id)
        if platform is not None:
            self.by_platform[platform] += 1

    def give(self, channel_id: str | None) -> None:
        if channel_id is None:
            return
        self.by_channel[channel_id] -= 1
        platform = self.platform_of.get(channel_id)
        if platform is not None:
            self.by_platform[platform] -= 1

    def saturated(self) -> list[str]:
        """Channels that cannot take one more call now (left out of the next claim)."""
        return [c for c in self.platform_of if not self.has_room(c)]
