"""How big a channel pool should be: grow while the backlog per actor stays high, shrink when idle.

Idle means nothing waits *and* nothing is being sent: a pool whose backlog is empty may still
have sends in flight (leased, not acked), and an actor killed then has its leases come back and
sent again. The actor that goes is drained first, for up to ``drain_seconds``: one attempt's
deadline (``HERALD_ATTEMPT_TIMEOUT``) and a margin for its ack, so anything it leased in between
has finished before it is killed.

Pure: the Supervisor feeds it each channel's backlog and sends in flight every few seconds and
applies the answer. On
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
#: Beyond one attempt's deadline, what a drained actor gets to ack its last outcomes.
DRAIN_MARGIN_SECONDS = 15.0


def drain_seconds(attempt_timeout: float) -> float:
    """How long an actor being removed is drained before it is killed: every attempt it may
    have started is over (sent, failed or timed out) and acked by then."""
    return attempt_timeout + DRAIN_MARGIN_SECONDS


@dataclass(slots=True)
class PoolSizer:
    """One channel's pool between ``minimum`` and ``maximum`` actors: it grows while more than
    ``grow_backlog`` notifications per actor wait, and shrinks by one after ``idle_seconds`` with
    nothing waiting and nothing in flight."""

    minimum: int
    maximum: int
    grow_backlog: int = GROW_BACKLOG_PER_ACTOR
    idle_seconds: float = SHRINK_AFTER_SECONDS
    high_since: float | None = None
    idle_since: float | None = None

    def __post_init__(self) -> None:
        self.maximum = max(self.maximum, self.minimum)

    def decide(self, size: int, backlog: int, now: float, in_flight: int = 0) -> int:
        """The size the pool should have now (``size`` if nothing changes). ``in_flight``: sends
        the pool's actors have leased and not acked (a pool with any is not idle)."""
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
        if backlog == 0 and in_flight == 0:
            self.idle_since = self.idle_since if self.idle_since is not None else now
            if now - self.idle_since >= self.idle_seconds and size > self.minimum:
                self.idle_since = now
                return size - 1
        else:
            self.idle_since = None
        return size
