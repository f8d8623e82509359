"""The changes a shard made since its last flush, written to storage in one transaction."""

from __future__ import annotations

from herald.delivery_log import LogEvent
from herald.outcome import Outcome
from herald.record import Record
from herald.storage import Storage


class PendingWrite:
    """New records, changed records, delivery-log events and held receipts, not yet durable."""

    def __init__(self) -> None:
        self.inserts: list[Record] = []
        self.updates: dict[str, Record] = {}
        self.events: list[LogEvent] = []
        #: tag → a receipt to hold, or None to let go of the one held.
        self.receipts: dict[str, Outcome | None] = {}

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.events or self.receipts)

    def insert(self, record: Record) -> None:
        self.inserts.append(record)

    def update(self, record: Record) -> None:
        self.updates[record.tag] = record

    def get(self, tag: str) -> Record | None:
        """The unflushed version of a record no longer live, if any."""
        return self.updates.get(tag)

    def write(self, storage: Storage) -> list[Record]:
        """Write it all in one transaction; return every record written."""
        fresh = {r.tag for r in self.inserts}
        updates = [r for tag, r in self.updates.items() if tag not in fresh]
        storage.write(self.inserts, updates, self.events, self.receipts)
        return [*self.inserts, *updates]
