"""Pausing CPython's cyclic garbage collector while a burst of due work is started.

Starting ten thousand calls due at the same instant allocates millions of objects that live
until their calls end, and the cyclic collector keeps walking them: about a quarter of the
time a burst takes went to collections that found almost nothing (reference counting frees
nearly everything already). So a worker pauses the collector from the first claim of a burst
until it has caught up, and at most for `longest`, after which collections run as usual until
the next burst. Memory stays bounded by what one burst holds anyway.
"""

import gc


class GcPause:
    def __init__(self, longest: float | None) -> None:
        #: Seconds one pause may last; None never pauses.
        self.longest = longest
        self._since: float | None = None  # when this pause began
        self._over = False  # the pause outlasted `longest`: collecting again until idle

    @property
    def paused(self) -> bool:
        return self._since is not None and not self._over

    def busy(self, now: float) -> None:
        """A claim found work (`now` in seconds, monotonic)."""
        if self.longest is None:
            return
        if self._since is None:
            if not gc.isenabled():
                return  # someone else manages the collector: leave it to them
            gc.disable()
            self._since, self._over = now, False
        elif not self._over and now - self._since > self.longest:
            gc.enable()
            self._over = True

    def idle(self) -> None:
        """The worker caught up (or is stopping): collect as usual again."""
        if self._since is None:
            return
        if not self._over:
            gc.enable()
        self._since, self._over = None, False
