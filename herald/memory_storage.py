"""Storage in memory: a real backend (copies in and out, like a disk) for tests and benchmarks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import orjson

from herald.admin_queries import AdminQueries, MemoryAdminQueries
from herald.channels import Channel
from herald.delivery_log import LogEvent
from herald.documents import Documents
from herald.inbox_store import InboxStore, MemoryInboxStore
from herald.outcome import Outcome
from herald.record import Record
from herald.record_rows import MUTABLE, history_json
from herald.status import FINAL, WAITING, Status
from herald.storage import ReceiptChanges, Storage, WaitingCount


class MemoryStorage(Storage):
    """A real in-memory backend (copies in and out, like a disk) for tests and benchmarks."""

    def __init__(self) -> None:
        self._rows: dict[str, Record] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._events: dict[int, LogEvent] = {}
        self._event_id = 0
        self._receipts: dict[str, Outcome] = {}
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}
        self._pauses: dict[str, float] = {}
        self._documents = Documents(on_commit=self._committed)
        self._inbox = MemoryInboxStore(self._rows, self._committed)

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        for tenant, key, tag in entries:
            self._claims.setdefault((tenant, key), (tag, now))
        self.commits += bool(entries)
        return [self._claims[(tenant, key)][0] for tenant, key, _ in entries]

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {k: self._claims[k][0] for k in keys if k in self._claims}

    def load_live(self) -> list[Record]:
        live = [copy.deepcopy(r) for r in self._rows.values() if r.status not in FINAL]
        return sorted(live, key=lambda r: r.seq)

    def load_in_memory(self, windowed: Sequence[Channel]) -> list[Record]:
        return [r for r in self.load_live()
                if r.status is Status.SENDING or (r.held is None and r.channel not in windowed)]

    def waiting_counts(self, windowed: Sequence[Channel]) -> list[WaitingCount]:
        return self._counts(lambda r: r.held is None and r.channel in windowed)

    def held_counts(self) -> list[WaitingCount]:
        return self._counts(lambda r: r.held is not None)

    def _counts(self, which: Callable[[Record], bool]) -> list[WaitingCount]:
        counts: dict[tuple[Channel, int, str, Status], list[int]] = {}
        for r in self._rows.values():
            if r.status in WAITING and which(r):
                entry = counts.setdefault((r.channel, r.priority, r.tenant, r.status), [0, 0])
                entry[0] += 1
                entry[1] += r.size
        return [(*key, n, size) for key, (n, size) in counts.items()]

    def load_waiting(self, channel: Channel, priority: int, after_seq: int,
                     limit: int) -> list[Record]:
        rows = sorted((r for r in self._rows.values() if r.channel is channel and r.held is None
                       and r.priority == priority and r.status in WAITING and r.seq > after_seq),
                      key=lambda r: r.seq)
        return [copy.deepcopy(r) for r in rows[:limit]]

    def load_held_due(self, now: float, limit: int) -> list[Record]:
        rows = sorted((r for r in self._rows.values() if r.held == "deferred"
                       and r.status in WAITING and r.not_before <= now),
                      key=lambda r: r.not_before)
        return [copy.deepcopy(r) for r in rows[:limit]]

    def load_parked(self, tenant: str, uid: str) -> list[Record]:
        rows = sorted((r for r in self._rows.values() if r.held == "parked"
                       and r.status in WAITING and r.tenant == tenant and r.uid == uid),
                      key=lambda r: r.seq)
        return [copy.deepcopy(r) for r in rows]

    def load_expired(self, now: float, limit: int) -> list[Record]:
        rows = sorted((r for r in self._rows.values()
                       if r.status in WAITING and r.expires_at <= now),
                      key=lambda r: r.expires_at)
        return [copy.deepcopy(r) for r in rows[:limit]]

    def get(self, tag: str) -> Record | None:
        row = self._rows.get(tag)
        return copy.deepcopy(row) if row else None

    def find_idempotent(self, tenant: str, key: str) -> str | None:
        return self._idempotency.get((tenant, key))

    def max_seq(self) -> int:
        return max((r.seq for r in self._rows.values()), default=0)

    def load_receipts(self) -> list[tuple[str, Outcome]]:
        return list(self._receipts.items())

    def delete_final(self, updated_before: float, limit: int, claims_before: float) -> int:
        for key in [k for k, (_, at) in self._claims.items() if at < claims_before][:limit]:
            del self._claims[key]
        old = [t for t, r in self._rows.items() if r.status in FINAL and r.updated_at < updated_before]
        for tag in old[:limit]:
            record = self._rows.pop(tag)
            if record.idempotency_key:
                self._idempotency.pop((record.tenant, record.idempotency_key), None)
        self.commits += 1
        return min(len(old), limit)

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if not (inserts or updates or events or receipts):
            return
        for record in (*inserts, *updates):  # encode first, as a disk would: what cannot be
            orjson.dumps(record.payload)     # stored fails here and changes nothing
            history_json(record.history)
        for tag, receipt in (receipts or {}).items():
            if receipt is None:
                self._receipts.pop(tag, None)
            else:
                self._receipts[tag] = receipt
        for event in events:
            self._event_id += 1
            self._events[self._event_id] = event
        for record in inserts:
            self._rows[record.tag] = copy.deepcopy(record)
            if record.idempotency_key:
                self._idempotency.setdefault((record.tenant, record.idempotency_key), record.tag)
        for record in updates:
            stored = self._rows[record.tag]
            for name in MUTABLE:
                setattr(stored, name, copy.deepcopy(getattr(record, name)))
        self.commits += 1


    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        ids = sorted(i for i in self._events if i > after)[:limit]
        return [(i, self._events[i]) for i in ids]

    def delete_events(self, through: int) -> None:
        for i in [i for i in self._events if i <= through]:
            del self._events[i]
        self.commits += 1

    def documents(self) -> Documents:
        return self._documents

    def inbox(self) -> InboxStore:
        return self._inbox

    def admin(self) -> AdminQueries:
        return MemoryAdminQueries(self._rows, self._pauses, on_commit=self._committed)

    def _committed(self) -> None:
        self.commits += 1
