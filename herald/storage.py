"""Where a queue shard keeps its records: a small interface, in memory, in SQLite (WAL) or in
PostgreSQL (``herald.pg_storage``).

A shard calls ``write`` once per operation batch; ``write`` returns only after the batch is
durable, which is what lets intake answer 202. Records are stored as JSON, never pickled
(``herald.record_rows``).
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from herald.admin_queries import AdminQueries, SQLiteAdminQueries
from herald.channels import Channel
from herald.delivery_log import LogEvent
from herald.documents import Documents, SQLiteDocuments
from herald.inbox_store import InboxStore, SQLiteInboxStore, prepare_sqlite
from herald.outcome import Outcome
from herald.record import Record
from herald.record_rows import (
    COLUMNS,
    FINAL_SQL,
    INSERTED,
    MUTABLE,
    WAITING_SQL,
    decode_record,
    encode_insert,
    encode_update,
)
from herald.status import Status

#: Receipts held for a notification still being sent: tag → the receipt, or None to forget it.
ReceiptChanges = Mapping[str, Outcome | None]
#: (channel, priority, tenant, status, count, payload bytes) of waiting records.
WaitingCount = tuple[Channel, int, str, Status, int, int]


class Storage(abc.ABC):
    #: Write transactions committed by this storage object (``herald_store_commits_total``):
    #: what group commit saves, counted the same way by every backend.
    commits: int = 0

    @abc.abstractmethod
    def load_live(self) -> list[Record]:
        """Every record not in a final state, oldest first."""

    @abc.abstractmethod
    def get(self, tag: str) -> Record | None: ...

    # -- the part of the queue kept on disk only (``herald.memory_window``) ------------------------
    @abc.abstractmethod
    def load_in_memory(self, windowed: Sequence[Channel]) -> list[Record]:
        """Live records but the held ones and the waiting ones of ``windowed`` channels,
        oldest first."""

    @abc.abstractmethod
    def waiting_counts(self, windowed: Sequence[Channel]) -> list[WaitingCount]:
        """Waiting records in line (not held) of ``windowed`` channels, counted by (channel,
        priority, tenant, status), with their payload bytes."""

    @abc.abstractmethod
    def load_waiting(self, channel: Channel, priority: int, after_seq: int,
                     limit: int) -> list[Record]:
        """Up to ``limit`` waiting records in line (not held) of (channel, priority) with
        ``seq`` above ``after_seq``, lowest ``seq`` first."""

    # -- waiting records kept on disk outside the line (``herald.held``), and expiry -------
    @abc.abstractmethod
    def held_counts(self) -> list[WaitingCount]:
        """Held waiting records, counted like ``waiting_counts``."""

    @abc.abstractmethod
    def load_held_due(self, now: float, limit: int) -> list[Record]:
        """Up to ``limit`` records held ``deferred`` whose ``not_before`` has come."""

    @abc.abstractmethod
    def load_parked(self, tenant: str, uid: str) -> list[Record]:
        """The records held ``parked`` for one user, lowest ``seq`` first."""

    @abc.abstractmethod
    def load_expired(self, now: float, limit: int) -> list[Record]:
        """Up to ``limit`` waiting records (in line, held or in memory) whose TTL is over,
        soonest expired first."""

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
    def delete_final(self, updated_before: float, limit: int, claims_before: float) -> int:
        """Delete up to ``limit`` final records last changed before ``updated_before``, and up
        to ``limit`` idempotency claims made before ``claims_before``."""

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

    @abc.abstractmethod
    def inbox(self) -> InboxStore:
        """Its users' feeds (``herald.inbox``)."""

    def documents(self) -> Documents:
        """Where this shard keeps its small documents (``herald.documents``); this base keeps
        them in memory only."""
        return Documents()


