"""The queue state machine of one shard, without Ray or I/O: heaps, leases, retries, idempotency.

One priority heap per lane (an SMS backlog never delays browser messages), a delayed heap for
retries, leases with a visibility timeout, and an idempotency index by (tenant, ``mq-uuid-btag``).
Every operation changes memory and marks records dirty; ``flush()`` writes them to storage in one
transaction. The shell (``actors/queue.py``) flushes before it answers, so nothing is
acknowledged before it is durable. Time is always passed in (``now``), never read.

Ordering: within a lane, higher priority first, then acceptance order (``seq``): one user's
notifications of one channel and priority leave in the order they were accepted.
Requester callbacks are built in ``herald.requester_callbacks``, receipts reconciled in
``herald.reconcile``, parked browser users kept in ``herald.parking``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping, Sequence

from herald.attempt import Attempt
from herald.channels import Channel, Lane
from herald.delivery import Delivery
from herald.delivery_log import ACCEPTED, ATTEMPT, FINAL, LogEvent, log_event
from herald.errors import Conflict, NotFound
from herald.metrics import Histogram
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.parking import Parking
from herald.priority import MAX_PRIORITY
from herald.reconcile import EarlyReceipts, apply_receipt, is_receipt
from herald.record import Record
from herald.requester_callbacks import callback_record, callback_tag, callback_url
from herald.retry import RetryPolicy
from herald.status import WAITING, Status
from herald.storage import Storage

_OUTCOME_STATUS = {"sent": Status.SENT, "delivered": Status.DELIVERED, "failed": Status.FAILED}
COUNTERS = ("accepted", "sent", "delivered", "failed", "dead", "retried", "cancelled", "expired",
            "stale_acks", "duplicates_refused")


class QueueShard:
    def __init__(
        self,
        storage: Storage,
        retry_policies: Mapping[Channel, RetryPolicy] | Mapping[str, RetryPolicy],
        now: float,
        rng: random.Random | None = None,
        gateways: int = 1,
    ) -> None:
        self._storage = storage
        self._gateways = gateways
        self._policies = retry_policies
        self._rng = rng or random.Random()
        self._live: dict[str, Record] = {}
        self._ready: dict[Lane, list[tuple[int, int, str]]] = {}
        self._ready_counts: dict[Lane, list[int]] = {}
        self._in_ready: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._leases: list[tuple[float, str]] = []
        self._parking = Parking()
        self._idempotency: dict[tuple[str, str], str] = {}
        self._early_receipts = EarlyReceipts()
        self._inserts: list[Record] = []
        self._updates: dict[str, Record] = {}
        self._events: list[LogEvent] = []
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.latency = Histogram()
        self._seq = storage.max_seq()
        self._recover(now)

    def lane_of(self, channel: Channel, tenant: str, uid: str) -> Lane:
        return Lane.of(channel, tenant, uid, self._gateways)

    def _lane(self, record: Record) -> Lane:
        return self.lane_of(record.channel, record.tenant, record.uid)

    # -- recovery -------------------------------------------------------------------------
    def _recover(self, now: float) -> None:
        """Rebuild memory from storage; leases still running stay leased until they expire."""
        for record in self._storage.load_live():
            self._live[record.tag] = record
            if record.idempotency_key:
                self._idempotency[(record.tenant, record.idempotency_key)] = record.tag
            if record.status is Status.SENDING:
                heapq.heappush(self._leases, (record.lease_until, record.tag))
            elif record.status in WAITING and record.not_before > now:
                heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
            else:
                self._push_ready(record)

    # -- intake ---------------------------------------------------------------------------
    def enqueue(self, notifications: Sequence[Notification], now: float) -> list[Accepted]:
        """Accept validated notifications; answer each with its tag and position.

        A tag seen before (a retried call) or a repeated (tenant, ``mq-uuid-btag``) answers the
        first tag with ``duplicate=True`` and queues nothing.
        """
        # One storage look-up per batch, not per notification: tags seen before (a retried call)
        # and idempotency keys not live in memory.
        unseen = [n.tag for n in notifications if n.tag not in self._live and n.tag not in self._updates]
        stored_tags = self._storage.existing(unseen) if unseen else set()
        keys = [(n.tenant, n.idempotency_key) for n in notifications if n.idempotency_key]
        stored_keys = self._storage.find_idempotent_many(
            [k for k in keys if k not in self._idempotency]) if keys else {}
        results = []
        for notification in notifications:
            tag, key = notification.tag, notification.idempotency_key
            known = tag in self._live or tag in self._updates or tag in stored_tags
            first = tag if known else (key and (self._idempotency.get((notification.tenant, key))
                                                or stored_keys.get((notification.tenant, key))))
            if first:
                self.counters["duplicates_refused"] += 1
                results.append(Accepted(first, self.position(first), duplicate=True))
                continue
            self._seq += 1
            record = Record.new(notification, self._seq)
            pos = self._ahead(self._lane(record), record.priority) + 1
            self._live[tag] = record
            if key:
                self._idempotency[(record.tenant, key)] = tag
            self._push_ready(record)
            self._inserts.append(record)
            self._log(record, ACCEPTED, Status.QUEUED.value, None, now)
            self.counters["accepted"] += 1
            results.append(Accepted(tag, pos))
        return results

    # -- delivery -------------------------------------------------------------------------
    def lease(self, lane: Lane, limit: int, now: float, lease_seconds: float) -> list[Delivery]:
        """Hand out up to ``limit`` notifications of ``lane``, best first, for a while."""
        self._promote(now)
        heap = self._ready.get(lane)
        leased: list[Delivery] = []
        while heap and len(leased) < limit:
            _, _, tag = heapq.heappop(heap)
            record = self._live.get(tag)
            if record is None or tag not in self._in_ready:
                continue  # cancelled or acked while waiting: a stale heap entry
            self._leave_ready(record)
            if now >= record.expires_at:
                self._expire(record, now)
                continue
            record.status = Status.SENDING
            record.lease_until = now + lease_seconds
            record.updated_at = now
            heapq.heappush(self._leases, (record.lease_until, tag))
            self._dirty(record)
            leased.append(record.delivery())
        return leased

    def ack(self, outcomes: Iterable[Outcome], now: float) -> list[str]:
        """Apply delivery outcomes; return the tags that reached a final state."""
        finished = []
        for outcome in outcomes:
            record = self._live.get(outcome.tag)
            if record is None:
                # A worker's late outcome for a record someone else already finished is stale.
                if is_receipt(outcome) and self._receipt(outcome, now):
                    finished.append(outcome.tag)
                else:
                    self.counters["stale_acks"] += 1
                continue
            waiting = record.status in WAITING
            superseded = (record.status is Status.SENDING and outcome.lease is not None
                          and outcome.lease != record.lease_until)
            if superseded and outcome.kind in ("retry", "park", "defer"):
                # A late answer to an expired lease while a newer lease is out: requeueing now
                # would hand it out twice. The newer lease's holder will answer.
                self.counters["stale_acks"] += 1
                continue
            # A held receipt stays through a retry: it may answer an earlier lease's send,
            # whose late "sent" is still on its way.
            if outcome.kind in ("park", "defer"):
                if not waiting:
                    if outcome.kind == "park":
                        self._park(record, now)
                    else:
                        self._defer(record, outcome.retry_after or 1.0, now)
                continue
            record.attempts += 1
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
                if not waiting:  # a stale retry for a re-queued record changes nothing else
                    self._retry_or_die(record, outcome, now, finished)
                continue
            if waiting:
                self._leave_ready(record)
            self._finish(record, _OUTCOME_STATUS[outcome.kind], now, entry)
            finished.append(record.tag)
            early = self._early_receipts.take(record.tag)
            if early is not None and outcome.kind == "sent":
                self._receipt(early, now)
        return finished

    def _park(self, record: Record, now: float) -> None:
        """The recipient is away: wait (status queued) until ``unpark`` or expiry."""
        record.status = Status.QUEUED
        record.lease_until = 0.0
        record.updated_at = now
        self._parking.park(record)
        self._dirty(record)

    def _defer(self, record: Record, seconds: float, now: float) -> None:
        """Held back by a rate limit: back in line after ``seconds``, no attempt used."""
        record.status = Status.QUEUED
        record.lease_until = 0.0
        record.not_before = now + seconds
        record.updated_at = now
        heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
        self._dirty(record)

    def unpark(self, tenant: str, uid: str, now: float) -> int:
        """The recipient is reachable again: its parked notifications become ready, in order."""
        tags = self._parking.release(tenant, uid)
        records = sorted((self._live[t] for t in tags if t in self._live), key=lambda r: r.seq)
        for record in records:
            self._push_ready(record)
        return len(records)

    def _retry_or_die(self, record: Record, outcome: Outcome, now: float, finished: list[str]) -> None:
        policy = self._policies.get(record.channel) or RetryPolicy()
        if policy.exhausted(record.attempts):
            self._finish(record, Status.DEAD, now, None)
            finished.append(record.tag)
            return
        record.status = Status.RETRYING
        record.not_before = now + policy.delay(record.attempts, outcome.retry_after, self._rng)
        heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
        self.counters["retried"] += 1

    def receipt(self, outcome: Outcome, now: float) -> bool:
        """A provider's receipt (``delivered``/``failed``) for a sent notification."""
        record = self._live.get(outcome.tag)
        if record is not None:
            if record.status is Status.SENDING:  # the receipt overtook our own ack: keep it
                self._early_receipts.hold(outcome)
            return False
        return self._receipt(outcome, now)

    def _receipt(self, outcome: Outcome, now: float) -> bool:
        record = self._stored(outcome.tag)
        if record is None or not apply_receipt(record, outcome, now):
            return False
        self.counters[record.status.value] += 1
        self._updates[record.tag] = record
        self._log(record, FINAL, record.status.value, record.history[-1], now)
        self._queue_callback(record, now)
        return True

    def _expire(self, record: Record, now: float) -> None:
        self._finish(record, Status.FAILED, now, Attempt.expired(now))
        self.counters["expired"] += 1

    def _finish(self, record: Record, status: Status, now: float, entry: Attempt | None) -> None:
        if entry is not None:
            record.history.append(entry)
        record.status = status
        record.updated_at = now
        record.lease_until = 0.0
        self.counters[status.value] += 1
        self._log(record, FINAL, status.value, entry, now)
        if status in (Status.SENT, Status.DELIVERED):
            self.latency.observe(now - record.created_at)
        del self._live[record.tag]
        if status is not Status.SENT:
            self._early_receipts.take(record.tag)  # nothing sent is waiting for it any more
        # The idempotency entry stays until flush() has made the record findable in storage.
        self._dirty(record)
        self._queue_callback(record, now)

    def _queue_callback(self, record: Record, now: float) -> None:
        """Queue the requester's signed webhook for this final state (in the same flush)."""
        url = callback_url(record)
        if not url or callback_tag(record) in self._live:
            return
        self._seq += 1
        hook = callback_record(record, url, self._seq, now)
        self._live[hook.tag] = hook
        self._push_ready(hook)
        self._inserts.append(hook)

    # -- time -----------------------------------------------------------------------------
    def _promote(self, now: float) -> None:
        """Move due retries and expired leases back to their ready heaps; expire parked ones."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, tag = heapq.heappop(self._delayed)
            record = self._live.get(tag)
            if (record is not None and record.status in WAITING and tag not in self._in_ready
                    and record.not_before <= now):
                self._push_ready(record)
        for tag in self._parking.expired(now):
            record = self._live.get(tag)
            if record is not None:
                self._expire(record, now)
        while self._leases and self._leases[0][0] <= now:
            lease_until, tag = heapq.heappop(self._leases)
            record = self._live.get(tag)
            if record is not None and record.status is Status.SENDING and record.lease_until == lease_until:
                record.status = Status.QUEUED
                record.lease_until = 0.0
                record.updated_at = now
                self._dirty(record)
                self._push_ready(record)

    def next_wakeup(self) -> float | None:
        """When the next retry, lease expiry or parked expiry falls due (for the shell's timer)."""
        times = [h[0][0] for h in (self._delayed, self._leases) if h]
        parked = self._parking.next_expiry()
        if parked is not None:
            times.append(parked)
        return min(times) if times else None

    # -- reads and control ----------------------------------------------------------------
    def get(self, tag: str, tenant: str) -> Record:
        record = self._live.get(tag) or self._stored(tag)
        if record is None or record.tenant != tenant:
            raise NotFound(f"no notification {tag}")
        return record

    def cancel(self, tag: str, tenant: str, now: float) -> Record:
        record = self.get(tag, tenant)
        if record.status not in WAITING:
            raise Conflict(f"notification {tag} is {record.status}; only queued ones can be cancelled")
        self._leave_ready(record)
        self._finish(record, Status.CANCELLED, now, None)
        return record

    def revive(self, tag: str, tenant: str, now: float) -> Record:
        """Send a dead-lettered notification again: a fresh attempt budget, history kept."""
        record = self.get(tag, tenant)
        if record.status is not Status.DEAD:
            raise Conflict(f"notification {tag} is {record.status}; only dead ones can be retried")
        record.status = Status.QUEUED
        record.attempts = 0
        record.not_before = 0.0
        record.updated_at = now
        record.history.append(Attempt.revived(now))
        self._live[tag] = record
        self._push_ready(record)
        self._dirty(record)
        return record

    def position(self, tag: str) -> int:
        record = self._live.get(tag)
        if record is None or record.status not in WAITING:
            return 0
        return self._ahead(self._lane(record), record.priority)

    def depth(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for record in self._live.values():
            bucket = out.setdefault(record.channel.value, {"queued": 0, "retrying": 0, "sending": 0})
            bucket[record.status.value] += 1
        return out

    def live_count(self) -> int:
        return len(self._live)

    # -- durability -----------------------------------------------------------------------
    def flush(self) -> None:
        """Write every change since the last flush in one transaction."""
        if not self._inserts and not self._updates and not self._events:
            return
        inserts = self._inserts
        fresh = {r.tag for r in inserts}
        updates = [r for tag, r in self._updates.items() if tag not in fresh]
        self._storage.write(inserts, updates, self._events)
        # Only now: if the write failed, the next flush (the caller's retry) writes it all.
        self._inserts, self._updates, self._events = [], {}, []
        for record in (*inserts, *updates):
            if record.final and record.idempotency_key:
                self._idempotency.pop((record.tenant, record.idempotency_key), None)

    # -- helpers --------------------------------------------------------------------------
    def _stored(self, tag: str) -> Record | None:
        """A record no longer live: its unflushed version if there is one, else storage's."""
        return self._updates.get(tag) or self._storage.get(tag)

    def _log(self, record: Record, event: str, status: str, entry: Attempt | None,
             now: float) -> None:
        """One delivery-log row, written with this state change."""
        row = log_event(record, event, status, entry, now)
        if row is not None:
            self._events.append(row)

    def _dirty(self, record: Record) -> None:
        self._updates[record.tag] = record

    def _push_ready(self, record: Record) -> None:
        lane = self._lane(record)
        heapq.heappush(self._ready.setdefault(lane, []), (-record.priority, record.seq, record.tag))
        counts = self._ready_counts.setdefault(lane, [0] * (MAX_PRIORITY + 1))
        counts[record.priority] += 1
        self._in_ready.add(record.tag)

    def _leave_ready(self, record: Record) -> None:
        """A record leaves its ready heap (leased, cancelled, acked late); the entry goes stale."""
        if record.tag in self._in_ready:
            self._in_ready.discard(record.tag)
            self._ready_counts[self._lane(record)][record.priority] -= 1

    def _ahead(self, lane: Lane, priority: int) -> int:
        counts = self._ready_counts.get(lane)
        return sum(counts[priority:]) if counts else 0
