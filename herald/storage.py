"""Where a queue shard keeps its records: a small interface, in memory or in SQLite (WAL).

A shard calls ``write`` once per operation batch; ``write`` returns only after the batch is
durable, which is what lets intake answer 202. Records are stored as JSON, never pickled.
"""

from __future__ import annotations

import abc
import copy
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from herald.admin_queries import AdminQueries, MemoryAdminQueries, SQLiteAdminQueries
from herald.attempt import Attempt
from herald.channels import Channel
from herald.delivery_log import LogEvent
from herald.outcome import Outcome
from herald.record import Record
from herald.status import FINAL, Status

_COLUMNS = (
    "tag", "tenant", "type", "channel", "priority", "seq", "uid", "recipient", "idempotency_key",
    "created_at", "expires_at", "payload", "status", "attempts", "not_before", "lease_until",
    "updated_at", "provider_id", "history", "lease_token",
)
_MUTABLE = ("status", "attempts", "not_before", "lease_until", "updated_at", "provider_id",
            "history", "lease_token")
#: Receipts held for a notification still being sent: tag → the receipt, or None to forget it.
ReceiptChanges = Mapping[str, Outcome | None]
_FINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(FINAL))


def _history_json(history: Sequence[Attempt]) -> bytes:
    return orjson.dumps([entry.to_dict() for entry in history])


class Storage(abc.ABC):
    @abc.abstractmethod
    def load_live(self) -> list[Record]:
        """Every record not in a final state, oldest first."""

    @abc.abstractmethod
    def get(self, tag: str) -> Record | None: ...

    @abc.abstractmethod
    def find_idempotent(self, tenant: str, key: str) -> str | None:
        """The tag first accepted for (tenant, ``mq-uuid-btag``), if any."""

    def existing(self, tags: Sequence[str]) -> set[str]:
        """Which of ``tags`` are stored (one query for a batch)."""
        return {tag for tag in tags if self.get(tag) is not None}

    def find_idempotent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """``find_idempotent`` for a batch of (tenant, key): only the ones found."""
        found = {}
        for tenant, key in keys:
            tag = self.find_idempotent(tenant, key)
            if tag is not None:
                found[(tenant, key)] = tag
        return found

    @abc.abstractmethod
    def max_seq(self) -> int: ...

    @abc.abstractmethod
    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        """Persist new records, the mutable fields of changed ones, their delivery-log events
        and the held receipts that changed, atomically."""

    @abc.abstractmethod
    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        """Record (tenant, key) → tag for keys not claimed yet; the tag holding each key."""

    @abc.abstractmethod
    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The tags holding the claimed ones of ``keys``."""

    @abc.abstractmethod
    def load_receipts(self) -> list[tuple[str, Outcome]]:
        """Receipts held for notifications that were still being sent."""

    @abc.abstractmethod
    def delete_final(self, updated_before: float, limit: int) -> int:
        """Delete up to ``limit`` final records last changed before ``updated_before``."""

    @abc.abstractmethod
    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        """Up to ``limit`` logged events with an id above ``after``, oldest first."""

    @abc.abstractmethod
    def delete_events(self, through: int) -> None:
        """Forget the events up to id ``through`` (they are in a closed log segment now)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def admin(self) -> AdminQueries:
        """The admin console's queries over this backend (``herald.admin_queries``)."""
        return AdminQueries()


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

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        for tenant, key, tag in entries:
            self._claims.setdefault((tenant, key), (tag, now))
        return [self._claims[(tenant, key)][0] for tenant, key, _ in entries]

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {k: self._claims[k][0] for k in keys if k in self._claims}

    def load_live(self) -> list[Record]:
        live = [copy.deepcopy(r) for r in self._rows.values() if r.status not in FINAL]
        return sorted(live, key=lambda r: r.seq)

    def get(self, tag: str) -> Record | None:
        row = self._rows.get(tag)
        return copy.deepcopy(row) if row else None

    def find_idempotent(self, tenant: str, key: str) -> str | None:
        return self._idempotency.get((tenant, key))

    def max_seq(self) -> int:
        return max((r.seq for r in self._rows.values()), default=0)

    def load_receipts(self) -> list[tuple[str, Outcome]]:
        return list(self._receipts.items())

    def delete_final(self, updated_before: float, limit: int) -> int:
        for key in [k for k, (_, at) in self._claims.items() if at < updated_before][:limit]:
            del self._claims[key]
        old = [t for t, r in self._rows.items() if r.status in FINAL and r.updated_at < updated_before]
        for tag in old[:limit]:
            record = self._rows.pop(tag)
            if record.idempotency_key:
                self._idempotency.pop((record.tenant, record.idempotency_key), None)
        return min(len(old), limit)

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        for record in (*inserts, *updates):  # encode first, as a disk would: what cannot be
            orjson.dumps(record.payload)     # stored fails here and changes nothing
            _history_json(record.history)
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
            for name in _MUTABLE:
                setattr(stored, name, copy.deepcopy(getattr(record, name)))


    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        ids = sorted(i for i in self._events if i > after)[:limit]
        return [(i, self._events[i]) for i in ids]

    def delete_events(self, through: int) -> None:
        for i in [i for i in self._events if i <= through]:
            del self._events[i]

    def admin(self) -> AdminQueries:
        return MemoryAdminQueries(self._rows, self._pauses)


