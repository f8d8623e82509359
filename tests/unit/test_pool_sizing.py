"""Pool sizing: grow on a sustained backlog (up to the maximum), shrink when idle (to the minimum)."""

from __future__ import annotations

import pytest

from herald.config import load_settings
from herald.errors import ConfigError
from herald.pool_sizing import (
    DRAIN_MARGIN_SECONDS,
    GROW_AFTER_SECONDS,
    GROW_BACKLOG_PER_ACTOR,
    SHRINK_AFTER_SECONDS,
    PoolSizer,
    drain_seconds,
)


def test_a_burst_does_not_grow_the_pool_but_a_sustained_backlog_does() -> None:
    sizer = PoolSizer(minimum=1, maximum=4)
    big = GROW_BACKLOG_PER_ACTOR * 10
    assert sizer.decide(1, big, 0.0) == 1
    assert sizer.decide(1, big, GROW_AFTER_SECONDS) == 2  # doubles at most
    assert sizer.decide(2, big, GROW_AFTER_SECONDS + 1) == 2  # the new actor gets time
    assert sizer.decide(2, big, 2 * GROW_AFTER_SECONDS) == 4
    assert sizer.decide(4, big, 4 * GROW_AFTER_SECONDS) == 4  # the maximum holds


def test_an_idle_pool_shrinks_one_at_a_time_to_its_minimum() -> None:
    sizer = PoolSizer(minimum=1, maximum=4)
    assert sizer.decide(3, 0, 0.0) == 3
    assert sizer.decide(3, 0, SHRINK_AFTER_SECONDS) == 2
    assert sizer.decide(2, 0, SHRINK_AFTER_SECONDS + 1) == 2
    assert sizer.decide(2, 0, 2 * SHRINK_AFTER_SECONDS) == 1
    assert sizer.decide(1, 0, 10 * SHRINK_AFTER_SECONDS) == 1


def test_some_work_keeps_the_pool_and_a_maximum_below_the_minimum_is_the_minimum() -> None:
    sizer = PoolSizer(minimum=2, maximum=1)
    assert sizer.maximum == 2
    assert sizer.decide(2, 10, 0.0) == 2
    assert sizer.decide(2, 10, 10 * SHRINK_AFTER_SECONDS) == 2
    assert sizer.decide(1, 0, 0.0) == 2  # below the minimum: back to it at once


def test_the_grow_threshold_and_the_idle_time_are_the_sizers_own() -> None:
    sizer = PoolSizer(minimum=1, maximum=3, grow_backlog=10, idle_seconds=2.0)
    assert sizer.decide(1, 10, 0.0) == 1  # not above 10 per actor
    assert sizer.decide(1, 11, 1.0) == 1
    assert sizer.decide(1, 11, 1.0 + GROW_AFTER_SECONDS) == 2
    assert sizer.decide(2, 25, 2.0 + GROW_AFTER_SECONDS) == 2  # the new actor gets time
    assert sizer.decide(2, 25, 1.0 + 2 * GROW_AFTER_SECONDS) == 3  # ceil(25 / 10), at most 3
    assert sizer.decide(3, 0, 100.0) == 3
    assert sizer.decide(3, 0, 101.9) == 3
    assert sizer.decide(3, 0, 102.0) == 2
    assert sizer.decide(2, 0, 104.0) == 1


def test_the_sizing_settings_are_read_from_herald_variables() -> None:
    defaults = load_settings({})
    assert (defaults.pool_grow_backlog, defaults.pool_idle_seconds, defaults.channel_cpus) == (
        GROW_BACKLOG_PER_ACTOR, SHRINK_AFTER_SECONDS, 0.05)
    given = load_settings({"HERALD_POOL_GROW_BACKLOG": "50", "HERALD_POOL_IDLE_SECONDS": "2.5",
                           "HERALD_CHANNEL_CPUS": "1"})
    assert (given.pool_grow_backlog, given.pool_idle_seconds, given.channel_cpus) == (50, 2.5, 1.0)
    for name, bad in (("HERALD_POOL_GROW_BACKLOG", "0"), ("HERALD_POOL_IDLE_SECONDS", "0"),
                      ("HERALD_CHANNEL_CPUS", "-1")):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: bad})


def test_a_pool_at_zero_starts_one_actor_on_its_first_work() -> None:
    sizer = PoolSizer(0, 2)
    assert sizer.decide(0, 0, 0.0) == 0
    assert sizer.decide(0, 1, 1.0) == 1  # at once, not after the backlog stayed high
    assert PoolSizer(0, 0).decide(0, 10, 2.0) == 0  # a pool with no room stays at 0


def test_a_pool_with_sends_in_flight_is_not_idle_whatever_its_backlog() -> None:
    sizer = PoolSizer(minimum=1, maximum=4)
    assert sizer.decide(3, 0, 0.0, in_flight=2) == 3
    assert sizer.decide(3, 0, 10 * SHRINK_AFTER_SECONDS, in_flight=1) == 3  # never while sending
    assert sizer.decide(3, 0, 10 * SHRINK_AFTER_SECONDS + 1, in_flight=0) == 3  # idle from now
    assert sizer.decide(3, 0, 11 * SHRINK_AFTER_SECONDS + 1, in_flight=0) == 2


def test_a_drain_outlasts_one_attempt() -> None:
    assert drain_seconds(45.0) == 45.0 + DRAIN_MARGIN_SECONDS > 45.0
