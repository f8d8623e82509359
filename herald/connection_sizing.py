"""How many connections to keep to a relay: more while sends queue, fewer if the relay suffers.

A relay that keeps pace sends n times as much over n connections; a saturated one sends the same
(its per-message latency grows in proportion) and an overloaded one sends less (the latency grows
faster than the connections). The per-message latency over a full pool of ``size`` connections
tells them apart: the relay sends ``size / latency`` messages a second.

``ConnectionSizer`` starts at ``size`` connections. While sends wait for one, once ``samples``
latencies were measured at the current size, it adds a connection, unless the last one added
made the relay send less: more than ``max_loss`` below what it sent with one connection fewer.
Then the size goes back one and holds for ``recheck_seconds`` before it is probed again (the
relay may have recovered). Never above ``maximum`` (``HERALD_SMTP_POOL_SIZE``).

A saturated relay still gets connections up to ``maximum``: they cost it little, and measured on
loopback they cost Herald less CPU per message (each turn of the event loop serves several
connections: 2 connections cost ~20 % more CPU per message than 8).

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
    max_loss: float = 0.2
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
        if waiting <= 0 or now < self.held_until:
            return self.size
        here = self.latencies.get(self.size, [])
        if len(here) < self.samples:
            return self.size
        below = self.latencies.get(self.size - 1, [])
        if len(below) >= self.samples and self._lost(here, below):
            # The last connection added made the relay send less: back to one less, a while.
            self.size -= 1
            self.held_until = now + self.recheck_seconds
            self.latencies.clear()  # measured again after the hold, conditions may differ
        elif self.size < self.maximum:
            self.size += 1
        else:
            self.latencies.pop(self.size - 1, None)  # kept at the maximum: judged, done
        return self.size

    def _lost(self, here: list[float], below: list[float]) -> bool:
        """Whether the relay sent over ``size`` connections more than ``max_loss`` less a second
        than over ``size - 1``."""
        rate = self.size / max(statistics.median(here), 1e-9)
        rate_below = (self.size - 1) / max(statistics.median(below), 1e-9)
        return rate < rate_below * (1 - self.max_loss)
