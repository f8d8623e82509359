"""Where a shard's feed pages come from (``herald.inbox``): its records in memory, in SQLite (here)
or in PostgreSQL (``herald.pg_inbox_store``).

A record is in its user's feed when the ``inbox`` column written with it says so; ``read_at`` is
set by marking read only, never by the shard's own updates (it is not one of ``MUTABLE``). A
page is the user's items newest first, ``limit + 1`` read to know whether there is a next one;
an item still waiting for its time (sent later, quiet hours) is not in the feed until then.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from herald.inbox import HIDDEN, HIDDEN_SQL, FeedPage, FeedQuery, ReadMarks, feed_item, in_inbox
from herald.record import Record
from herald.record_rows import COLUMNS, decode_record
from herald.status import Status

#: (record, when it was read) of one page, newest first.
Rows = list[tuple[Record, float | None]]

#: What a SQLite shard file gains for the feed (a file from before it gets the columns).
SQLITE_COLUMNS = (("inbox", "INTEGER NOT NULL DEFAULT 0"), ("read_at", "REAL"))
SQLITE_INDEX = ("CREATE INDEX IF NOT EXISTS notifications_inbox ON notifications"
                " (tenant, uid, seq) WHERE inbox = 1")
#: Feed items of one user that are due (the SQL of both stores, with their own placeholders).
DUE = (f" AND status NOT IN ({HIDDEN_SQL}) AND NOT (status = 'queued' AND not_before > {{p}})")


def prepare_sqlite(db: sqlite3.Connection) -> None:
    """Add the feed's columns and index to a shard file that has not got them."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(notifications)")}
    for name, kind in SQLITE_COLUMNS:
        if name not in columns:
            db.execute(f"ALTER TABLE notifications ADD COLUMN {name} {kind}")
    db.execute(SQLITE_INDEX)


def build_page(query: FeedQuery, rows: Rows, unread: int) -> FeedPage:
    """``rows``: up to ``query.limit + 1`` of them; one more than a page means there is a next."""
    shown = rows[:query.limit]
    more = len(rows) > query.limit
    return FeedPage(tuple(feed_item(record, read_at) for record, read_at in shown), unread,
                    shown[-1][0].seq if more else None)


class InboxStore(abc.ABC):
    """What a shard's storage answers about its users' feeds."""

    @abc.abstractmethod
    def page(self, query: FeedQuery, now: float) -> FeedPage: ...

    @abc.abstractmethod
    def mark_read(self, tenant: str, uid: str, marks: ReadMarks, now: float) -> int:
        """Mark the user's items read (``marks``); how many of them were unread."""


class MemoryInboxStore(InboxStore):
    """The feed over records kept in memory (``herald.memory_storage``)."""

    def __init__(self, rows: Mapping[str, Record], on_commit: Callable[[], None]) -> None:
        self._rows = rows
        self._read: dict[str, float] = {}
        self._on_commit = on_commit

    def _items(self, tenant: str, uid: str, now: float) -> list[Record]:
        return sorted((r for r in self._rows.values() if r.tenant == tenant and r.uid == uid
                       and in_inbox(r) and r.status not in HIDDEN
                       and not (r.status is Status.QUEUED and r.not_before > now)),
                      key=lambda r: r.seq, reverse=True)

    def page(self, query: FeedQuery, now: float) -> FeedPage:
        items = self._items(query.tenant, query.uid, now)
        rows = [(r, self._read.get(r.tag)) for r in items
                if (query.before is None or r.seq < query.before)
                and not (query.unread_only and r.tag in self._read)]
        return build_page(query, rows[:query.limit + 1],
                          sum(1 for r in items if r.tag not in self._read))

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks, now: float) -> int:
        wanted = None if marks.tags is None else set(marks.tags)
        fresh = [r.tag for r in self._items(tenant, uid, now)
                 if r.tag not in self._read and (wanted is None or r.tag in wanted)]
        self._read.update(dict.fromkeys(fresh, now))
        self._on_commit()
        return len(fresh)


class SQLiteInboxStore(InboxStore):
    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._on_commit = on_commit
        self._due = DUE.format(p="?")

    def page(self, query: FeedQuery, now: float) -> FeedPage:
        where = "inbox = 1 AND tenant = ? AND uid = ?" + self._due
        params: list[Any] = [query.tenant, query.uid, now]
        unread = self._db.execute(f"SELECT COUNT(*) FROM notifications WHERE {where}"
                                  f" AND read_at IS NULL", params).fetchone()[0]
        if query.before is not None:
            where, params = f"{where} AND seq < ?", [*params, query.before]
        if query.unread_only:
            where += " AND read_at IS NULL"
        found = self._db.execute(f"SELECT {', '.join(COLUMNS)}, read_at FROM notifications"
                                 f" WHERE {where} ORDER BY seq DESC LIMIT ?",
                                 [*params, query.limit + 1])
        return build_page(query, [(decode_record(row[:-1]), row[-1]) for row in found],
                          int(unread))

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks, now: float) -> int:
        sql = ("UPDATE notifications SET read_at = ? WHERE inbox = 1 AND tenant = ? AND uid = ?"
               f" AND read_at IS NULL{self._due}")
        params: list[Any] = [now, tenant, uid, now]
        if marks.tags is not None:
            sql += f" AND tag IN ({', '.join('?' for _ in marks.tags)})"
            params += marks.tags
        with self._db:
            changed = self._db.execute(sql, params).rowcount
        self._on_commit()
        return int(changed)

