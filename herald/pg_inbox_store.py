"""A shard's feed pages (``herald.inbox``) from PostgreSQL: the same queries as
``herald.inbox_store.SQLiteInboxStore`` over ``herald_notifications`` (its ``inbox`` and
``read_at`` columns, migration 3); marking read is one fenced write transaction of the shard's
storage, like every other write (a shard that lost its lease writes nothing).
"""

from __future__ import annotations

from typing import Any

from herald.inbox import FeedPage, FeedQuery, ReadMarks
from herald.inbox_store import DUE, InboxStore, build_page
from herald.pg_admin_queries import Cursor, ShardConnection
from herald.record_rows import COLUMNS, decode_record

_WHERE = "shard = %s AND inbox AND tenant = %s AND uid = %s" + DUE.format(p="%s")


class PostgresInboxStore(InboxStore):
    def __init__(self, storage: ShardConnection) -> None:
        self._storage = storage

    def page(self, query: FeedQuery, now: float) -> FeedPage:
        params: list[Any] = [self._storage.shard, query.tenant, query.uid, now]
        ((unread,),) = self._storage.query(
            f"SELECT COUNT(*) FROM herald_notifications WHERE {_WHERE} AND read_at IS NULL",
            params)
        where = _WHERE
        if query.before is not None:
            where, params = f"{where} AND seq < %s", [*params, query.before]
        if query.unread_only:
            where += " AND read_at IS NULL"
        found = self._storage.query(f"SELECT {', '.join(COLUMNS)}, read_at FROM"
                                    f" herald_notifications WHERE {where}"
                                    f" ORDER BY seq DESC LIMIT %s", [*params, query.limit + 1])
        return build_page(query, [(decode_record(row[:-1]), row[-1]) for row in found],
                          int(unread))

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks, now: float) -> int:
        sql = f"UPDATE herald_notifications SET read_at = %s WHERE {_WHERE} AND read_at IS NULL"
        params: list[Any] = [now, self._storage.shard, tenant, uid, now]
        if marks.tags is not None:
            sql, params = f"{sql} AND tag = ANY(%s)", [*params, list(marks.tags)]

        def work(cursor: Cursor) -> int:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

        return self._storage.transaction(work)
