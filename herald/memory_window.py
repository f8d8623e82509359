"""The part of a shard's queue kept on disk only: what waits beyond the memory window.

A shard keeps at most ``memory_window`` live notifications in memory (payload and all, most
of them packed: ``herald.live_records``). Beyond that, a newly accepted email, SMS or fax notification
is written to storage and only *counted* here, per (channel, priority); nothing of it stays on
the heap. When a lane's ready heap runs low at some priority, the shard reads the next ones of
that priority from storage in acceptance order (``Storage.load_waiting``), so a million queued
notifications cost a few counters, and a restart reads a window, not all that waits.

Order is kept by one rule: for each (channel, priority), every notification on disk only was
accepted after every one in memory (``cursor`` is the highest ``seq`` taken into memory; what
is on disk only has a higher one, and is read back lowest first). A notification that would
come back into line behind that cursor while older ones are still on disk goes to disk only too.

Requester callbacks (the one WEBHOOK lane) are held to the window like email. Browser lanes
(one per gateway, chosen by hashing the user) stay in memory: they cannot be read back by a
plain (channel, priority) query. Waiting work that is out of line — deferred, or parked for an offline browser
user — is kept on disk by ``herald.held``, not here.
"""

from __future__ import annotations

from herald.channels import Channel
from herald.priority import MAX_PRIORITY

#: Channels held to the memory window: their waiting notifications may be kept on disk only.
WINDOWED = frozenset({Channel.EMAIL, Channel.SMS, Channel.FAX, Channel.WEBHOOK})
#: How many a refill reads from storage at least (one query serves many leases).
REFILL = 1000


class BeyondWindow:
    """Counts of waiting notifications kept on disk only, and how far memory has read."""

    def __init__(self) -> None:
        #: channel → count per priority (index 0..MAX_PRIORITY).
        self._counts: dict[Channel, list[int]] = {}
        self._cursor: dict[tuple[Channel, int], int] = {}
        self.total = 0

    def _levels(self, channel: Channel) -> list[int]:
        counts = self._counts.get(channel)
        if counts is None:
            counts = self._counts[channel] = [0] * (MAX_PRIORITY + 1)
        return counts

    def count(self, channel: Channel, priority: int) -> int:
        counts = self._counts.get(channel)
        return counts[priority] if counts else 0

    def add(self, channel: Channel, priority: int, count: int = 1) -> None:
        """``count`` more wait on disk only."""
        self._levels(channel)[priority] += count
        self.total += count

    def remove(self, channel: Channel, priority: int, count: int = 1) -> None:
        """``count`` left the disk-only part (read into memory, or finished while there)."""
        self._levels(channel)[priority] -= count
        self.total -= count

    def cursor(self, channel: Channel, priority: int) -> int:
        """The highest ``seq`` of this (channel, priority) taken into memory so far."""
        return self._cursor.get((channel, priority), 0)

    def took(self, channel: Channel, priority: int, seq: int) -> None:
        """A notification of this (channel, priority) is in memory (accepted or read back)."""
        key = (channel, priority)
        if seq > self._cursor.get(key, 0):
            self._cursor[key] = seq

    def stays_on_disk(self, channel: Channel, priority: int, seq: int, memory_full: bool) -> bool:
        """Whether a notification coming into line now belongs on disk only: memory is full,
        or older ones of its kind wait on disk (it would overtake them otherwise)."""
        if channel not in WINDOWED:
            return False
        if self.count(channel, priority) > 0:
            return seq > self.cursor(channel, priority)
        return memory_full

    def ahead(self, channel: Channel, priority: int) -> int:
        """How many wait on disk only at ``priority`` or higher (all of them come first or
        alongside: an upper bound for a position)."""
        counts = self._counts.get(channel)
        return sum(counts[priority:]) if counts else 0

    def levels(self, channel: Channel) -> list[int]:
        """Priorities with notifications on disk only, highest first."""
        counts = self._counts.get(channel) or []
        return [p for p in range(len(counts) - 1, -1, -1) if counts[p] > 0]

    def highest(self, channel: Channel) -> int | None:
        """The highest priority with notifications on disk only, if any."""
        levels = self.levels(channel)
        return levels[0] if levels else None
