"""Small JSON documents a shard keeps beside its notifications: users' settings, suppressed
contacts. Each has a ``kind`` (``recipient``, ``suppression``), a tenant and a key of its kind
(a uid, a contact), and is read whole at start and written one at a time.

The shard reads every document of a kind it keeps at start (``load_all``: they are few next to
notifications, and accepting a notification must not wait on a look-up) and writes each in a
transaction of its own, as pauses are (an API call is answered once it is on disk). Memory here;
SQLite below; PostgreSQL in ``herald.pg_documents``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

#: (tenant, key) → the document's JSON text.
Kept = dict[tuple[str, str], str]

SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, tenant TEXT NOT NULL,"
                 " key TEXT NOT NULL, value TEXT NOT NULL, updated_at REAL NOT NULL,"
                 " PRIMARY KEY (kind, tenant, key))")


class Documents:
    """Documents kept in memory only (the base, and the memory backend's)."""

    def __init__(self, on_commit: Callable[[], None] | None = None) -> None:
        self._kept: dict[str, Kept] = {}
        self._on_commit = on_commit or (lambda: None)

    def load_all(self, kind: str) -> Kept:
        return dict(self._kept.get(kind, {}))

    def save(self, kind: str, tenant: str, key: str, value: str | None, now: float) -> None:
        """Keep ``value`` under (kind, tenant, key), or forget it (None)."""
        kept = self._kept.setdefault(kind, {})
        if value is None:
            kept.pop((tenant, key), None)
        else:
            kept[(tenant, key)] = value
        self._on_commit()


class SQLiteDocuments(Documents):
    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[], None]) -> None:
        super().__init__(on_commit)
        self._db = db
        self._db.execute(SQLITE_SCHEMA)

    def load_all(self, kind: str) -> Kept:
        return {(str(tenant), str(key)): str(value) for tenant, key, value in self._db.execute(
            "SELECT tenant, key, value FROM documents WHERE kind = ?", (kind,))}

    def save(self, kind: str, tenant: str, key: str, value: str | None, now: float) -> None:
        with self._db:
            if value is None:
                self._db.execute("DELETE FROM documents WHERE kind = ? AND tenant = ? AND key = ?",
                                 (kind, tenant, key))
            else:
                self._db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                                 (kind, tenant, key, value, now))
        self._on_commit()
