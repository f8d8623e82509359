"""Whether a queue shard is serving: starting, up, or down (and why), and how `/healthz` says it.

A shard's start can fail for a cause outside it (another connection holding SQLite's write lock,
EIO, a full disk). The shard then keeps its process and tries again after ``start_delay``
(backoff up to ``MAX_START_DELAY``), so it comes back by itself once the cause is gone, and it
says meanwhile that it is down and why (``ShardHealth``): ``/healthz`` answers 503 naming it, the
admin overview lists it as down. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["FIRST_START_DELAY", "MAX_START_DELAY", "ShardCondition", "ShardHealth", "health_report",
           "start_delay"]

#: After a failed start the shard tries again after this, doubling up to ``MAX_START_DELAY``.
FIRST_START_DELAY = 1.0
MAX_START_DELAY = 10.0


class ShardCondition(str, Enum):
    """Where a shard is in its start."""

    #: Its first start is running (recovering its memory from disk).
    STARTING = "starting"
    #: Started: it takes calls.
    UP = "up"
    #: A start failed; it tries again by itself (``reason`` says what failed).
    DOWN = "down"
    #: PostgreSQL: another deployment is active (or still owns this shard): it waits for the
    #: lease, takes nothing meanwhile, and takes over when the owner stops renewing.
    STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class ShardHealth:
    """One shard's answer to ``QueueActor.health()``."""

    shard: int
    condition: ShardCondition
    #: Why it is down: the last failed start's error.
    reason: str | None = None
    #: Since when it is down (epoch seconds).
    since: float | None = None
    #: Failed starts so far (0 once up).
    failed_starts: int = 0

    @classmethod
    def unreachable(cls, shard: int, why: str, now: float) -> ShardHealth:
        """A shard that did not answer (its process is restarting, or hangs)."""
        return cls(shard, ShardCondition.DOWN, why, now)

    def public(self) -> dict[str, Any]:
        return {"shard": self.shard, "status": self.condition.value, "reason": self.reason,
                "since": self.since, "failed_starts": self.failed_starts}


def start_delay(failed_starts: int) -> float:
    """Seconds to wait before the next start after ``failed_starts`` (≥ 1) failures."""
    return min(MAX_START_DELAY, FIRST_START_DELAY * 2 ** max(0, failed_starts - 1))


def health_report(shards: Sequence[ShardHealth]) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` answer: 200 while no shard is down (a starting one is not down), else 503
    naming each shard that is down and why; 503 ``standby`` while this deployment waits for
    another's leases (a load balancer sends traffic to the active one)."""
    down = [s for s in shards if s.condition is ShardCondition.DOWN]
    standby = [s for s in shards if s.condition is ShardCondition.STANDBY]
    status = "down" if down else "standby" if standby else "ok"
    body: dict[str, Any] = {"status": status, "shards": [s.public() for s in shards]}
    if down:
        body["down"] = [s.public() for s in down]
    return (200 if status == "ok" else 503), body
