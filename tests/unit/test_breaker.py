"""Circuit breaker: closed → open after N transient failures → one half-open probe."""

from __future__ import annotations

from herald.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=10)
    for _ in range(2):
        breaker.record_failure(0)
    assert breaker.state == CLOSED and breaker.allow(0)
    breaker.record_failure(0)
    assert breaker.state == OPEN and not breaker.allow(5)
    assert breaker.retry_in(5) == 5


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.record_failure(0)
    breaker.record_success()
    breaker.record_failure(0)
    assert breaker.state == CLOSED


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=10)
    breaker.record_failure(0)
    assert breaker.allow(10) and breaker.state == HALF_OPEN
    assert not breaker.allow(10)  # the probe is out
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow(11)


def test_failed_probe_opens_again() -> None:
    breaker = CircuitBreaker(threshold=5, cooldown=10)
    for _ in range(5):
        breaker.record_failure(0)
    assert breaker.allow(10)
    breaker.record_failure(10)
    assert breaker.state == OPEN and not breaker.allow(15) and breaker.allow(20)


def test_unused_probe_can_be_released() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=1)
    breaker.record_failure(0)
    assert breaker.allow(1)
    breaker.release_probe()
    assert breaker.allow(1)
