"""The deployment's values in PostgreSQL (``herald_settings``): one row per name, shared by every
Herald on the database, so two deployments make and read the same secrets and shard count.

One autocommit connection, opened (and the schema migrated) on first use, opened again after a
failure; calls from several threads take turns on it. Creating is ``INSERT … ON CONFLICT DO
NOTHING`` (the first of two Heralds starting together wins, the other reads its value); a change
is an ``UPDATE`` guarded by the value read, so two writers never overwrite each other unseen.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from herald.deployment_store import DeploymentStore
from herald.errors import DatabaseUnavailable
from herald.pg_connect import connect
from herald.pg_schema import migrate


class PostgresStore(DeploymentStore):
    """``herald_settings`` of the database at ``url`` (a libpq URL, several hosts included)."""

    where = "the database"

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        row = self._run("SELECT value FROM herald_settings WHERE name = %s", (name,)).fetchone()
        return None if row is None else str(row[0])

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        if expected is None:
            done = self._run("INSERT INTO herald_settings (name, value) VALUES (%s, %s)"
                             " ON CONFLICT (name) DO NOTHING", (name, value))
        else:
            done = self._run("UPDATE herald_settings SET value = %s WHERE name = %s AND value = %s",
                             (value, name, expected))
        return done.rowcount == 1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, query: str, params: tuple[str, ...]) -> psycopg.Cursor[Any]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                return self._conn.execute(query, params)
            except psycopg.OperationalError as exc:
                # A connection that failed once is not trusted again: the next call reconnects
                # (to whichever host of the URL is the primary now).
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise DatabaseUnavailable(f"HERALD_DATABASE_URL: {_first_line(exc)}") from exc

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self._url)
        try:
            migrate(conn)  # a schema newer than this Herald's is refused (SchemaTooNew) here
        except BaseException:
            conn.close()
            raise
        return conn


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
