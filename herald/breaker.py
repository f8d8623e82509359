"""Circuit breaker for one provider: closed → open after N transient failures → half-open probe."""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; after ``cooldown`` seconds one
    probe is let through (half-open): success closes it, failure opens it again.

    Only transient failures count: a permanent refusal (invalid number) says nothing about the
    provider's health. Time is passed in.
    """

    threshold: int = 5
    cooldown: float = 30.0
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def allow(self, now: float) -> bool:
        """May a message go to this provider now? (Claims the probe when half-open.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and now - self.opened_at >= self.cooldown:
            self.state = HALF_OPEN
            self.probing = False
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def release_probe(self) -> None:
        """The claimed probe was not used (e.g. rate limited): let the next message probe."""
        self.probing = False

    def record_success(self) -> None:
        self.state, self.failures, self.probing = CLOSED, 0, False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at, self.probing = OPEN, now, False

    def retry_in(self, now: float) -> float:
        """Seconds until this breaker would let a probe through (0 if it would now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.cooldown - (now - self.opened_at))
