"""Where a shard keeps its users' settings (``herald.recipients``): memory, SQLite, PostgreSQL.

A user's settings live with the user's shard (``shard_for_uid``), so the shard that accepts a
notification has them at hand. The shard reads every one it keeps at start (``load_all``: they
are few next to notifications, and an accept must not wait on a look-up) and writes one at a
time, each in a transaction of its own, as pauses are (a ``PUT`` is answered once it is on disk).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from herald.recipients import Recipient

UserKey = tuple[str, str]  # (tenant, uid)

SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS recipients (tenant TEXT NOT NULL, uid TEXT NOT NULL,"
                 " settings TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (tenant, uid))")


class RecipientStore:
    """Users' settings kept in memory only (the base, and the memory backend's)."""

    def __init__(self, on_commit: Callable[[], None] | None = None) -> None:
        self._kept: dict[UserKey, Recipient] = {}
        self._on_commit = on_commit or (lambda: None)

    def load_all(self) -> dict[UserKey, Recipient]:
        return dict(self._kept)

    def save(self, tenant: str, uid: str, recipient: Recipient | None, now: float) -> None:
        """Keep ``recipient`` for the user, or forget theirs (None)."""
        if recipient is None:
            self._kept.pop((tenant, uid), None)
        else:
            self._kept[(tenant, uid)] = recipient
        self._on_commit()


class SQLiteRecipientStore(RecipientStore):
    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[], None]) -> None:
        super().__init__(on_commit)
        self._db = db
        self._db.execute(SQLITE_SCHEMA)

    def load_all(self) -> dict[UserKey, Recipient]:
        return {(str(tenant), str(uid)): Recipient.from_json(settings) for tenant, uid, settings
                in self._db.execute("SELECT tenant, uid, settings FROM recipients")}

    def save(self, tenant: str, uid: str, recipient: Recipient | None, now: float) -> None:
        with self._db:
            if recipient is None:
                self._db.execute("DELETE FROM recipients WHERE tenant = ? AND uid = ?",
                                 (tenant, uid))
            else:
                self._db.execute("INSERT OR REPLACE INTO recipients VALUES (?, ?, ?, ?)",
                                 (tenant, uid, recipient.to_json(), now))
        self._on_commit()
