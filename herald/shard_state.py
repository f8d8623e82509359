"""The memory of one queue shard: its indexes, rebuilt from storage, and its pending write.

``ShardState`` holds what a shard knows between calls — live records, ready lanes, retries and
leases waiting on the clock, parked notifications, the idempotency index, receipts held for a
send in flight — and how that memory is made durable (``flush``) or rebuilt (``_recover``).
The transitions themselves are ``herald.queue.QueueShard``. No Ray, no I/O but ``Storage``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from herald.admin_queries import AdminQueries
from herald.attempt import Attempt
from herald.channels import Channel, Lane
from herald.delivery_log import log_event
from herald.errors import NotFound, QueueFull
from herald.fair_share import Holding, admits
from herald.held import HeldOnDisk
from herald.live_records import LiveRecords
from herald.memory_window import REFILL, WINDOWED, BeyondWindow
from herald.metrics import Histogram
from herald.notification import Notification
from herald.outcome import Outcome
from herald.parking import Parking
from herald.pauses import Pauses
from herald.pending import PendingWrite
from herald.priority import MAX_PRIORITY
from herald.ready import ReadyQueues
from herald.recipient_book import DEFAULT_REQUIRED, RecipientBook
from herald.record import Record
from herald.retry import RetryPolicy
from herald.search import Scanned, SearchQuery
from herald.status import FINAL, WAITING, Status
from herald.storage import Storage
from herald.suppressions import SuppressionList

COUNTERS = ("accepted", "sent", "delivered", "failed", "dead", "retried", "cancelled", "expired",
            "suppressed", "bounced",
            "stale_acks", "duplicates_refused", "lease_expired", "duplicate_sends",
            "write_failures")


class ShardState:
    def __init__(
        self,
        storage: Storage,
        retry_policies: Mapping[Channel, RetryPolicy] | Mapping[str, RetryPolicy],
        now: float,
        rng: random.Random | None = None,
        gateways: int = 1,
        memory_window: int = 20_000,
        keep_unpacked: int | None = None,
        required_categories: Collection[str] = DEFAULT_REQUIRED,
        sms_sender: str | None = None,
    ) -> None:
        self._storage = storage
        #: The shard's users' settings: preferences and quiet hours (``herald.recipients``).
        self.recipients = RecipientBook(storage.documents(), required_categories)
        #: Every tenant's suppressed contacts (``herald.suppressions``); ``sms_sender``: the
        #: number an SMS without ``details.from`` is sent from (a STOP holds for one sender).
        self.suppressions = SuppressionList(storage.documents())
        self._sms_sender = sms_sender
        self._gateways = gateways
        #: Live notifications kept in memory at most; beyond, waiting ones stay on disk only.
        self._memory_window = memory_window
        #: How many one read from disk takes at least (fewer with a small window).
        self._read_size = max(1, min(REFILL, memory_window))
        #: Live records kept as objects at least; beyond, waiting ones are packed (a test's knob).
        self._keep_unpacked = self._read_size if keep_unpacked is None else keep_unpacked
        self._policies = retry_policies
        self._rng = rng or random.Random()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._tenant_counters: dict[str, Counter[str]] = {}
        self.latency = Histogram()
        #: Tags that reached a final state since the shell last looked (``take_finished``).
        self._finished: list[str] = []
        self._last_now = now  # the latest time an operation was given (for a rebuild)
        self._recover(now)

    def lane_of(self, channel: Channel, tenant: str, uid: str) -> Lane:
        return Lane.of(channel, tenant, uid, self._gateways)

    def _lane(self, record: Record) -> Lane:
        return self.lane_of(record.channel, record.tenant, record.uid)

    # -- recovery -------------------------------------------------------------------------
    def _recover(self, now: float) -> None:
        """(Re)build memory from storage; leases still running stay leased until they expire.

        Also what a failed write falls back to: memory goes back to what the disk has, so
        nothing the caller was told failed is delivered later anyway.
        """
        #: Live records by tag, most waiting ones packed (``herald.live_records``).
        self._live = LiveRecords(keep=self._keep_unpacked)
        self._ready = ReadyQueues()
        self._delayed: list[tuple[float, int, str]] = []
        self._leases: list[tuple[float, str]] = []
        self._parking = Parking()
        self._idempotency: dict[tuple[str, str], str] = {}
        #: Running counts of live records by (tenant, channel, status), and their bytes: a
        #: scrape reads these instead of walking every record.
        self._depth: Counter[tuple[str, Channel, Status]] = Counter()
        self.live_bytes = 0
        #: The same by tenant (what a tenant's fair share of the queue limit counts).
        self._tenant_live: Counter[str] = Counter()
        self._tenant_bytes: Counter[str] = Counter()
        self._early_receipts: dict[str, Outcome] = dict(self._storage.load_receipts())
        self._pending = PendingWrite()
        self._seq = self._storage.max_seq()
        # What waits on disk is counted, not read (herald.memory_window); a window of it is read below.
        self._beyond_window = BeyondWindow()
        #: Waiting records kept on disk outside the line (deferred, parked: herald.held).
        self._held = HeldOnDisk()
        windowed = sorted(WINDOWED)
        for channel, priority, tenant, status, count, size in self._storage.waiting_counts(windowed):
            self._beyond_window.add(channel, priority, count)
            self._count_live(tenant, channel, status, count, size)
        for channel, _, tenant, status, count, size in self._storage.held_counts():
            self._held.add(count, now)
            self._count_live(tenant, channel, status, count, size)
        for record in self._storage.load_in_memory(windowed):
            self._live[record.tag] = record
            if record.idempotency_key:
                self._idempotency[(record.tenant, record.idempotency_key)] = record.tag
            if record.status is Status.SENDING:
                heapq.heappush(self._leases, (record.lease_until, record.tag))
            elif record.status in WAITING and record.not_before > now:
                heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
            else:
                self._push_ready(record)
            self._track(record)
        for channel in windowed:
            for priority in self._beyond_window.levels(channel):
                self._read_back(channel, priority, self._read_size, now)
        self._live.pack(list(self._live.records()))

    def get(self, tag: str, tenant: str) -> Record:
        record = self._live.get(tag) or self._stored(tag)
        if record is None or record.tenant != tenant:
            raise NotFound(f"no notification {tag}")
        return record


    def position(self, tag: str) -> int:
        record = self._live.get(tag)
        if record is None or record.status not in WAITING:
            return 0
        return self._ready.ahead(self._lane(record), record.priority)

    def depth(self, tenant: str | None = None) -> dict[str, dict[str, int]]:
        """Live records per channel and status: every tenant's, or one tenant's."""
        out: dict[str, dict[str, int]] = {}
        for (owner, channel, status), count in self._depth.items():
            if count and (tenant is None or owner == tenant):
                bucket = out.setdefault(channel.value, {"queued": 0, "retrying": 0, "sending": 0})
                bucket[status.value] += count
        return out

    def tenant_counters(self, tenant: str) -> dict[str, int]:
        return dict.fromkeys(COUNTERS, 0) | self._tenant_counters.get(tenant, {})

    # -- counting -------------------------------------------------------------------------
    def _count(self, name: str, tenant: str) -> None:
        self.counters[name] += 1
        self._tenant_counters.setdefault(tenant, Counter())[name] += 1

    def _count_live(self, tenant: str, channel: Channel, status: Status, count: int,
                    size: int) -> None:
        """``count`` live records of ``size`` bytes in all came (or, negative, went)."""
        self._depth[(tenant, channel, status)] += count
        self.live_bytes += size
        self._tenant_live[tenant] += count
        self._tenant_bytes[tenant] += size
        if not self._tenant_live[tenant]:
            del self._tenant_live[tenant]
            self._tenant_bytes.pop(tenant, None)

    def _track(self, record: Record) -> None:
        """A record became live (accepted, recovered, revived): count it."""
        self._count_live(record.tenant, record.channel, record.status, 1, record.size)

    def _set_status(self, record: Record, status: Status) -> None:
        """Every status change of a live record goes through here (the running counts)."""
        if record.status not in FINAL and status in FINAL:
            self._count_live(record.tenant, record.channel, record.status, -1, -record.size)
        elif record.status not in FINAL:
            self._depth[(record.tenant, record.channel, record.status)] -= 1
            self._depth[(record.tenant, record.channel, status)] += 1
        elif status not in FINAL:  # a final record lives again (a revived dead letter)
            self._count_live(record.tenant, record.channel, status, 1, record.size)
        record.status = status

    def refusals(self, notifications: Sequence[Notification], count_limit: int,
                 bytes_limit: int) -> list[QueueFull | None]:
        """For each notification, why it does not fit this shard (``QueueFull``) or None:
        the limits by count and by bytes, each tenant within its fair share
        (``herald.fair_share``). Judged one by one, counting the ones admitted before it."""
        live, size = self.live_count(), self.live_bytes
        mine: Counter[str] = Counter()
        mine_bytes: Counter[str] = Counter()
        out: list[QueueFull | None] = []
        for n in notifications:
            held = self._tenant_live[n.tenant] + mine[n.tenant]
            active = len(self._tenant_live.keys() | mine.keys() | {n.tenant})
            if not admits(count_limit, Holding(live, held, active), 1):
                out.append(QueueFull(f"queue full: this shard holds {live} notifications,"
                                     f" {held} of them this tenant's", retry_after=2.0))
                continue
            held_bytes = self._tenant_bytes[n.tenant] + mine_bytes[n.tenant]
            if not admits(bytes_limit, Holding(size, held_bytes, active), n.size):
                out.append(QueueFull(f"queue full: this shard holds {size} bytes,"
                                     f" {held_bytes} of them this tenant's", retry_after=2.0))
                continue
            live, size = live + 1, size + n.size
            mine[n.tenant] += 1
            mine_bytes[n.tenant] += n.size
            out.append(None)
        return out

    def live_count(self) -> int:
        """Live notifications, in memory or waiting on disk only (in line or held)."""
        return len(self._live) + self._beyond_window.total + self._held.total

    @property
    def memory_full(self) -> bool:
        return len(self._live) >= self._memory_window

    def take_finished(self) -> list[str]:
        """Tags that reached a final state since the last call (to wake ``?wait`` callers)."""
        finished, self._finished = self._finished, []
        return finished



    # -- durability -----------------------------------------------------------------------
    def unflushed(self) -> int:
        """Records, events and receipts changed since the last flush (how full a group commit is)."""
        p = self._pending
        return len(p.inserts) + len(p.updates) + len(p.events) + len(p.receipts)

    def flush(self) -> None:
        """Write every change since the last flush in one transaction.

        If the write fails, memory is rebuilt from storage before the error is raised: what
        the caller is told failed is not in memory either, so it is never delivered later.
        """
        if not self._pending:
            return
        try:
            written = self._pending.write(self._storage)
        except Exception:
            self.counters["write_failures"] += 1
            self._finished = []
            self._recover(self._last_now)
            raise
        self._pending = PendingWrite()
        for record in written:  # findable in storage now: final, or waiting on disk only
            if record.idempotency_key and (record.final or record.tag not in self._live):
                self._idempotency.pop((record.tenant, record.idempotency_key), None)
        self._live.pack(written)

    # -- helpers --------------------------------------------------------------------------
    def _stored(self, tag: str) -> Record | None:
        """A record no longer live: its unflushed version if there is one, else storage's."""
        return self._pending.get(tag) or self._storage.get(tag)

    def _log(self, record: Record, event: str, status: str, entry: Attempt | None,
             now: float) -> None:
        """One delivery-log row, written with this state change."""
        row = log_event(record, event, status, entry, now)
        if row is not None:
            self._pending.events.append(row)

    def _dirty(self, record: Record) -> None:
        self._pending.update(record)

    def _push_ready(self, record: Record) -> None:
        """Into its lane's heap, or to disk only when older ones of its kind wait there (it
        must not overtake them: ``herald.memory_window``)."""
        if self._beyond_window.stays_on_disk(record.channel, record.priority, record.seq, False):
            self._to_disk(record)
            return
        self._ready.push(self._lane(record), record.priority, record.seq, record.tag)

    def _to_disk(self, record: Record) -> None:
        """A waiting record leaves memory; storage (after the next flush) has it."""
        self._live.discard(record.tag)
        self._dirty(record)
        self._beyond_window.add(record.channel, record.priority)

    def _read_back(self, channel: Channel, priority: int, limit: int, now: float) -> int:
        """Read waiting records of (channel, priority) from disk into memory, in acceptance
        order, until ``limit`` of them became ready or the disk has no more; how many did."""
        while True:
            ready, moved, more = self._read_page(channel, priority, limit, now)
            # A page may hold only records memory has already (retries waiting there since
            # a restart read the window): go on past it, or what waits behind it starves.
            if moved or not more or not self._beyond_window.count(channel, priority):
                return ready

    def _read_page(self, channel: Channel, priority: int, limit: int,
                   now: float) -> tuple[int, int, bool]:
        """One page of ``_read_back``: how many became ready, how many came into memory, and
        whether storage has more."""
        cursor = self._beyond_window.cursor(channel, priority)
        rows = self._storage.load_waiting(channel, priority, cursor, limit)
        last = rows[-1].seq if len(rows) == limit else None  # storage has more beyond it
        found = {r.tag: r for r in rows}
        # Changes not flushed yet win over storage (a record sent back to disk a moment ago
        # may still be stored as ``sending``).
        for r in (*self._pending.inserts, *self._pending.updates.values()):
            if (r.channel is channel and r.priority == priority and r.seq > cursor
                    and (last is None or r.seq <= last)):
                found[r.tag] = r
        ready = moved = 0
        for record in sorted(found.values(), key=lambda r: r.seq):
            self._beyond_window.took(channel, priority, record.seq)
            if record.tag in self._live:
                continue  # in memory already (a stray: counted there, not here)
            if record.status not in WAITING or record.held is not None:
                continue  # finished while on disk (uncounted then), or held (herald.held)
            self._beyond_window.remove(channel, priority)
            self._live[record.tag] = record
            moved += 1
            if record.not_before > now:
                heapq.heappush(self._delayed, (record.not_before, record.seq, record.tag))
            else:
                self._ready.push(self._lane(record), record.priority, record.seq, record.tag)
                ready += 1
        if not found and self._beyond_window.count(channel, priority):
            # Counted but not found (a count that drifted): trust the disk.
            self._beyond_window.remove(channel, priority, self._beyond_window.count(channel, priority))
        return ready, moved, last is not None

    def _refill(self, lane: Lane, want: int, now: float) -> int | None:
        """Make the best ``want`` of ``lane`` be in memory (reading from disk at each priority
        that runs short); the highest priority still waiting on disk only, if any."""
        if lane.channel not in WINDOWED:
            return None
        need = want
        for priority in range(MAX_PRIORITY, -1, -1):
            in_memory = self._ready.count(lane, priority)
            if in_memory < need and self._beyond_window.count(lane.channel, priority):
                in_memory += self._read_back(lane.channel, priority,
                                             max(self._read_size, need - in_memory), now)
            need -= in_memory
            if need <= 0:
                break
        return self._beyond_window.highest(lane.channel)

    # -- the admin console: any tenant's records, paused channels, figures ---------------
    _admin: AdminQueries | None = None
    _pauses: Pauses | None = None

    @property
    def admin_queries(self) -> AdminQueries:
        if self._admin is None:
            self._admin = self._storage.admin()
        return self._admin

    def open_admin(self) -> None:
        """Read the pauses and make what the admin queries need (SQLite indexes) now: the
        shell calls this while it recovers, where a long first index build blocks no call."""
        self._pauses = Pauses(self.admin_queries.load_pauses())

    @property
    def pauses(self) -> Pauses:
        """Channels nothing is leased from (``herald.pauses``), read from storage once."""
        if self._pauses is None:
            self._pauses = Pauses(self.admin_queries.load_pauses())
        return self._pauses

    def pause(self, channel: Channel, now: float) -> None:
        """Lease nothing of ``channel`` from now on, restarts included; durable at return."""
        self.admin_queries.save_pause(channel.value, now)
        self.pauses.add(channel, now)

    def resume(self, channel: Channel) -> None:
        self.admin_queries.save_pause(channel.value, None)
        self.pauses.discard(channel)

    def find(self, tag: str) -> Record:
        """A notification of any tenant (``get`` is one tenant's view)."""
        record = self._live.get(tag) or self._stored(tag)
        if record is None:
            raise NotFound(f"no notification {tag}")
        return record

    def search(self, query: SearchQuery) -> list[Record]:
        """Records of every tenant matching ``query``, newest first (what is flushed)."""
        return self.admin_queries.search(query)

    def scan(self, query: SearchQuery, budget: int | None) -> Scanned:
        """``search`` looking at most at ``budget`` records; on SQLite it reads through a
        connection of its own, so it may run in another thread than the shard's calls."""
        return self.admin_queries.scan(query, budget)

    def dead_letters(self) -> int:
        return self.admin_queries.count_status(Status.DEAD)

    def oldest_waiting(self, scan: int = 10_000) -> dict[str, float]:
        """Channel key → ``created_at`` of its oldest waiting notification. Live records are
        kept in acceptance order, so it is the first waiting one met; at most ``scan`` records
        are looked at (a revived dead letter, put at the end, may be older still)."""
        oldest: dict[str, float] = {}
        for waiting in itertools.islice(self._live.waiting_since(), scan):
            if waiting is not None and waiting[0].key not in oldest:
                oldest[waiting[0].key] = waiting[1]
                if len(oldest) == len(Channel):
                    break
        return oldest
