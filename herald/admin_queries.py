"""The admin console's queries over a shard's storage: search, dead letters, paused channels.

``Storage.admin()`` hands out the ones of its backend: ``MemoryAdminQueries`` over the memory
backend's rows, ``SQLiteAdminQueries`` over the shard's SQLite file. The base class is what a
backend without them answers: no pauses, and no search.

Searches read what is stored, which is what the shard knows: the shard's shell flushes every
change before it answers, so between calls memory and disk agree. SQLite gets two indexes for
the console (newest first, and by status then age), made when the shard opens the queries
(its shell does so while it recovers, off its event loop: a big file from before the console
gets them once). A search that runs longer than ``SEARCH_SECONDS`` is interrupted, since the
shard has other work: a 422 asking for a narrower one.
"""

from __future__ import annotations

import copy
import sqlite3
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from herald.errors import ValidationError
from herald.record import Record
from herald.search import SearchQuery, newest_first
from herald.status import Status

__all__ = ["AdminQueries", "MemoryAdminQueries", "SQLiteAdminQueries"]

_SCHEMA = (
    "CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at)",
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

    def __init__(self, rows: Mapping[str, Record], pauses: MutableMapping[str, float]) -> None:
        self._rows, self._pauses = rows, pauses

    def search(self, query: SearchQuery) -> list[Record]:
        return copy.deepcopy(newest_first(filter(query.matches, self._rows.values()), query.limit))

    def count_status(self, status: Status) -> int:
        return sum(1 for record in self._rows.values() if record.status is status)

    def load_pauses(self) -> dict[str, float]:
        return dict(self._pauses)

    def save_pause(self, channel: str, since: float | None) -> None:
        if since is None:
            self._pauses.pop(channel, None)
        else:
            self._pauses[channel] = since


class SQLiteAdminQueries(AdminQueries):
    """Over a shard's SQLite connection (used by one thread at a time, as the shard's is)."""

    def __init__(self, db: sqlite3.Connection, columns: Sequence[str],
                 to_record: Callable[[Sequence[Any]], Record]) -> None:
        self._db, self._columns, self._to_record = db, columns, to_record
        for statement in _SCHEMA:
            self._db.execute(statement)

    def search(self, query: SearchQuery) -> list[Record]:
        where, params = query.where()
        deadline = time.monotonic() + SEARCH_SECONDS
        self._db.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        try:
            rows = self._db.execute(
                f"SELECT {', '.join(self._columns)} FROM notifications WHERE {where}"
                f" ORDER BY created_at DESC, tag DESC LIMIT ?", [*params, query.limit]).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            raise ValidationError("the search took too long: narrow it (status, channel, tenant, "
                                  "since…)") from None
        finally:
            self._db.set_progress_handler(None, 0)
        return [self._to_record(row) for row in rows]

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
