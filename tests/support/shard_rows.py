"""A big shard file made fast: one real record, copied in SQL (tests of long starts and scans)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from actors.shard_store import shard_path
from herald.config import Settings
from herald.storage import SQLiteStorage
from tests.unit.conftest import T0, make_notification, make_shard


def copies_of_one_record(settings: Settings, copies: int, columns: Mapping[str, str],
                         value: float) -> Path:
    """Shard 0 of ``settings`` holds one real email record and ``copies`` copies of it; a copy's
    tag and seq are the original's plus its number ``i``, and ``columns`` give other columns
    an SQL expression (``?`` is ``value``, ``i`` the copy's number). The shard file's path."""
    path = shard_path(settings, 0)
    storage = SQLiteStorage(path, "OFF")
    shard = make_shard(storage)
    shard.enqueue([make_notification("EMAIL")], T0)
    shard.flush()
    storage.close()
    made = {"tag": "tag || '-' || i", "seq": "seq + i", "idempotency_key": "NULL", **columns}
    with sqlite3.connect(path) as db:
        names = [row[1] for row in db.execute("PRAGMA table_info(notifications)")]
        copy = ", ".join(made.get(name, name) for name in names)
        db.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                   f" INSERT INTO notifications SELECT {copy} FROM notifications, n",
                   (copies, value))
    return path