class SQLiteStorage(Storage):
    """One SQLite file per shard in WAL mode; one transaction per ``write``."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        if str(path) != ":memory:":  # SQLite's in-memory database has no file
            path.parent.mkdir(parents=True, exist_ok=True)
            # Personal data: readable by Herald's user only (SQLite gives -wal/-shm the same mode).
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
        self._path = str(path)  # the admin search reads it through a read-only connection
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
            f" WHERE status NOT IN ({FINAL_SQL})"
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
        if "deferrals" not in columns:  # a data dir from before held records (herald.held)
            self._db.execute(
                "ALTER TABLE notifications ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0")
            self._db.execute("ALTER TABLE notifications ADD COLUMN held TEXT")
        # MAX(seq) at start is an index look-up, not a scan of every record ever kept.
        self._db.execute("CREATE INDEX IF NOT EXISTS notifications_seq ON notifications (seq)")
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_final_age ON notifications (updated_at)"
            f" WHERE status IN ({FINAL_SQL})"
        )
        # What waits, by (channel, priority) in acceptance order, and what is being sent: how
        # a shard reads a window of what waits (herald.memory_window) instead of every record.
        # (Held records wait outside the line: herald.held; the index of before they existed
        # is replaced by one that leaves them out.)
        self._db.execute("DROP INDEX IF EXISTS notifications_waiting")
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_in_line ON notifications"
            f" (channel, priority, seq) WHERE status IN ({WAITING_SQL}) AND held IS NULL")
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_held ON notifications (held, not_before)"
            f" WHERE status IN ({WAITING_SQL}) AND held IS NOT NULL")
        # Expiry of waiting records whatever their lane (QueueShard.expire_due).
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS notifications_expiry ON notifications (expires_at)"
            f" WHERE status IN ({WAITING_SQL})")
        self._db.execute("CREATE INDEX IF NOT EXISTS notifications_sending ON notifications (seq)"
                         " WHERE status = 'sending'")
        prepare_sqlite(self._db)  # users' feeds: herald.inbox_store
        self._insert_sql = (f"INSERT OR IGNORE INTO notifications ({', '.join(INSERTED)})"
                            f" VALUES ({', '.join('?' for _ in INSERTED)})")
        self._update_sql = (
            f"UPDATE notifications SET {', '.join(f'{c} = ?' for c in MUTABLE)} WHERE tag = ?"
        )

    def load_live(self) -> list[Record]:
        cursor = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications"
            f" WHERE status NOT IN ({FINAL_SQL}) ORDER BY seq"
        )
        return [decode_record(row) for row in cursor]

    def load_in_memory(self, windowed: Sequence[Channel]) -> list[Record]:
        columns = ", ".join(COLUMNS)
        kept = [c.value for c in Channel if c not in windowed]
        marks = ", ".join("?" for _ in kept)
        rows = [*self._db.execute(f"SELECT {columns} FROM notifications WHERE status = 'sending'"),
                *self._db.execute(f"SELECT {columns} FROM notifications WHERE status IN"
                                  f" ({WAITING_SQL}) AND held IS NULL AND channel IN ({marks})", kept)]
        return sorted((decode_record(row) for row in rows), key=lambda r: r.seq)

    def waiting_counts(self, windowed: Sequence[Channel]) -> list[WaitingCount]:
        marks = ", ".join("?" for _ in windowed)
        rows = self._db.execute(
            f"SELECT channel, priority, tenant, status, COUNT(*), SUM(LENGTH(payload))"
            f" FROM notifications WHERE status IN ({WAITING_SQL}) AND held IS NULL"
            f" AND channel IN ({marks})"
            f" GROUP BY channel, priority, tenant, status", [c.value for c in windowed])
        return [(Channel(c), p, t, Status(s), n, b) for c, p, t, s, n, b in rows]

    def held_counts(self) -> list[WaitingCount]:
        rows = self._db.execute(
            f"SELECT channel, priority, tenant, status, COUNT(*), SUM(LENGTH(payload))"
            f" FROM notifications WHERE status IN ({WAITING_SQL}) AND held IS NOT NULL"
            f" GROUP BY channel, priority, tenant, status")
        return [(Channel(c), p, t, Status(s), n, b) for c, p, t, s, n, b in rows]

    def load_held_due(self, now: float, limit: int) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE held = 'deferred'"
            f" AND status IN ({WAITING_SQL}) AND not_before <= ? ORDER BY not_before LIMIT ?",
            (now, limit))
        return [decode_record(row) for row in rows]

    def load_parked(self, tenant: str, uid: str) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE held = 'parked'"
            f" AND status IN ({WAITING_SQL}) AND tenant = ? AND uid = ? ORDER BY seq",
            (tenant, uid))
        return [decode_record(row) for row in rows]

    def load_expired(self, now: float, limit: int) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE status IN ({WAITING_SQL})"
            f" AND expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit))
        return [decode_record(row) for row in rows]

    def load_waiting(self, channel: Channel, priority: int, after_seq: int,
                     limit: int) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE channel = ? AND priority = ?"
            f" AND status IN ({WAITING_SQL}) AND held IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (channel.value, priority, after_seq, limit))
        return [decode_record(row) for row in rows]

    def get(self, tag: str) -> Record | None:
        row = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE tag = ?", (tag,)
        ).fetchone()
        return decode_record(row) if row else None

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
        self.commits += 1
        found = self.claimed([(t, k) for t, k, _ in entries])
        return [found[(t, k)] for t, k, _ in entries]

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._tags_by_key("claims", "key", keys)

    def delete_final(self, updated_before: float, limit: int, claims_before: float) -> int:
        with self._db:
            self._db.execute("DELETE FROM claims WHERE rowid IN (SELECT rowid FROM claims"
                             " WHERE at < ? LIMIT ?)", (claims_before, limit))
            cursor = self._db.execute(
                f"DELETE FROM notifications WHERE rowid IN (SELECT rowid FROM notifications"
                f" WHERE status IN ({FINAL_SQL}) AND updated_at < ? LIMIT ?)",
                (updated_before, limit))
        self.commits += 1
        return int(cursor.rowcount)

    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        rows = self._db.execute(
            "SELECT id, event FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [(row[0], LogEvent(**orjson.loads(row[1]))) for row in rows]

    def delete_events(self, through: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM events WHERE id <= ?", (through,))
        self.commits += 1

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if not (inserts or updates or events or receipts):
            return
        # Encode everything before the transaction: a value that cannot be stored fails here,
        # with nothing begun.
        insert_rows = [encode_insert(r) for r in inserts]
        update_rows = [encode_update(r) for r in updates]
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
        self.commits += 1

    def close(self) -> None:
        self._db.close()

    def documents(self) -> Documents:
        return SQLiteDocuments(self._db, self._committed)

    def inbox(self) -> InboxStore:
        return SQLiteInboxStore(self._db, self._committed)

    def admin(self) -> AdminQueries:
        return SQLiteAdminQueries(self._db, COLUMNS, decode_record,
                                  None if self._path == ":memory:" else self._path,
                                  on_commit=self._committed)

    def _committed(self) -> None:
        self.commits += 1
