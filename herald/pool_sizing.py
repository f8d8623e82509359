"""How big a channel pool should be: grow while the backlog per actor stays high, shrink when idle.

Pure: the Supervisor feeds it each channel's backlog every few seconds and applies the answer. On
a cluster, actors that do not fit make Ray's autoscaler add nodes; idle ones going away lets it
remove them. The thresholds below are the defaults of ``HERALD_POOL_GROW_BACKLOG`` and
``HERALD_POOL_IDLE_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Waiting notifications per channel actor above which the pool grows.
GROW_BACKLOG_PER_ACTOR = 500
#: A pool grows when the backlog stayed high this long (not on one burst)...
GROW_AFTER_SECONDS = 3.0
#: ...and shrinks by one when nothing waited for this long.
SHRINK_AFTER_SECONDS = 60.0


@dataclass(slots=True)
class PoolSizer:
    """One channel's pool between ``minimum`` and ``maximum`` actors: it grows while more than
    ``grow_backlog`` notifications per actor wait, and shrinks by one after ``idle_seconds`` with
    nothing waiting."""

    minimum: int
    maximum: int
    grow_backlog: int = GROW_BACKLOG_PER_ACTOR
    idle_seconds: float = SHRINK_AFTER_SECONDS
    high_since: float | None = None
    idle_since: float | None = None

    def __post_init__(self) -> None:
        self.maximum = max(self.maximum, self.minimum)

    def decide(self, size: int, backlog: int, now: float) -> int:
        """The size the pool should have now (``size`` if nothing changes)."""
        if size < self.minimum:
            return self.minimum
        if size == 0 and backlog > 0 and self.maximum > 0:
            return 1  # a pool kept at 0 while idle starts its first actor on the first work
        if backlog > self.grow_backlog * max(1, size):
            self.idle_since = None
            self.high_since = self.high_since if self.high_since is not None else now
            if now - self.high_since >= GROW_AFTER_SECONDS and size < self.maximum:
                self.high_since = now  # give the new actor time before growing again
                wanted = -(-backlog // self.grow_backlog)  # ceiling
                return min(self.maximum, max(size + 1, min(wanted, size * 2)))
            return size
        self.high_since = None
        if backlog == 0:
            self.idle_since = self.idle_since if self.idle_since is not None else now
            if now - self.idle_since >= self.idle_seconds and size > self.minimum:
                self.idle_since = now
                return size - 1
        else:
            self.idle_since = None
        return size
