"""The admin console's queries over a shard's storage: search, dead letters, paused channels.

``Storage.admin()`` hands out the ones of its backend: ``MemoryAdminQueries`` over the memory
backend's rows, ``SQLiteAdminQueries`` over the shard's SQLite file (and
``herald.pg_admin_queries.PostgresAdminQueries`` over PostgreSQL). The base class is what a
backend without them answers: no pauses, and no search.

Searches read what is stored, which is what the shard knows: the shard's shell flushes every
change before it answers, so between calls memory and disk agree. SQLite gets two indexes for
the console (newest first by ``created_at, tag``, and by status then age), made when the shard
opens the queries (its shell does so while it recovers, off its event loop: a big file from
before the console gets them once). A search walks at most its budget of records
(``herald.search``) through a read-only connection of its own, so the shell runs it in a thread
while the shard goes on taking calls (WAL: readers and the writer do not wait for each other).
One that still runs longer than ``SEARCH_SECONDS`` is interrupted: a 422 asking for a narrower one.
"""

from __future__ import annotations

import copy
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from herald.errors import ValidationError
from herald.record import Record
from herald.search import Position, Scanned, SearchQuery, scan_newest
from herald.status import Status

__all__ = ["AdminQueries", "MemoryAdminQueries", "SQLiteAdminQueries"]

_SCHEMA = (
    # Newest first with the tie-break: a walk in search order reads the index, never sorts.
    "CREATE INDEX IF NOT EXISTS notifications_newest ON notifications (created_at, tag)",
    "DROP INDEX IF EXISTS notifications_created",  # what the one above replaced
    "CREATE INDEX IF NOT EXISTS notifications_status_age ON notifications (status, created_at)",
    "CREATE TABLE IF NOT EXISTS pauses (channel TEXT PRIMARY KEY, since REAL NOT NULL)",
)
SEARCH_SECONDS = 2.0
#: SQLite virtual-machine steps between two looks at the clock during a search.
PROGRESS_STEPS = 10_000


class AdminQueries:
    """What a backend answers the admin console; this base keeps no pauses and cannot search."""

    def search(self, query: SearchQuery) -> list[Record]:
        """Up to ``query.limit`` records of any state matching ``query``, newest first."""
        return self.scan(query, None).records

    def scan(self, query: SearchQuery, budget: int | None) -> Scanned:
        """``search`` looking at most at ``budget`` records (None: no bound)."""
        raise NotImplementedError("this storage cannot be searched")

    def count_status(self, status: Status) -> int:
        """How many records are in ``status`` (the overview's dead letters)."""
        raise NotImplementedError("this storage cannot be searched")

    def load_pauses(self) -> dict[str, float]:
        """Paused channel (``EMAIL``) → since when."""
        return {}

    def save_pause(self, channel: str, since: float | None) -> None:
        """Pause ``channel`` (from ``since``) or resume it (None); durable when this returns."""
        raise NotImplementedError("this storage cannot keep pauses")


class MemoryAdminQueries(AdminQueries):
    """Over the memory backend's rows (copies out, as a disk would)."""

    def __init__(self, rows: Mapping[str, Record], pauses: MutableMapping[str, float],
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._rows, self._pauses = rows, pauses
        self._on_commit = on_commit

    def scan(self, query: SearchQuery, budget: int | None) -> Scanned:
        found = scan_newest(list(self._rows.values()), query, budget)
        return Scanned(copy.deepcopy(found.records), found.scanned_to)

    def count_status(self, status: Status) -> int:
        return sum(1 for record in self._rows.values() if record.status is status)

    def load_pauses(self) -> dict[str, float]:
        return dict(self._pauses)

    def save_pause(self, channel: str, since: float | None) -> None:
        if since is None:
            self._pauses.pop(channel, None)
        else:
            self._pauses[channel] = since
        self._on_commit()


class SQLiteAdminQueries(AdminQueries):
    """Over a shard's SQLite connection (used by one thread at a time, as the shard's is);
    ``scan`` opens a read-only connection of its own to ``path``, from any thread."""

    def __init__(self, db: sqlite3.Connection, columns: Sequence[str],
                 to_record: Callable[[Sequence[Any]], Record], path: str | None = None,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._db, self._columns, self._to_record = db, columns, to_record
        self._path = path
        self._on_commit = on_commit  # counts the storage's commits (``Storage.commits``)
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _reader(self) -> sqlite3.Connection:
        if self._path is None:  # SQLite's in-memory database: only the shard's connection sees it
            return self._db
        uri = "file:" + urllib.parse.quote(self._path) + "?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    def scan(self, query: SearchQuery, budget: int | None) -> Scanned:
        columns = ", ".join(self._columns)
        bounds, bound_params = query.range_where()
        filters, filter_params = query.filter_where()
        order = "ORDER BY created_at DESC, tag DESC"
        if budget is None:
            sql = f"SELECT {columns} FROM notifications WHERE {bounds} AND {filters} {order} LIMIT ?"
            params = [*bound_params, *filter_params, query.limit]
        else:  # the walk: at most ``budget`` records in range, newest first, then the filters
            sql = (f"SELECT {columns} FROM (SELECT {columns} FROM notifications WHERE {bounds}"
                   f" {order} LIMIT ?) WHERE {filters} {order} LIMIT ?")
            params = [*bound_params, budget, *filter_params, query.limit]
        db = self._reader()
        deadline = time.monotonic() + SEARCH_SECONDS
        db.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        try:
            rows = db.execute(sql, params).fetchall()
            stopped = None
            if budget is not None and len(rows) < query.limit:
                # The walk's last record, if records in range went on after it.
                edge = db.execute(f"SELECT created_at, tag FROM notifications WHERE {bounds}"
                                  f" {order} LIMIT 2 OFFSET ?", [*bound_params, budget - 1]).fetchall()
                if len(edge) == 2:
                    stopped = Position(float(edge[0][0]), str(edge[0][1]))
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            raise ValidationError("the search took too long: narrow it (status, channel, tenant, "
                                  "since…)") from None
        finally:
            db.set_progress_handler(None, 0)
            if db is not self._db:
                db.close()
        return Scanned([self._to_record(row) for row in rows], stopped)

    def count_status(self, status: Status) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM notifications WHERE status = ?",
                               (status.value,)).fetchone()
        return int(row[0])

    def load_pauses(self) -> dict[str, float]:
        return {str(channel): float(since)
                for channel, since in self._db.execute("SELECT channel, since FROM pauses")}

    def save_pause(self, channel: str, since: float | None) -> None:
        with self._db:
            if since is None:
                self._db.execute("DELETE FROM pauses WHERE channel = ?", (channel,))
            else:
                self._db.execute("INSERT OR REPLACE INTO pauses VALUES (?, ?)", (channel, since))
        self._on_commit()
