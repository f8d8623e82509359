"""A shard's live records by tag, most of the waiting ones packed: what the memory window costs.

A record as an object costs about 2.2 KB (its payload as a tree of dicts and strings is two
thirds of it); the same record packed — its fields and payload as one JSON ``bytes``, the form
storage keeps — costs a third of that. A shard's window holds up to ``memory_window`` (20,000)
records, nearly all of them waiting, most of them far from their turn: those are kept packed.

Which are packed: after each flush, the waiting records just written, once more than ``keep``
live records are objects (the first ``keep`` leave soonest and are leased without a decode).
A packed record becomes an object again, for good, the first time it is read (``get``), so a
caller always holds the one object the map holds and may change it; a record never changes
while packed. Packing happens at a flush, between the shard's calls: an object a caller kept
across one (the shell, after its commit) is a copy as of that flush, to read, not to change.

Every field round-trips exactly (JSON floats are shortest round-trip forms; a record with a
non-finite float is not packed), and the payload reads back as storage would read it back
after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import orjson

from herald.attempt import Attempt
from herald.channels import Channel
from herald.record import Record
from herald.status import WAITING, Status

#: Enum members by value: a dict look-up, not ``Enum.__call__`` (a tenth of an unpack).
_CHANNELS = {c.value: c for c in Channel}
_STATUSES = {s.value: s for s in WAITING}


def pack(record: Record) -> bytes:
    """Every field of ``record`` but its tag, as a JSON array: its channel and ``created_at``
    first (``waiting_since`` reads them alone)."""
    r = record
    # Copied: orjson's answer keeps its 4 KB buffer (sys.getsizeof does not show it).
    return bytes(memoryview(orjson.dumps([
        r.channel, r.created_at, r.tenant, r.type, r.priority, r.seq, r.uid, r.recipient,
        r.idempotency_key, r.expires_at, r.payload, r.status, r.attempts, r.not_before, r.lease_until,
        r.updated_at, r.provider_id, [entry.to_dict() for entry in r.history], r.lease_token,
        r.deferrals, r.held, r.size])))


def unpack(tag: str, packed: bytes) -> Record:
    (channel, created_at, tenant, kind, priority, seq, uid, recipient, key, expires_at, payload,
     status, attempts, not_before, lease_until, updated_at, provider_id, history, lease_token,
     deferrals, held, size) = orjson.loads(packed)
    return Record(tag, tenant, kind, _CHANNELS[channel], priority, seq, uid, recipient, key,
                  created_at, expires_at, payload, _STATUSES[status], attempts, not_before,
                  lease_until, updated_at, provider_id,
                  [Attempt.from_dict(e) for e in history] if history else [], lease_token,
                  deferrals, held, size)


def packable(record: Record) -> bool:
    """Waiting in line (not held, not being sent) with every float finite (JSON has no inf;
    a finite sum has finite terms)."""
    r = record
    return ((r.status is Status.QUEUED or r.status is Status.RETRYING) and r.held is None
            and math.isfinite(r.created_at + r.expires_at + r.not_before + r.lease_until
                              + r.updated_at + r.lease_token))


class LiveRecords:
    """tag → live record, in the order they became live; waiting ones beyond ``keep`` packed."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._items: dict[str, Record | bytes] = {}
        #: How many of ``_items`` are packed.
        self.packed = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, tag: str) -> bool:
        return tag in self._items

    def get(self, tag: str) -> Record | None:
        item = self._items.get(tag)
        if item.__class__ is bytes:
            item = self._items[tag] = unpack(tag, item)  # type: ignore[arg-type]
            self.packed -= 1
        return item  # type: ignore[return-value]

    def __getitem__(self, tag: str) -> Record:
        record = self.get(tag)
        if record is None:
            raise KeyError(tag)
        return record

    def __setitem__(self, tag: str, record: Record) -> None:
        if self._items.get(tag).__class__ is bytes:
            self.packed -= 1
        self._items[tag] = record

    def discard(self, tag: str) -> None:
        if self._items.pop(tag, None).__class__ is bytes:
            self.packed -= 1

    def pack(self, records: Sequence[Record]) -> None:
        """Pack those of ``records`` that are live and waiting, last first (in acceptance
        order, the last leave last), while more than ``keep`` live records are objects."""
        items = self._items
        for record in reversed(records):
            if len(items) - self.packed <= self._keep:
                return
            if items.get(record.tag) is record and packable(record):
                items[record.tag] = pack(record)
                self.packed += 1

    def records(self) -> Iterator[Record]:
        """Every live record, in order, each an object from now on."""
        for tag in list(self._items):
            record = self.get(tag)
            if record is not None:
                yield record

    def waiting_since(self) -> Iterator[tuple[Channel, float] | None]:
        """For each live record, in the order they became live: (channel, ``created_at``) if
        it is waiting, else None; nothing unpacked (a packed record is waiting)."""
        for item in self._items.values():
            if isinstance(item, Record):
                yield (item.channel, item.created_at) if item.status in WAITING else None
            else:  # '["EMAIL",1765000000.5,…': the first two fields, not the payload
                end = item.index(b",", item.index(b",") + 1)  # type: ignore[union-attr]
                channel, created_at = orjson.loads(item[:end] + b"]")  # type: ignore[index]
                yield _CHANNELS[channel], created_at
