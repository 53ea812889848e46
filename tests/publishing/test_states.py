"""The engine's pure rules: target moves, post status from targets, retry decisions."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.publishing.states import (
    TARGET_MOVES,
    Decision,
    ErrorKind,
    Next,
    RetryPolicy,
    TargetMoveRefused,
    TargetStatus,
    after_failure,
    move_target,
    post_status,
)
from tidings.scheduled_posts.lifecycle import PostStatus

T = TargetStatus
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ALLOWED = {
    (T.PENDING, T.PUBLISHING),
    (T.PENDING, T.CANCELED),
    (T.PENDING, T.FAILED),
    (T.PUBLISHING, T.PUBLISHED),
    (T.PUBLISHING, T.SENT_TO_INBOX),
    (T.PUBLISHING, T.FAILED),
    (T.PUBLISHING, T.UNKNOWN),
    (T.PUBLISHING, T.PENDING),
    (T.UNKNOWN, T.PUBLISHED),
    (T.UNKNOWN, T.PENDING),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(T, T)))
def test_target_moves_are_exactly_the_documented_ones(current: T, new: T) -> None:
    if (current, new) in ALLOWED:
        assert move_target(current, new) is new
    else:
        with pytest.raises(TargetMoveRefused, match=f"from {current.value} to {new.value}"):
            move_target(current, new)


def test_published_sent_to_inbox_failed_and_canceled_are_final() -> None:
    final = [T.PUBLISHED, T.SENT_TO_INBOX, T.FAILED, T.CANCELED]
    assert [s for s in T if not TARGET_MOVES[s]] == final


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([T.PENDING], PostStatus.SCHEDULED),
        ([T.PENDING, T.CANCELED], PostStatus.SCHEDULED),
        ([T.PENDING, T.PUBLISHING], PostStatus.PUBLISHING),
        ([T.PENDING, T.PUBLISHED], PostStatus.PUBLISHING),
        ([T.UNKNOWN, T.PUBLISHED], PostStatus.PUBLISHING),
        ([T.PUBLISHED, T.PUBLISHED], PostStatus.PUBLISHED),
        ([T.PUBLISHED, T.CANCELED], PostStatus.PUBLISHED),
        ([T.SENT_TO_INBOX], PostStatus.PUBLISHED),
        ([T.PUBLISHED, T.SENT_TO_INBOX], PostStatus.PUBLISHED),
        ([T.SENT_TO_INBOX, T.FAILED], PostStatus.PARTIALLY_PUBLISHED),
        ([T.FAILED], PostStatus.FAILED),
        ([T.FAILED, T.CANCELED], PostStatus.FAILED),
        ([T.PUBLISHED, T.FAILED], PostStatus.PARTIALLY_PUBLISHED),
        ([T.PUBLISHED, T.FAILED, T.CANCELED], PostStatus.PARTIALLY_PUBLISHED),
        ([T.CANCELED, T.CANCELED], PostStatus.CANCELED),
    ],
)
def test_post_status_from_targets(targets: list[T], expected: PostStatus) -> None:
    assert post_status(targets) is expected


def test_a_post_waiting_for_a_retry_is_still_publishing() -> None:
    assert post_status([T.PENDING, T.PENDING], started=True) is PostStatus.PUBLISHING


def test_a_post_without_targets_has_no_status() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        post_status([])


@given(st.lists(st.sampled_from(list(T)), min_size=1, max_size=12))
def test_post_status_properties(targets: list[T]) -> None:
    status = post_status(targets)
    # Order does not matter.
    assert post_status(list(reversed(targets))) is status
    # A final status only when no target can still change by itself or by a person.
    final = {PostStatus.PUBLISHED, PostStatus.FAILED, PostStatus.PARTIALLY_PUBLISHED}
    unfinished = {T.PENDING, T.PUBLISHING, T.UNKNOWN}
    if status in final:
        assert not unfinished & set(targets)
    # Published means something went out (or to an inbox, as asked); failed means nothing did.
    delivered = {T.PUBLISHED, T.SENT_TO_INBOX}
    if status in (PostStatus.PUBLISHED, PostStatus.PARTIALLY_PUBLISHED):
        assert delivered & set(targets)
    if status is PostStatus.FAILED:
        assert not delivered & set(targets)


POLICY = RetryPolicy(
    max_attempts=4, base_delay=timedelta(seconds=2), max_delay=timedelta(seconds=10)
)


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 1, 2), (2, 2, 4), (3, 4, 8), (4, 5, 10), (9, 5, 10)]
)
def test_backoff_doubles_with_jitter_up_to_the_cap(attempt: int, low: float, high: float) -> None:
    assert POLICY.backoff(attempt, lambda: 0.0) == timedelta(seconds=low)
    assert POLICY.backoff(attempt, lambda: 1.0) == timedelta(seconds=high)


def decide(kind: ErrorKind, **kw: object) -> Decision:
    args: dict[str, object] = {
        "attempts": 1,
        "rate_limited_attempts": 0,
        "refreshed": False,
        "now": NOW,
        "retry_at": None,
        "policy": POLICY,
        "draw": lambda: 0.5,
    }
    args.update(kw)
    return after_failure(kind, **args)  # type: ignore[arg-type]


def test_transient_errors_retry_with_backoff_until_the_attempts_run_out() -> None:
    first = decide(ErrorKind.TRANSIENT, attempts=1)
    assert (first.next, first.at) == (Next.RETRY, NOW + timedelta(seconds=1.5))
    last = decide(ErrorKind.TRANSIENT, attempts=4)
    assert last.next is Next.FAIL
    assert "4 attempts" in last.reason


def test_rate_limits_wait_for_the_platforms_reset() -> None:
    reset = NOW + timedelta(minutes=15)
    d = decide(ErrorKind.RATE_LIMITED, retry_at=reset, attempts=99)
    assert d.next is Next.RETRY
    assert reset <= d.at <= reset + timedelta(seconds=1)
    assert decide(ErrorKind.RATE_LIMITED, rate_limited_attempts=20).next is Next.FAIL


def test_auth_errors_refresh_once_then_need_reconnecting() -> None:
    assert decide(ErrorKind.AUTH).next is Next.REFRESH_AND_RETRY
    assert decide(ErrorKind.AUTH, refreshed=True).next is Next.NEEDS_RECONNECT


def test_permanent_errors_fail_at_once() -> None:
    assert decide(ErrorKind.PERMANENT, attempts=1).next is Next.FAIL
