"""Retry policy: exponential backoff with full jitter, and a per-channel attempt budget."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

MAX_RETRY_AFTER_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``delay(n)`` for the n-th failed attempt is uniform in [0, min(cap, base·2^(n-1))].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads a burst of
    failures over the window instead of re-synchronising them on the provider.
    """

    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff seconds must be >= 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` tries have used the whole budget."""
        return attempts >= self.max_attempts

    def delay(
        self, attempts: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the ``attempts``-th try failed; never less than ``retry_after``."""
        exponent = min(max(0, attempts - 1), 62)  # past 2^62 the cap always wins anyway
        window = min(self.cap_seconds, self.base_seconds * (2**exponent))
        jittered = (rng or random).uniform(0.0, window)
        if retry_after is not None and math.isfinite(retry_after):
            # A provider may ask for longer than our cap, but not for ever.
            return min(max(float(retry_after), jittered), MAX_RETRY_AFTER_SECONDS)
        return jittered


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
