"""Rate limits: token bucket per provider, sliding window per recipient; limited means wait."""

from __future__ import annotations

import pytest

from herald.ratelimit import RateLimits, RecipientWindow, TokenBucket


def test_token_bucket_allows_burst_then_paces() -> None:
    bucket = TokenBucket(rate=2, burst=2, updated=0.0)
    for _ in range(2):
        assert bucket.wait(0.0) == 0.0
        bucket.take()
    assert bucket.wait(0.0) == pytest.approx(0.5)
    assert bucket.wait(0.5) == 0.0


def test_recipient_window_slides() -> None:
    window = RecipientWindow.parse("2/60")
    window.take("+1", 0)
    window.take("+1", 10)
    assert window.wait("+1", 20) == pytest.approx(40)
    assert window.wait("+2", 20) == 0
    assert window.wait("+1", 60) == 0


def test_admit_counts_only_what_goes_and_answers_waits() -> None:
    limits = RateLimits({"twilio": 1.0}, {"sms": "5/60"})
    first = limits.admit([("twilio", "SMS", "+1"), ("twilio", "SMS", "+2")], 100.0)
    assert first[0] == 0.0 and first[1] > 0  # one token per second
    assert limits.admit([("smtp", "EMAIL", "a@b.c")], 100.0) == [0.0]  # not limited


def test_recipient_limit_holds_across_providers() -> None:
    limits = RateLimits({}, {"sms": "2/60"})
    answers = limits.admit([("twilio", "SMS", "+1"), ("twilio-backup", "SMS", "+1"),
                            ("twilio", "SMS", "+1")], 0.0)
    assert answers[:2] == [0.0, 0.0] and answers[2] == pytest.approx(60)


def test_windows_forget_quiet_recipients() -> None:
    window = RecipientWindow.parse("1/10")
    window.take("+1", 0)
    window.take("+2", 5)
    window.sweep(12)
    assert set(window.sent) == {"+2"}
