"""The admin console's queries over a shard kept in PostgreSQL: search, dead letters, pauses.

The same behaviour as ``SQLiteAdminQueries`` (``herald.admin_queries``): a search walks at most
its budget of the shard's records newest first (the ``(shard, created_at, tag)`` index), on a
connection of its own, read-only, so the shard's shell runs it in a thread while the shard goes
on taking calls on its own connection; one that runs longer than ``SEARCH_SECONDS`` is cancelled
by the server (``statement_timeout``) and answered with a 422 asking for a narrower one. The
dead-letter count and the pauses go through the shard's connection, and a pause is saved in one
fenced write transaction of the storage, like every other write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import psycopg

from herald import admin_queries
from herald.admin_queries import AdminQueries
from herald.errors import StoreUnavailable, ValidationError
from herald.pg_connect import connect
from herald.record_rows import COLUMNS, decode_record
from herald.search import POSTGRES, Position, Scanned, SearchQuery
from herald.status import Status

Cursor = psycopg.Cursor[Any]
T = TypeVar("T")


class ShardConnection(Protocol):
    """What these queries need of the shard's storage (``herald.pg_storage.PostgresStorage``)."""

    shard: int

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def transaction(self, work: Callable[[Cursor], T]) -> T: ...

__all__ = ["PostgresAdminQueries"]

_ORDER = "ORDER BY created_at DESC, tag DESC"


class PostgresAdminQueries(AdminQueries):
    """Over one shard's rows: ``scan`` on a read-only connection of its own (any thread, one
    scan at a time), the rest through ``storage`` (the shard's thread)."""

    def __init__(self, storage: ShardConnection, url: str) -> None:
        self._storage, self._url = storage, url
        self._reader: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one scan at a time on the reader

    def _connect(self) -> psycopg.Connection[Any]:
        if self._reader is None or self._reader.closed:
            conn = connect(self._url)
            conn.execute("SET default_transaction_read_only = on")
            self._reader = conn
        return self._reader

    def scan(self, query: SearchQuery, budget: int | None) -> Scanned:
        shard = self._storage.shard
        columns = ", ".join(COLUMNS)
        bounds, bound_params = query.range_where(POSTGRES)
        filters, filter_params = query.filter_where(POSTGRES)
        where = f"shard = %s AND {bounds}"
        if budget is None:
            sql = (f"SELECT {columns} FROM herald_notifications WHERE {where} AND {filters}"
                   f" {_ORDER} LIMIT %s")
            params = [shard, *bound_params, *filter_params, query.limit]
        else:  # the walk: at most ``budget`` records in range, newest first, then the filters
            sql = (f"SELECT {columns} FROM (SELECT {columns} FROM herald_notifications"
                   f" WHERE {where} {_ORDER} LIMIT %s) AS walk WHERE {filters} {_ORDER} LIMIT %s")
            params = [shard, *bound_params, budget, *filter_params, query.limit]
        with self._lock:
            try:
                with self._connect().cursor(binary=True) as cursor:
                    timeout = max(1, round(admin_queries.SEARCH_SECONDS * 1000))  # one knob for both
                    cursor.execute(f"SET statement_timeout = {timeout}")
                    rows = cursor.execute(sql, params).fetchall()
                    stopped = None
                    if budget is not None and len(rows) < query.limit:
                        # The walk's last record, if records in range went on after it.
                        edge = cursor.execute(
                            f"SELECT created_at, tag FROM herald_notifications WHERE {where}"
                            f" {_ORDER} LIMIT 2 OFFSET %s",
                            [shard, *bound_params, budget - 1]).fetchall()
                        if len(edge) == 2:
                            stopped = Position(float(edge[0][0]), str(edge[0][1]))
            except psycopg.errors.QueryCanceled:
                raise ValidationError("the search took too long: narrow it (status, channel, "
                                      "tenant, since…)") from None
            except psycopg.OperationalError as exc:
                self.close()  # a new connection next time
                raise StoreUnavailable(f"shard {shard}: the database failed: "
                                       f"{type(exc).__name__}", retry_after=2.0) from exc
        return Scanned([decode_record(row) for row in rows], stopped)

    def count_status(self, status: Status) -> int:
        [(count,)] = self._storage.query(
            "SELECT COUNT(*) FROM herald_notifications WHERE shard = %s AND status = %s",
            (self._storage.shard, status.value))
        return int(count)

    def load_pauses(self) -> dict[str, float]:
        rows = self._storage.query("SELECT channel, since FROM herald_pauses WHERE shard = %s",
                                   (self._storage.shard,))
        return {str(channel): float(since) for channel, since in rows}

    def save_pause(self, channel: str, since: float | None) -> None:
        shard = self._storage.shard

        def work(cursor: Cursor) -> None:
            if since is None:
                cursor.execute("DELETE FROM herald_pauses WHERE shard = %s AND channel = %s",
                               (shard, channel))
            else:
                cursor.execute("INSERT INTO herald_pauses (shard, channel, since)"
                               " VALUES (%s, %s, %s) ON CONFLICT (shard, channel)"
                               " DO UPDATE SET since = EXCLUDED.since", (shard, channel, since))

        self._storage.transaction(work)

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()
