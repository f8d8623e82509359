"""Waiting records kept on disk *outside* the line: deferred callbacks, parked browser messages.

The memory window (``herald.memory_window``) keeps a shard's memory bounded for work in line. Two
kinds of waiting work are not in line and would otherwise sit in memory as long as they wait:
a notification held back without an attempt (``defer``: every breaker open, a rate limit)
until ``not_before``, and a browser message *parked* for an offline user until the user
connects or its TTL ends. When memory is full they wait on disk only, marked with
``Record.held`` (``DEFERRED`` / ``PARKED``), counted here, not kept: a deferred one is read
back when due (``Storage.load_held_due``, polled by the shard's timer), a parked one when its
user connects (``Storage.load_parked``); the expiry sweep (``QueueShard.expire_due``) finds
either once its TTL is over. Back in memory, a record re-enters the line as any retry does.
"""

from __future__ import annotations

DEFERRED, PARKED = "deferred", "parked"
#: How often, at most, the shard looks for held records that fell due.
POLL_SECONDS = 1.0
#: How many held records one look reads back at most.
BATCH = 500


class HeldOnDisk:
    """How many records are held on disk only, and when to look for due ones next."""

    def __init__(self) -> None:
        self.total = 0
        #: When the timer should next read due deferred records (None: none are held).
        self.due_at: float | None = None

    def add(self, count: int, due: float | None) -> None:
        """``count`` more are held; deferred ones fall due at ``due`` (None: parked)."""
        self.total += count
        if due is not None:
            self.due_at = due if self.due_at is None else min(self.due_at, due)

    def remove(self, count: int = 1) -> None:
        self.total -= count
        if self.total <= 0:
            self.total, self.due_at = 0, None

    def looked(self, now: float, more: bool) -> None:
        """A look at ``now`` found what was due (``more``: a full batch, look again at once)."""
        if self.total > 0:
            self.due_at = now if more else now + POLL_SECONDS