class SQLiteStorage(Storage):
    """One SQLite file per shard in WAL mode; one transaction per ``write``."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        if str(path) != ":memory:":  # SQLite's in-memory database has no file
            path.parent.mkdir(parents=True, exist_ok=True)
            # Personal data: readable by Herald's user only (SQLite gives -wal/-shm the same mode).
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS notifications ("
            "tag TEXT PRIMARY KEY, tenant TEXT NOT NULL, type TEXT NOT NULL, channel TEXT NOT NULL,"
            " priority INTEGER NOT NULL, seq INTEGER NOT NULL, uid TEXT NOT NULL, recipient TEXT,"
            " idempotency_key TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,"
            " payload BLOB NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
            " not_before REAL NOT NULL, lease_until REAL NOT NULL, updated_at REAL NOT NULL,"
            " provider_id TEXT, history BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS notifications_idempotency"
            " ON notifications (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL"
        )
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_live ON notifications (seq)"
            f" WHERE status NOT IN ({_FINAL_SQL})"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " event BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS receipts (tag TEXT PRIMARY KEY, receipt BLOB NOT NULL)")
        self._db.execute(  # idempotency keys whose notification lives on another shard
            "CREATE TABLE IF NOT EXISTS claims (tenant TEXT NOT NULL, key TEXT NOT NULL,"
            " tag TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (tenant, key))")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(notifications)")}
        if "lease_token" not in columns:  # a data dir from before lease tokens
            self._db.execute(
                "ALTER TABLE notifications ADD COLUMN lease_token REAL NOT NULL DEFAULT 0")
        # MAX(seq) at start is an index look-up, not a scan of every record ever kept.
        self._db.execute("CREATE INDEX IF NOT EXISTS notifications_seq ON notifications (seq)")
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_final_age ON notifications (updated_at)"
            f" WHERE status IN ({_FINAL_SQL})"
        )
        self._insert_sql = (
            f"INSERT OR IGNORE INTO notifications ({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )
        self._update_sql = (
            f"UPDATE notifications SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE tag = ?"
        )

    @staticmethod
    def _row(record: Record) -> tuple[Any, ...]:
        values = [getattr(record, c) for c in _COLUMNS]
        values[_COLUMNS.index("channel")] = Channel(record.channel).value
        values[_COLUMNS.index("status")] = Status(record.status).value
        values[_COLUMNS.index("payload")] = orjson.dumps(record.payload)
        values[_COLUMNS.index("history")] = _history_json(record.history)
        return tuple(values)

    @staticmethod
    def _record(row: Sequence[Any]) -> Record:
        data = dict(zip(_COLUMNS, row, strict=True))
        data["payload"] = orjson.loads(data["payload"])
        data["history"] = [Attempt.from_dict(entry) for entry in orjson.loads(data["history"])]
        data["channel"] = Channel(data["channel"])
        data["status"] = Status(data["status"])
        return Record(**data, size=len(row[_COLUMNS.index("payload")]))

    def load_live(self) -> list[Record]:
        cursor = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM notifications"
            f" WHERE status NOT IN ({_FINAL_SQL}) ORDER BY seq"
        )
        return [self._record(row) for row in cursor]

    def get(self, tag: str) -> Record | None:
        row = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM notifications WHERE tag = ?", (tag,)
        ).fetchone()
        return self._record(row) if row else None

    def find_idempotent(self, tenant: str, key: str) -> str | None:
        row = self._db.execute(
            "SELECT tag FROM notifications WHERE tenant = ? AND idempotency_key = ?",
            (tenant, key),
        ).fetchone()
        return row[0] if row else None

    def find_idempotent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return self._tags_by_key("notifications", "idempotency_key", keys)

    def _tags_by_key(self, table: str, key_column: str,
                     keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(tenant, key) → tag for the ``keys`` found in ``table``, one query per 400 keys."""
        found: dict[tuple[str, str], str] = {}
        for start in range(0, len(keys), 400):  # two parameters a key, under SQLite's limit
            chunk = keys[start:start + 400]
            marks = " OR ".join(f"(tenant = ? AND {key_column} = ?)" for _ in chunk)
            params = [value for key in chunk for value in key]
            for tenant, key, tag in self._db.execute(
                    f"SELECT tenant, {key_column}, tag FROM {table} WHERE {marks}", params):
                found[(tenant, key)] = tag
        return found

    def existing(self, tags: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(tags), 500):  # stay under SQLite's parameter limit
            chunk = tags[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            found.update(row[0] for row in self._db.execute(
                f"SELECT tag FROM notifications WHERE tag IN ({marks})", chunk))
        return found

    def max_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM notifications").fetchone()
        return int(row[0] or 0)

    def load_receipts(self) -> list[tuple[str, Outcome]]:
        rows = self._db.execute("SELECT tag, receipt FROM receipts")
        return [(tag, Outcome(**orjson.loads(receipt))) for tag, receipt in rows]

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?)",
                                 [(t, k, tag, now) for t, k, tag in entries])
        found = self.claimed([(t, k) for t, k, _ in entries])
        return [found[(t, k)] for t, k, _ in entries]

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._tags_by_key("claims", "key", keys)

    def delete_final(self, updated_before: float, limit: int) -> int:
        with self._db:
            self._db.execute("DELETE FROM claims WHERE rowid IN (SELECT rowid FROM claims"
                             " WHERE at < ? LIMIT ?)", (updated_before, limit))
            cursor = self._db.execute(
                f"DELETE FROM notifications WHERE rowid IN (SELECT rowid FROM notifications"
                f" WHERE status IN ({_FINAL_SQL}) AND updated_at < ? LIMIT ?)",
                (updated_before, limit))
        return int(cursor.rowcount)

    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        rows = self._db.execute(
            "SELECT id, event FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [(row[0], LogEvent(**orjson.loads(row[1]))) for row in rows]

    def delete_events(self, through: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM events WHERE id <= ?", (through,))

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if not (inserts or updates or events or receipts):
            return
        # Encode everything before the transaction: a value that cannot be stored fails here,
        # with nothing begun.
        insert_rows = [self._row(r) for r in inserts]
        update_rows = [(Status(r.status).value, r.attempts, r.not_before, r.lease_until,
                        r.updated_at, r.provider_id, _history_json(r.history), r.lease_token, r.tag)
                       for r in updates]
        event_rows = [(orjson.dumps(e),) for e in events]
        held = [(t, orjson.dumps(o)) for t, o in (receipts or {}).items() if o is not None]
        released = [(t,) for t, o in (receipts or {}).items() if o is None]
        with self._db:  # BEGIN … COMMIT (or ROLLBACK on error)
            self._db.execute("BEGIN")
            if event_rows:
                self._db.executemany("INSERT INTO events (event) VALUES (?)", event_rows)
            if insert_rows:
                self._db.executemany(self._insert_sql, insert_rows)
            if update_rows:
                self._db.executemany(self._update_sql, update_rows)
            if held:
                self._db.executemany("INSERT OR REPLACE INTO receipts VALUES (?, ?)", held)
            if released:
                self._db.executemany("DELETE FROM receipts WHERE tag = ?", released)

    def close(self) -> None:
        self._db.close()

    def admin(self) -> AdminQueries:
        return SQLiteAdminQueries(self._db, _COLUMNS, self._record)
