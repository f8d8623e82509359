"""The queue state machine of one shard, without Ray or I/O: heaps, leases, retries, idempotency.

One priority heap per lane (an SMS backlog never delays browser messages), a delayed heap for
retries, leases with a visibility timeout, and an idempotency index by (tenant, ``mq-uuid-btag``).
Every operation changes memory and marks records dirty; ``flush()`` (in ``herald.shard_state``,
the shard's memory) writes them to storage in one transaction. The shell (``actors/queue.py``)
flushes before it answers, so nothing is acknowledged before it is durable. Time is always
passed in (``now``), never read.

Ordering: within a lane, higher priority first, then acceptance order (``seq``): one user's
notifications of one channel and priority leave in the order they were accepted.
Requester callbacks are built in ``herald.requester_callbacks``, receipts reconciled in
``herald.reconcile``, parked browser users kept in ``herald.parking``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from herald.attempt import Attempt
from herald.channels import Lane
from herald.delivery import Delivery
from herald.delivery_log import ACCEPTED, ATTEMPT, FINAL
from herald.errors import Conflict
from herald.inbox import FeedPage, FeedQuery, ReadAnswer, ReadMarks
from herald.models import MAX_LIVE_SECONDS
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.reconcile import is_receipt
from herald.record import Record
from herald.requester_callbacks import (
    callback_record,
    callback_tag,
    callback_url,
)
from herald.retry import RetryPolicy
from herald.shard_receipts import ReceiptHandling
from herald.shard_state import COUNTERS
from herald.status import WAITING, Status
from herald.waiting_work import EXPIRE_BATCH, EXPIRE_EVERY_SECONDS, WaitingWork
from herald.wire import compact

__all__ = ["COUNTERS", "LeaseRenewal", "QueueShard"]
_OUTCOME_STATUS = {"sent": Status.SENT, "delivered": Status.DELIVERED, "failed": Status.FAILED}


@compact
@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """A channel actor still works on ``tag`` under lease ``token``: keep it."""

    tag: str
    token: float


class QueueShard(ReceiptHandling, WaitingWork):
    """The transitions of a shard's notifications; its memory is ``ShardState``."""

    # -- intake ---------------------------------------------------------------------------
    def enqueue(self, notifications: Sequence[Notification], now: float) -> list[Accepted]:
        """Accept validated notifications; answer each with its tag and position.

        A tag seen before (a retried call) or a repeated (tenant, ``mq-uuid-btag``) answers the
        first tag with ``duplicate=True`` and queues nothing.
        """
        # One storage look-up per batch, not per notification: tags seen before (a retried call)
        # and idempotency keys not live in memory.
        unseen = [n.tag for n in notifications
                  if n.tag not in self._live and self._pending.get(n.tag) is None]
        stored_tags = self._storage.existing(unseen) if unseen else set()
        keys = [(n.tenant, n.idempotency_key) for n in notifications if n.idempotency_key]
        # Keys taken here: by a notification of this shard, or claimed for one on another.
        stored_keys = self.claimed(keys) if keys else {}
        results = []
        taken: set[str] = set()  # this batch's tags (one kept on disk only is not in _live)
        for notification in notifications:
            tag, key = notification.tag, notification.idempotency_key
            known = (tag in self._live or tag in taken or self._pending.get(tag) is not None
                     or tag in stored_tags)
            first = tag if known else (key and (self._idempotency.get((notification.tenant, key))
                                                or stored_keys.get((notification.tenant, key))))
            if first:
                self._count("duplicates_refused", notification.tenant)
                results.append(Accepted(first, self.position(first), duplicate=True))
                continue
            self._seq += 1
            record = Record.new(notification, self._seq)
            channel, priority = record.channel, record.priority
            pos = (self._ready.ahead(self._lane(record), priority)
                   + self._beyond_window.ahead(channel, priority) + 1)
            taken.add(tag)
            if key:
                self._idempotency[(record.tenant, key)] = tag
            refused = self._refusal(record)
            if refused is None:
                self._place(record, now)
            else:
                self._live[tag] = record  # finished below, as a live one
            self._pending.insert(record)
            self._track(record)
            self._log(record, ACCEPTED, Status.QUEUED.value, None, now)
            self._count("accepted", record.tenant)
            if refused is not None:
                self._suppress(record, refused, now)
                pos = 0
            results.append(Accepted(tag, pos))
        return results

    # -- delivery -------------------------------------------------------------------------
    def lease(self, lane: Lane, limit: int, now: float, lease_seconds: float,
              min_priority: int = 0) -> list[Delivery]:
        """Hand out up to ``limit`` notifications of ``lane``, best first, for a while; only
        those of ``min_priority`` or higher if given (a channel actor's express slots)."""
        self._promote(now)
        self._last_now = max(self._last_now, now)
        leased: list[Delivery] = []
        if limit <= 0 or lane.channel in self.pauses:  # paused: its work waits (herald.pauses)
            return leased
        while len(leased) < limit and self._lease_some(lane, limit, now, lease_seconds, leased,
                                                       min_priority):
            pass
        return leased

    def _lease_some(self, lane: Lane, limit: int, now: float, lease_seconds: float,
                    leased: list[Delivery], min_priority: int) -> bool:
        """Lease from memory down to the best priority still waiting on disk (read back
        first, as much as the lease wants); False when nothing more can be had."""
        floor = max(self._refill(lane, limit - len(leased), now) or 0, min_priority)
        progressed = False
        for tag in self._ready.pop(lane, lambda tag: tag in self._live, floor=floor):
            progressed = True
            record = self._live[tag]
            if now >= record.expires_at:
                self._expire(record, now)
            else:
                self._set_status(record, Status.SENDING)
                record.lease_until = now + lease_seconds
                # The token names this lease; time only moves on, so a record never gets the
                # same token twice (a renewal moves ``lease_until``, not the token).
                record.lease_token = max(now, record.lease_token + 1e-6)
                record.updated_at = now
                heapq.heappush(self._leases, (record.lease_until, tag))
                self._dirty(record)
                leased.append(record.delivery())
            if len(leased) >= limit:
                break
        return progressed

    def renew(self, renewals: Iterable[LeaseRenewal], now: float, lease_seconds: float) -> int:
        """Extend leases still being worked on (a send in flight); how many were renewed."""
        renewed = 0
        for renewal in renewals:
            record = self._live.get(renewal.tag)
            if (record is None or record.status is not Status.SENDING
                    or record.lease_token != renewal.token):
                continue  # expired and handed out again, or finished: nothing to keep
            until = now + lease_seconds
            if until > record.lease_until:
                record.lease_until = until
                heapq.heappush(self._leases, (until, record.tag))
                self._dirty(record)
            renewed += 1
        return renewed

    def ack(self, outcomes: Iterable[Outcome], now: float) -> list[str]:
        """Apply delivery outcomes; return the tags that reached a final state.

        An outcome answers the lease whose token it carries. A late one (that lease expired,
        and its expiry was counted as an attempt) can still report good news (``sent``) or a
        refusal, but a late ``retry``/``park``/``defer`` changes nothing.
        """
        before = len(self._finished)
        for outcome in outcomes:
            record = self._live.get(outcome.tag) or self._waiting_on_disk(outcome.tag)
            if record is None:
                if is_receipt(outcome) and self._receipt(outcome, now):
                    continue
                stored = self._stored(outcome.tag) if outcome.kind == "sent" else None
                if stored is not None and stored.status in (Status.SENT, Status.DELIVERED):
                    self._count("duplicate_sends", stored.tenant)  # sent again after a lease expired
                self.counters["stale_acks"] += 1
                continue
            current = record.status is Status.SENDING and outcome.lease in (None, record.lease_token)
            if not current and outcome.kind in ("retry", "park", "defer"):
                self.counters["stale_acks"] += 1
                continue
            if outcome.kind == "park":
                self._park(record, now)
                continue
            if outcome.kind == "defer":
                self._defer(record, outcome.retry_after or 1.0, now)
                continue
            if current:
                record.attempts += 1  # a late answer's attempt was counted when its lease expired
            entry = Attempt(at=now, outcome=outcome.kind, provider=outcome.provider,
                            attempt=record.attempts, error=outcome.error, code=outcome.code,
                            provider_id=outcome.provider_id, info=dict(outcome.info))
            if outcome.provider_id:
                record.provider_id = outcome.provider_id
            self._log(record, ATTEMPT, outcome.kind, entry, now)
            if outcome.kind == "retry":
                record.history.append(entry)
                record.updated_at = now
                self._dirty(record)
                self._retry_or_die(record, outcome.retry_after, now)
                continue
            self._ready.remove(record.tag)
            self._finish(record, _OUTCOME_STATUS[outcome.kind], now, entry)
            early = self._early_receipts.get(record.tag)
            if early is not None and outcome.kind == "sent":
                self._let_go_receipt(record.tag)
                self._receipt(early, now)
        return self._finished[before:]

    def _retry_or_die(self, record: Record, retry_after: float | None, now: float) -> None:
        policy = self._policies.get(record.channel) or RetryPolicy()
        if policy.exhausted(record.attempts):
            self._finish(record, Status.DEAD, now, None)
            return
        self._set_status(record, Status.RETRYING)
        record.lease_until = 0.0
        record.not_before = now + policy.delay(record.attempts, retry_after, self._rng)
        heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
        self._count("retried", record.tenant)

    def _expire(self, record: Record, now: float) -> None:
        self._finish(record, Status.FAILED, now, Attempt.expired(now))
        self._count("expired", record.tenant)

    def _finish(self, record: Record, status: Status, now: float, entry: Attempt | None) -> None:
        if entry is not None:
            record.history.append(entry)
        if record.tag not in self._live and record.status in WAITING:
            self._left_disk(record)  # finished while waiting on disk only (cancelled, expired)
        self._set_status(record, status)
        record.updated_at = now
        record.lease_until = 0.0
        self._count(status.value, record.tenant)
        self._log(record, FINAL, status.value, entry, now)
        if status in (Status.SENT, Status.DELIVERED):
            self.latency.observe(now - record.created_at)
        self._live.discard(record.tag)
        if status is not Status.SENT:
            self._let_go_receipt(record.tag)  # nothing sent is waiting for it any more
        # The idempotency entry stays until flush() has made the record findable in storage.
        self._dirty(record)
        self._finished.append(record.tag)
        self._queue_callback(record, now)

    def _queue_callback(self, record: Record, now: float) -> None:
        """Queue the requester's signed webhook for this final state (in the same flush); on
        disk only when memory is full, like any notification (``herald.memory_window``)."""
        url = callback_url(record)
        if not url or callback_tag(record) in self._live:
            return
        self._seq += 1
        hook = callback_record(record, url, self._seq, now)
        self._track(hook)
        self._pending.insert(hook)
        if self._beyond_window.stays_on_disk(hook.channel, hook.priority, hook.seq, self.memory_full):
            self._beyond_window.add(hook.channel, hook.priority)
            return
        self._live[hook.tag] = hook
        self._beyond_window.took(hook.channel, hook.priority, hook.seq)
        self._push_ready(hook)

    # -- time -----------------------------------------------------------------------------
    def _promote(self, now: float) -> None:
        """Let time pass: an expired lease counts as an attempt (its send may have happened; it
        is retried with backoff and dies with the attempt budget, so a message that crashes its
        channel actor ends ``dead``); parked notifications expire; due retries become ready
        (after the leases, so a retry due now is ready now)."""
        for tag in self._parking.expired(now):
            record = self._live.get(tag)
            if record is not None and record.status in WAITING:
                self._expire(record, now)
        self._wake_held(now)
        while self._leases and self._leases[0][0] <= now:
            lease_until, tag = heapq.heappop(self._leases)
            record = self._live.get(tag)
            if record is None or record.status is not Status.SENDING or record.lease_until != lease_until:
                continue  # answered or renewed: a stale heap entry
            self._count("lease_expired", record.tenant)
            record.attempts += 1
            entry = Attempt(at=now, outcome="retry", attempt=record.attempts,
                            error="no answer before the lease expired", code="lease_expired")
            record.history.append(entry)
            record.updated_at = now
            self._log(record, ATTEMPT, "retry", entry, now)
            self._dirty(record)
            self._retry_or_die(record, None, now)
        while self._delayed and self._delayed[0][0] <= now:
            _, _, tag = heapq.heappop(self._delayed)
            record = self._live.get(tag)
            if (record is not None and record.status in WAITING and tag not in self._ready
                    and record.not_before <= now):
                self._push_ready(record)

    def next_wakeup(self) -> float | None:
        """When the next retry, lease expiry, parked expiry, held record or expiry sweep falls
        due (for the shell's timer)."""
        times = [h[0][0] for h in (self._delayed, self._leases) if h]
        for due in (self._parking.next_expiry(), self._held.due_at, self._sweep_at):
            if due is not None:
                times.append(due)
        return min(times) if times else None

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Which of these (tenant, key) are taken here: by a notification of this shard, or by
        a claim for a notification on another shard."""
        found = {k: self._idempotency[k] for k in keys if k in self._idempotency}
        rest = [k for k in keys if k not in found]
        if rest:
            found |= self._storage.find_idempotent_many(rest)
            found |= self._storage.claimed([k for k in rest if k not in found])
        return found

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        """Claim keys for notifications accepted on other shards (durable when this returns);
        the tag that holds each key (another one's when two raced)."""
        taken = self.claimed([(t, k) for t, k, _ in entries])
        fresh = [e for e in entries if (e[0], e[1]) not in taken]
        won = dict(zip([(t, k) for t, k, _ in fresh], self._storage.claim(fresh, now), strict=True)) \
            if fresh else {}
        return [taken.get((t, k)) or won[(t, k)] for t, k, _ in entries]

    def delete_final(self, now: float, retention_seconds: float, limit: int) -> int:
        """Retention: forget up to ``limit`` final records last changed ``retention_seconds``
        ago or earlier, and idempotency claims once no notification they guard can still be
        live or kept (the longest a notification may wait and live, or retention if that is
        longer)."""
        claims_before = now - max(retention_seconds, MAX_LIVE_SECONDS)
        return self._storage.delete_final(now - retention_seconds, limit, claims_before)

    # -- users' inbox feeds (herald.inbox): read from what is stored ------------------------
    def feed(self, query: FeedQuery, now: float) -> FeedPage:
        return self._storage.inbox().page(query, now)

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks, now: float) -> ReadAnswer:
        """Mark the user's items read (durable when this returns)."""
        inbox = self._storage.inbox()
        read = inbox.mark_read(tenant, uid, marks, now)
        return ReadAnswer(read, inbox.page(FeedQuery(tenant, uid, limit=1), now).unread)

    _sweep_at: float | None = None

    def tick(self, now: float) -> None:
        """Let time pass: due retries, expired leases, parked and held notifications, and
        (every ``EXPIRE_EVERY_SECONDS``) an expiry sweep over every lane."""
        self._promote(now)
        if self._sweep_at is None or now >= self._sweep_at:
            more = self.expire_due(now) >= EXPIRE_BATCH
            self._sweep_at = now if more else now + EXPIRE_EVERY_SECONDS

    # -- control ------------------------------------------------------------------------
    def cancel(self, tag: str, tenant: str, now: float) -> Record:
        record = self.get(tag, tenant)
        if record.status not in WAITING:
            raise Conflict(f"notification {tag} is {record.status}; only queued ones can be cancelled")
        self._ready.remove(tag)
        self._finish(record, Status.CANCELLED, now, None)
        return record

    def revive(self, tag: str, tenant: str, now: float) -> Record:
        """Send a dead-lettered notification again: a fresh attempt budget, history kept."""
        record = self.get(tag, tenant)
        if record.status is not Status.DEAD:
            raise Conflict(f"notification {tag} is {record.status}; only dead ones can be retried")
        return self._revive(record, now)

    def _revive(self, record: Record, now: float) -> Record:
        self._set_status(record, Status.QUEUED)
        record.attempts = 0
        record.deferrals = 0
        record.not_before = 0.0
        record.updated_at = now
        record.history.append(Attempt.revived(now))
        self._live[record.tag] = record
        self._push_ready(record)
        self._dirty(record)
        return record

    # -- the admin console: any tenant's notifications -----------------------------------
    def revive_any(self, tag: str, now: float) -> Record:
        """An operator's retry: a dead or failed notification of any tenant, not yet expired."""
        record = self.find(tag)
        if record.status not in (Status.DEAD, Status.FAILED):
            raise Conflict(f"notification {tag} is {record.status}; only dead or failed ones"
                           " can be retried")
        if now >= record.expires_at:
            raise Conflict(f"notification {tag} has expired (its ttl is over); it would fail again")
        return self._revive(record, now)

    def cancel_any(self, tag: str, now: float) -> Record:
        """An operator's cancel: a queued or retrying notification of any tenant."""
        return self.cancel(tag, self.find(tag).tenant, now)

