"""Waiting work out of line: parked and deferred notifications, held on disk when memory is
full (``herald.held``), and the expiry sweep that ends whatever waits past its TTL.

A part of ``herald.queue.QueueShard`` (which finishes records: ``_finish``, ``_expire``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from herald.attempt import Attempt
from herald.channels import Channel
from herald.held import BATCH as HELD_BATCH
from herald.held import DEFERRED, PARKED
from herald.memory_window import WINDOWED
from herald.recipient_book import PREFERENCE
from herald.record import Record
from herald.requester_callbacks import defer_seconds, deferral_budget_spent
from herald.shard_state import ShardState
from herald.status import WAITING, Status
from herald.suppressions import BOUNCED, COMPLAINED, MANUAL, STOP

#: How many expired notifications one sweep finishes at most, and how often the timer sweeps.
EXPIRE_BATCH = 500
EXPIRE_EVERY_SECONDS = 5.0
#: What a suppressed notification's history says, by reason.
SUPPRESSED_BECAUSE = {
    PREFERENCE: "its recipient turned this category off for this channel",
    BOUNCED: "its address is suppressed: mail to it bounced",
    COMPLAINED: "its address is suppressed: its recipient reported a message as spam",
    STOP: "its number is suppressed: it texted STOP to this sender",
    MANUAL: "its contact is on the tenant's suppression list",
}
#: A notification sent later waits in memory when due within this many seconds, else on disk.
SCHEDULED_IN_MEMORY = 60.0


class WaitingWork(ShardState):
    """Parking, deferral, held records and expiry of one shard."""

    def _finish(self, record: Record, status: Status, now: float, entry: Attempt | None) -> None:
        raise NotImplementedError  # QueueShard's

    def _expire(self, record: Record, now: float) -> None:
        raise NotImplementedError  # QueueShard's

    def _waiting_on_disk(self, tag: str) -> Record | None:
        """A record back in line on disk only (held, or beyond the memory window) that a late answer may
        still finish; None for any other."""
        if not (self._held.total or self._beyond_window.total):
            return None
        record = self._stored(tag)
        return record if record is not None and record.status in WAITING else None

    def _back_in_line(self, record: Record, now: float) -> None:
        self._set_status(record, Status.QUEUED)
        record.lease_until = 0.0
        record.updated_at = now
        self._dirty(record)

    def _park(self, record: Record, now: float) -> None:
        """The recipient is away: wait (status queued) until ``unpark`` or expiry; on disk
        only when memory is full (``herald.held``)."""
        self._back_in_line(record, now)
        if self.memory_full:
            self._hold(record, PARKED)
        else:
            self._parking.park(record)

    def _defer(self, record: Record, seconds: float, now: float) -> None:
        """Held back (a rate limit, every breaker open): back in line after ``seconds``, no
        attempt used; on disk only meanwhile when memory is full. A requester callback has a
        budget of deferrals (``herald.requester_callbacks``): then it is dead."""
        record.deferrals += 1
        if deferral_budget_spent(record):
            entry = Attempt(at=now, outcome="dead", attempt=record.attempts,
                            error=f"deferred {record.deferrals} times: its endpoint stayed"
                                  " unreachable (circuit open) or rate limited",
                            code="deferrals_exhausted")
            self._finish(record, Status.DEAD, now, entry)
            return
        self._back_in_line(record, now)
        record.not_before = now + defer_seconds(record, seconds)
        if self.memory_full:
            self._hold(record, DEFERRED)
        else:
            heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))

    def _place(self, record: Record, now: float) -> None:
        """A new notification into line; or, to be sent later (``details.send_at``, or its
        user's quiet hours), out of line until then; or on disk only when memory is full."""
        quiet = self.recipients.quiet_until(record, now)
        if quiet is not None and quiet > record.not_before:
            record.not_before = quiet
        channel, priority = record.channel, record.priority
        if record.not_before > now:
            self._schedule(record, now)
        elif self._beyond_window.stays_on_disk(channel, priority, record.seq, self.memory_full):
            self._beyond_window.add(channel, priority)  # written by the caller; counted, not kept
        else:
            self._live[record.tag] = record
            self._beyond_window.took(channel, priority, record.seq)
            self._push_ready(record)

    def _refusal(self, record: Record) -> str | None:
        """Why a new notification must never be sent (a suppressed contact, then its user's
        preference), or None."""
        sender = None
        if record.channel is Channel.SMS:
            sender = record.payload.get("details", {}).get("from") or self._sms_sender
        return (self.suppressions.refusal(record.tenant, record.recipient, sender)
                or self.recipients.refusal(record))

    def _suppress(self, record: Record, reason: str, now: float) -> None:
        """Never sent: its recipient does not want it, or cannot take it (``reason``)."""
        entry = Attempt(at=now, outcome="suppressed", error=SUPPRESSED_BECAUSE.get(reason, reason),
                        code=reason)
        self._finish(record, Status.SUPPRESSED, now, entry)

    def _schedule(self, record: Record, now: float) -> None:
        """A new notification sent later (``details.send_at``): it waits outside the line
        until ``not_before``; on disk only when that is more than ``SCHEDULED_IN_MEMORY``
        seconds away or memory is full (far-future work costs no memory)."""
        self._live[record.tag] = record
        if self.memory_full or record.not_before - now > SCHEDULED_IN_MEMORY:
            self._hold(record, DEFERRED)
        else:
            heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))

    def _hold(self, record: Record, kind: str) -> None:
        """Keep a waiting record on disk only, outside the line, until it is due or its
        user connects (``herald.held``)."""
        record.held = kind
        self._live.discard(record.tag)
        self._dirty(record)
        self._held.add(1, record.not_before if kind == DEFERRED else None)

    def _unhold(self, rows: Iterable[Record], kind: str, keep: Callable[[Record], bool]
                ) -> list[Record]:
        """Held records read back into memory (newer unflushed versions win): the ones still
        held ``kind`` for which ``keep`` holds, no longer held."""
        back = []
        for row in rows:
            record = self._pending.get(row.tag) or row
            if record.tag in self._live or record.held != kind or record.status not in WAITING \
                    or not keep(record):
                continue
            record.held = None
            self._held.remove()
            self._live[record.tag] = record
            self._dirty(record)
            back.append(record)
        return back

    def _wake_held(self, now: float) -> None:
        """Deferred records held on disk whose time has come re-enter the line."""
        if self._held.due_at is None or self._held.due_at > now:
            return
        rows = [*self._storage.load_held_due(now, HELD_BATCH),
                *(r for r in self._pending.updates.values() if r.held == DEFERRED)]
        for record in self._unhold(rows, DEFERRED, lambda r: r.not_before <= now):
            self._push_ready(record)
        self._held.looked(now, more=len(rows) >= HELD_BATCH)

    def unpark(self, tenant: str, uid: str, now: float) -> list[str]:
        """The recipient is reachable again: its parked notifications become ready, in order
        (those parked in memory and those held on disk); their tags, in that order."""
        tags = self._parking.release(tenant, uid)
        records = [self._live[t] for t in tags if t in self._live]
        if self._held.total:
            rows = [*self._storage.load_parked(tenant, uid),
                    *(r for r in self._pending.updates.values() if r.held == PARKED)]
            records += self._unhold(rows, PARKED, lambda r: r.tenant == tenant and r.uid == uid)
        records.sort(key=lambda r: r.seq)
        for record in records:
            self._push_ready(record)
        return [record.tag for record in records]

    def _left_disk(self, record: Record) -> None:
        """A waiting record kept on disk only is no longer counted there."""
        if record.held is not None:
            record.held = None
            self._held.remove()
        elif record.channel in WINDOWED:
            self._beyond_window.remove(record.channel, record.priority)

    def expire_due(self, now: float, limit: int = EXPIRE_BATCH) -> int:
        """Expire up to ``limit`` waiting notifications whose TTL is over, whatever their lane:
        in memory or on disk only, in line, retry-delayed, parked, held, or of a paused
        channel. Each ends ``failed`` (expired) and its callback is queued, as at a lease."""
        expired = 0
        for row in self._storage.load_expired(now, limit):
            record = self._live.get(row.tag) or self._pending.get(row.tag) or row
            if record.status not in WAITING or record.expires_at > now:
                continue  # being sent (its lease decides), or finished meanwhile
            self._ready.remove(record.tag)
            self._expire(record, now)
            expired += 1
        return expired
