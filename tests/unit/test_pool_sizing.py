"""Pool sizing: grow on a sustained backlog (up to the maximum), shrink when idle (to the minimum)."""

from __future__ import annotations

from herald.pool_sizing import GROW_AFTER_SECONDS, GROW_BACKLOG_PER_ACTOR, SHRINK_AFTER_SECONDS, PoolSizer


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
