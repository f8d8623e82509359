"""ConnectionSizer: grows while sends queue, steps back when the relay sends less for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from herald.connection_sizing import ConnectionSizer


def drive(sizer: ConnectionSizer, latency: Callable[[int], float], messages: int,
          waiting: int = 10, now: float = 0.0) -> list[int]:
    """Send ``messages`` over a full pool whose per-message latency depends on its size; the
    sizes decided after each one."""
    sizes = []
    for _ in range(messages):
        sizer.observe(latency(sizer.size), sizer.size)
        sizes.append(sizer.decide(waiting, now))
    return sizes


def test_a_relay_with_a_fixed_latency_gets_every_connection_it_may() -> None:
    sizer = ConnectionSizer(maximum=12, size=2, samples=4)
    sizes = drive(sizer, lambda size: 0.05, 60)
    # Four measurements per size, then one more connection, up to the maximum.
    assert sizes[:13] == [2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5]
    assert sizes[-1] == sizer.size == 12


def test_a_saturated_relay_still_gets_connections() -> None:
    # One message at a time whatever the connections: the same throughput at every size.
    sizer = ConnectionSizer(maximum=6, size=2, samples=4)
    assert drive(sizer, lambda size: 0.01 * size, 40)[-1] == 6


def test_an_overloaded_relay_gets_back_the_connection_that_hurt_it() -> None:
    sizer = ConnectionSizer(maximum=8, size=2, samples=4, recheck_seconds=30.0)
    # Each session slows every other: throughput falls as connections are added.
    overloaded = lambda size: 0.01 * size * size  # noqa: E731
    sizes = drive(sizer, overloaded, 8, now=0.0)
    assert sizes == [2, 2, 2, 3, 3, 3, 3, 2]  # 3 sent a third less than 2: back to 2
    assert drive(sizer, overloaded, 20, now=29.0) == [2] * 20  # held, measuring 2 again
    assert drive(sizer, overloaded, 5, now=31.0) == [3, 3, 3, 3, 2]  # probed again: still no


def test_a_small_loss_is_within_max_loss() -> None:
    sizer = ConnectionSizer(maximum=3, size=2, samples=4, max_loss=0.2)
    # Three connections send 10 % less than two: noise as far as the sizer is concerned.
    assert drive(sizer, lambda size: {2: 0.010, 3: 0.0167}[size], 12)[-1] == 3
    sizer = ConnectionSizer(maximum=3, size=2, samples=4, max_loss=0.2)
    assert drive(sizer, lambda size: {2: 0.010, 3: 0.0200}[size], 12)[-1] == 2  # 25 % less


def test_no_queue_no_growth_and_too_few_samples_no_decision() -> None:
    sizer = ConnectionSizer(maximum=8, size=2, samples=4)
    assert drive(sizer, lambda size: 0.05, 20, waiting=0) == [2] * 20
    sizer = ConnectionSizer(maximum=8, size=2, samples=4)
    assert drive(sizer, lambda size: 0.05, 3) == [2, 2, 2]


def test_a_latency_measured_at_another_size_is_not_counted() -> None:
    sizer = ConnectionSizer(maximum=8, size=2, samples=2)
    sizer.observe(0.05, 3)
    sizer.observe(0.05, 1)
    assert sizer.latencies == {} and sizer.decide(10, 0.0) == 2


def test_size_stays_within_one_and_maximum() -> None:
    assert ConnectionSizer(maximum=1, size=2).size == 1
    assert ConnectionSizer(maximum=4, size=0).size == 1
    sizer = ConnectionSizer(maximum=1, samples=1)
    assert drive(sizer, lambda size: 0.05, 5) == [1] * 5
    with pytest.raises(ValueError):
        ConnectionSizer(maximum=0)
