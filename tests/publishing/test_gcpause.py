"""The collector pause of a burst: on while busy, off when idle or after its longest."""

import gc
from collections.abc import Iterator

import pytest

from tidings.publishing.gcpause import GcPause


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_a_burst_pauses_the_collector_until_idle() -> None:
    pause = GcPause(longest=10)
    pause.busy(0)
    assert not gc.isenabled()
    assert pause.paused
    pause.busy(5)
    assert not gc.isenabled()
    pause.idle()
    assert gc.isenabled()
    assert not pause.paused


def test_a_pause_ends_after_its_longest_and_starts_again_after_idle() -> None:
    pause = GcPause(longest=10)
    pause.busy(0)
    pause.busy(10.5)
    assert gc.isenabled()
    assert not pause.paused
    pause.busy(11)  # the same burst goes on: collecting as usual
    assert gc.isenabled()
    pause.idle()
    pause.busy(20)  # the next burst pauses again
    assert not gc.isenabled()
    pause.idle()
    assert gc.isenabled()


def test_without_a_longest_or_when_disabled_elsewhere_it_does_nothing() -> None:
    never = GcPause(longest=None)
    never.busy(0)
    assert gc.isenabled()
    gc.disable()
    other = GcPause(longest=10)
    other.busy(0)
    other.idle()
    assert not gc.isenabled()  # left as someone else set it
