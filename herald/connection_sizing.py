"""How many connections to keep to a relay: more while sends queue and the relay keeps pace.

A relay that takes a fixed time per message whatever the load (round trips, a remote queue)
sends n times as much over n connections; a busy one (CPU, disk, a rate limit) only answers
more slowly as connections are added, and more connections buy nothing but load on both ends.
The per-message latency tells them apart: over a full pool of ``size`` connections the relay
sends ``size / latency`` messages a second.

``ConnectionSizer`` starts at ``size`` connections. While sends wait for one, once ``samples``
latencies were measured at the current size, it adds a connection if the last one added paid
for itself: it sent at least ``min_share`` of what each connection sent before it (or there is
nothing to compare with). If it did not, the size goes back one and holds for
``recheck_seconds``, then is probed again (the relay may have got faster). Never above
``maximum`` (``HERALD_SMTP_POOL_SIZE``).

Only latencies measured while every connection was busy compare (a half-idle pool says nothing
about what one more connection would add): the caller observes those only. Pure: the caller
passes the time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

__all__ = ["ConnectionSizer"]


@dataclass(slots=True)
class ConnectionSizer:
    """The connection count for one relay, from the latencies of a full pool."""

    maximum: int
    size: int = 2
    samples: int = 16
    min_share: float = 0.5
    recheck_seconds: float = 30.0
    #: Connection count → the last ``samples`` latencies (s) measured with that many, all busy.
    latencies: dict[int, list[float]] = field(default_factory=dict)
    held_until: float = float("-inf")

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError("maximum must be >= 1")
        self.size = max(1, min(self.size, self.maximum))

    def observe(self, latency: float, size: int) -> None:
        """One message took ``latency`` s on a connection while all ``size`` were busy; a send
        begun before the size last changed says nothing about the new one."""
        if size != self.size:
            return
        measured = self.latencies.setdefault(self.size, [])
        measured.append(latency)
        if len(measured) > self.samples:
            del measured[0]

    def decide(self, waiting: int, now: float) -> int:
        """The connection count to use now, ``waiting`` sends queued for one."""
        if waiting <= 0 or self.size >= self.maximum or now < self.held_until:
            return self.size
        here = self.latencies.get(self.size, [])
        if len(here) < self.samples:
            return self.size
        below = self.latencies.get(self.size - 1, [])
        if len(below) >= self.samples and not self._paid_off(here, below):
            # The last connection added did not send more: back to one less, for a while.
            self.size -= 1
            self.held_until = now + self.recheck_seconds
            self.latencies.clear()  # measured again after the hold, conditions may differ
            return self.size
        self.size += 1
        return self.size

    def _paid_off(self, here: list[float], below: list[float]) -> bool:
        """Whether the ``size``-th connection added ``min_share`` of what each of the ``size - 1``
        before it sent a second."""
        rate = self.size / max(statistics.median(here), 1e-9)
        rate_below = (self.size - 1) / max(statistics.median(below), 1e-9)
        return rate - rate_below >= self.min_share * rate_below / (self.size - 1)
