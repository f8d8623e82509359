"""Rate limits for the whole service: a token bucket per provider and a window per recipient.

A limited message waits (the answer is how long), it is never failed. One ``RateLimits``
instance lives in one actor so that the limit holds across every channel actor, not per worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SWEEP_EVERY = 10_000


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 = now); takes nothing."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


@dataclass(slots=True)
class RecipientWindow:
    """At most ``limit`` messages per ``window`` seconds per recipient (sliding window)."""

    limit: int
    window: float
    sent: dict[str, deque[float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> RecipientWindow:
        """``"5/60"`` → 5 per 60 s."""
        count, _, seconds = spec.partition("/")
        return cls(int(count), float(seconds or 60))

    def wait(self, recipient: str, now: float) -> float:
        times = self.sent.get(recipient)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.sent[recipient]
            return 0.0
        return 0.0 if len(times) < self.limit else times[0] + self.window - now

    def take(self, recipient: str, now: float) -> None:
        self.sent.setdefault(recipient, deque()).append(now)

    def sweep(self, now: float) -> None:
        """Forget recipients with nothing left in the window (memory stays bounded)."""
        for recipient in [r for r, t in self.sent.items() if not t or t[-1] <= now - self.window]:
            del self.sent[recipient]


class RateLimits:
    """All configured limits; ``admit`` answers a batch of (provider, channel, recipient)."""

    def __init__(self, per_provider: Mapping[str, float], per_recipient: Mapping[str, str]) -> None:
        self.buckets = {name: TokenBucket(rate, max(1.0, rate)) for name, rate in per_provider.items()}
        self.windows = {ch.lower(): RecipientWindow.parse(spec) for ch, spec in per_recipient.items()}
        self._admitted = 0

    def admit(self, requests: Sequence[tuple[str, str, str | None]], now: float) -> list[float]:
        """For each request: 0.0 if it may go now (and it is counted), else seconds to wait."""
        self._admitted += len(requests)
        if self._admitted >= SWEEP_EVERY:
            self._admitted = 0
            for recipients in self.windows.values():
                recipients.sweep(now)
        answers = []
        for provider, channel, recipient in requests:
            bucket = self.buckets.get(provider)
            window = self.windows.get(channel.lower()) if recipient else None
            waits = [bucket.wait(now) if bucket else 0.0,
                     window.wait(recipient, now) if window and recipient else 0.0]
            wait = max(waits)
            if wait == 0.0:
                if bucket:
                    bucket.take()
                if window and recipient:
                    window.take(recipient, now)
            answers.append(wait)
        return answers
