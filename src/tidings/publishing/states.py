"""The engine's pure rules: how a target's state may move, what a post's status is given
its targets, and what to do after a failed attempt. No I/O: the worker asks, then acts."""

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tidings.scheduled_posts.lifecycle import PostStatus


class TargetStatus(StrEnum):
    """The publish state of one channel of a post (set once the post is scheduled)."""

    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    PUBLISHED = "PUBLISHED"
    # Handed to the account's owner to finish in the platform's app (TikTok's inbox): done
    # on Tidings' side, but not a live post.
    SENT_TO_INBOX = "SENT_TO_INBOX"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # the outcome cannot be determined: a person decides
    CANCELED = "CANCELED"


T = TargetStatus

#: Where each target state may go. PUBLISHING → PENDING is a retry being scheduled;
#: PENDING → FAILED is a missed window; UNKNOWN leaves only by a person's decision.
TARGET_MOVES: dict[TargetStatus, frozenset[TargetStatus]] = {
    T.PENDING: frozenset({T.PUBLISHING, T.CANCELED, T.FAILED}),
    T.PUBLISHING: frozenset({T.PUBLISHED, T.SENT_TO_INBOX, T.FAILED, T.UNKNOWN, T.PENDING}),
    T.UNKNOWN: frozenset({T.PUBLISHED, T.PENDING}),
    T.PUBLISHED: frozenset(),
    T.SENT_TO_INBOX: frozenset(),
    T.FAILED: frozenset(),
    T.CANCELED: frozenset(),
}

UNFINISHED = frozenset({T.PENDING, T.PUBLISHING, T.UNKNOWN})
#: What counts as done well: live, or in the owner's inbox as asked.
DELIVERED = frozenset({T.PUBLISHED, T.SENT_TO_INBOX})


class TargetMoveRefused(Exception):
    """A target state change the engine must never make."""


def move_target(current: TargetStatus, new: TargetStatus) -> TargetStatus:
    if new not in TARGET_MOVES[current]:
        raise TargetMoveRefused(f"a target cannot go from {current.value} to {new.value}")
    return new


def post_status(targets: Iterable[TargetStatus], *, started: bool = False) -> PostStatus:
    """A scheduled post's status, derived from its targets' states alone.

    Nothing started yet (`started`: no platform call was ever made): SCHEDULED. Anything
    still pending, in flight or unknown after that: PUBLISHING. Otherwise, over the targets
    that were not cancelled: all published (or sent to an inbox, as asked) is PUBLISHED,
    all failed is FAILED, a mix is PARTIALLY_PUBLISHED.
    """
    states = list(targets)
    if not states:
        raise ValueError("a scheduled post has at least one target")
    live = [s for s in states if s is not T.CANCELED]
    if not live:
        return PostStatus.CANCELED
    if not started and all(s is T.PENDING for s in live):
        return PostStatus.SCHEDULED
    if any(s in UNFINISHED for s in live):
        return PostStatus.PUBLISHING
    if all(s in DELIVERED for s in live):
        return PostStatus.PUBLISHED
    if all(s is T.FAILED for s in live):
        return PostStatus.FAILED
    return PostStatus.PARTIALLY_PUBLISHED


class ErrorKind(StrEnum):
    """How a connector classifies a failed platform call."""

    TRANSIENT = "transient"  # retry with backoff
    RATE_LIMITED = "rate_limited"  # retry when the platform's window resets
    AUTH = "auth"  # refresh the token once, else the channel needs reconnecting
    PERMANENT = "permanent"  # fail now


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in delay.

    The delay after attempt n (1-based) is drawn from [cap/2, cap] with
    cap = min(max_delay, base_delay · 2^(n-1)): never zero, never a thundering herd.
    Rate-limited attempts wait for the platform instead and are bounded by `max_rate_limited`.
    """

    max_attempts: int = 5
    base_delay: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(minutes=5)
    max_rate_limited: int = 20

    def backoff(self, attempt: int, draw: Callable[[], float] = random.random) -> timedelta:
        cap = min(self.max_delay, self.base_delay * (1 << max(0, attempt - 1)))
        return cap / 2 + (cap / 2) * draw()


class Next(StrEnum):
    RETRY = "retry"
    REFRESH_AND_RETRY = "refresh_and_retry"
    FAIL = "fail"
    NEEDS_RECONNECT = "needs_reconnect"


@dataclass(frozen=True)
class Decision:
    next: Next
    at: datetime | None = None
    reason: str = ""


def after_failure(
    kind: ErrorKind,
    *,
    attempts: int,
    rate_limited_attempts: int,
    refreshed: bool,
    now: datetime,
    retry_at: datetime | None,
    policy: RetryPolicy,
    draw: Callable[[], float] = random.random,
) -> Decision:
    """What the worker does after attempt number `attempts` failed with an error of `kind`."""
    if kind is ErrorKind.PERMANENT:
        return Decision(Next.FAIL, reason="the platform refused the post")
    if kind is ErrorKind.AUTH:
        if refreshed:
            return Decision(Next.NEEDS_RECONNECT, reason="still unauthorised after a refresh")
        return Decision(Next.REFRESH_AND_RETRY, at=now, reason="token refreshed once")
    if kind is ErrorKind.RATE_LIMITED:
        if rate_limited_attempts >= policy.max_rate_limited:
            return Decision(Next.FAIL, reason=f"rate limited {rate_limited_attempts} times")
        when = retry_at if retry_at is not None and retry_at > now else now
        return Decision(Next.RETRY, at=when + policy.backoff(1, draw) / 10)
    if attempts >= policy.max_attempts:
        return Decision(Next.FAIL, reason=f"gave up after {attempts} attempts")
    return Decision(Next.RETRY, at=now + policy.backoff(attempts, draw))
