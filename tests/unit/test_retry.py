"""Unit tests for herald.retry.RetryPolicy: full-jitter backoff bounds and the attempt budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.retry import RetryPolicy

seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@given(base=seconds, cap=seconds, attempts=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_delay_is_within_the_full_jitter_window(
    base: float, cap: float, attempts: int, seed: int
) -> None:
    policy = RetryPolicy(base_seconds=base, cap_seconds=cap)
    delay = policy.delay(attempts, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (attempts - 1))


@given(retry_after=seconds, attempts=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_retry_after_is_a_floor(retry_after: float, attempts: int, seed: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    delay = policy.delay(attempts, retry_after=retry_after, rng=random.Random(seed))
    assert retry_after <= delay <= max(retry_after, min(300.0, 2.0 ** (attempts - 1)))


def test_window_doubles_then_caps() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    policy = RetryPolicy(base_seconds=1.5, cap_seconds=20.0)
    assert [policy.delay(n, rng=Top()) for n in range(1, 7)] == [1.5, 3.0, 6.0, 12.0, 20.0, 20.0]


def test_attempt_zero_uses_the_base_window() -> None:
    policy = RetryPolicy(base_seconds=2.0)
    assert 0.0 <= policy.delay(0, rng=random.Random(1)) <= 2.0


def test_jitter_spreads_delays() -> None:
    rng = random.Random(0)
    delays = {RetryPolicy(base_seconds=10.0).delay(3, rng=rng) for _ in range(50)}
    assert len(delays) == 50


def test_same_seed_same_delay() -> None:
    policy = RetryPolicy()
    assert policy.delay(4, rng=random.Random(7)) == policy.delay(4, rng=random.Random(7))


def test_huge_attempt_numbers_stay_capped() -> None:
    assert RetryPolicy(cap_seconds=60.0).delay(5000, rng=random.Random(0)) <= 60.0


@pytest.mark.parametrize(("max_attempts", "attempts", "exhausted"),
                         [(1, 1, True), (3, 2, False), (3, 3, True), (3, 4, True), (5, 0, False)])
def test_exhausted(max_attempts: int, attempts: int, exhausted: bool) -> None:
    assert RetryPolicy(max_attempts=max_attempts).exhausted(attempts) is exhausted


@pytest.mark.parametrize("kwargs", [{"base_seconds": -1.0}, {"cap_seconds": -0.5},
                                    {"max_attempts": 0}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_immutable() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
