"""A record as a row of an SQL store (SQLite and PostgreSQL alike): its columns, in one order,
with the payload and the attempt history as JSON bytes (never pickled)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from herald.attempt import Attempt
from herald.channels import Channel
from herald.inbox import in_inbox
from herald.record import Record
from herald.status import FINAL, WAITING, Status

__all__ = ["COLUMNS", "FINAL_SQL", "INSERTED", "MUTABLE", "WAITING_SQL", "decode_record",
           "encode_insert", "encode_record", "encode_update", "history_json"]

#: A record's stored columns, in the order of ``encode_record``.
COLUMNS = (
    "tag", "tenant", "type", "channel", "priority", "seq", "uid", "recipient", "idempotency_key",
    "created_at", "expires_at", "payload", "status", "attempts", "not_before", "lease_until",
    "updated_at", "provider_id", "history", "lease_token", "deferrals", "held",
)
#: The columns an insert writes: the record's, then whether it is in its user's inbox feed
#: (``herald.inbox``; decided once, and only feed queries read it).
INSERTED = (*COLUMNS, "inbox")
#: The columns an update writes (``encode_update``); the rest never change once inserted.
MUTABLE = ("status", "attempts", "not_before", "lease_until", "updated_at", "provider_id",
           "history", "lease_token", "deferrals", "held")
#: The final and the waiting statuses as SQL lists (what the partial indexes name).
FINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(FINAL))
WAITING_SQL = ", ".join(f"'{s.value}'" for s in sorted(WAITING))


def history_json(history: Sequence[Attempt]) -> bytes:
    return orjson.dumps([entry.to_dict() for entry in history])


def encode_record(record: Record) -> tuple[Any, ...]:
    """``record`` as a row of ``COLUMNS``."""
    values = [getattr(record, c) for c in COLUMNS]
    values[COLUMNS.index("channel")] = Channel(record.channel).value
    values[COLUMNS.index("status")] = Status(record.status).value
    values[COLUMNS.index("payload")] = orjson.dumps(record.payload)
    values[COLUMNS.index("history")] = history_json(record.history)
    return tuple(values)


def encode_insert(record: Record) -> tuple[Any, ...]:
    """``record`` as a row of ``INSERTED``."""
    return (*encode_record(record), in_inbox(record))


def encode_update(record: Record) -> tuple[Any, ...]:
    """The ``MUTABLE`` fields of ``record`` as a row, then its tag."""
    return (Status(record.status).value, record.attempts, record.not_before, record.lease_until,
            record.updated_at, record.provider_id, history_json(record.history),
            record.lease_token, record.deferrals, record.held, record.tag)


def decode_record(row: Sequence[Any]) -> Record:
    """A row of ``COLUMNS`` back to a record; its ``size`` is the stored payload's bytes."""
    data = dict(zip(COLUMNS, row, strict=True))
    data["payload"] = orjson.loads(data["payload"])
    data["history"] = [Attempt.from_dict(entry) for entry in orjson.loads(data["history"])]
    data["channel"] = Channel(data["channel"])
    data["status"] = Status(data["status"])
    return Record(**data, size=len(row[COLUMNS.index("payload")]))
