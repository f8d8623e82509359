"""ConnectionSizer: grows while sends queue and the relay keeps pace, holds when it does not."""

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


def test_a_busy_relay_keeps_the_size_where_more_connections_stopped_helping() -> None:
    sizer = ConnectionSizer(maximum=8, size=2, samples=4, recheck_seconds=30.0)
    # Two connections' worth of throughput: beyond two, each message just waits longer.
    saturated = lambda size: 0.01 * max(size, 2)  # noqa: E731
    sizes = drive(sizer, saturated, 8, now=0.0)
    assert sizes == [2, 2, 2, 3, 3, 3, 3, 2]  # 3 sent no more than 2: back to 2
    assert drive(sizer, saturated, 20, now=29.0) == [2] * 20  # held, measuring 2 again
    assert drive(sizer, saturated, 5, now=31.0) == [3, 3, 3, 3, 2]  # probed again: still no


def test_a_relay_that_scales_a_little_is_not_given_more() -> None:
    sizer = ConnectionSizer(maximum=8, size=2, samples=4, min_share=0.5)
    # A third connection adds 10 % throughput, a fifth of what each of the two sends.
    sizes = drive(sizer, lambda size: {2: 0.010, 3: 0.0136}[size], 8)
    assert sizes[-1] == 2


def test_a_connection_adding_over_half_a_connections_worth_is_kept() -> None:
    # Each connection past two costs the relay a little: the third still sends 3/4 of a share.
    sizer = ConnectionSizer(maximum=3, size=2, samples=4)
    assert drive(sizer, lambda size: {2: 0.010, 3: 0.0109}[size], 12)[-1] == 3


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
