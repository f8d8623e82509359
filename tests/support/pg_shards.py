"""Shards on a test PostgreSQL: an emptied database per test (≈ 2 ms: its rows deleted), a
fresh one where a test needs its own (from a migrated template, ≈ 0.2 s), and storages that own
their shard, as an active deployment's would."""

from __future__ import annotations

import itertools

import psycopg

from herald import pg_leases
from herald.delivery_log import LogEvent, log_event
from herald.pg_schema import migrate
from herald.pg_storage import PostgresStorage
from herald.record import Record
from tests.support.postgres import PostgresServer

TEMPLATE = "herald_template"
DEPLOYMENT = "test"
#: Long enough that no test's lease runs out unless it means to.
LEASE_SECONDS = 3600.0


class ShardDatabases:
    """Migrated databases on ``server``, made by copying a migrated template."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._names = itertools.count()
        self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        self._admin.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
            migrate(conn)
        self._shared_url = self.fresh()
        self._shared = psycopg.connect(self._shared_url, autocommit=True)
        # A test that left a transaction open must fail the next one, not hang it.
        self._shared.execute("SET lock_timeout = '5s'")
        self._tables = [row[0] for row in self._shared.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'herald%%'"
            " AND tablename <> 'herald_schema'")]

    def url(self, database: str) -> str:
        return self.server.url.rsplit("/", 1)[0] + "/" + database

    def emptied(self) -> str:
        """The URL of the shared database, with no row in any of Herald's tables (its schema
        kept) and event ids starting at 1 again."""
        with self._shared.transaction():
            for table in self._tables:
                self._shared.execute(f"DELETE FROM {table}")
            self._shared.execute("ALTER SEQUENCE herald_events_id_seq RESTART")
        return self._shared_url

    def fresh(self) -> str:
        """A new database with Herald's schema and nothing else: its URL."""
        name = f"herald_test_{next(self._names)}"
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self._admin.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def close(self) -> None:
        self._shared.close()
        self._admin.close()


def owned_storage(url: str, shard: int = 0, *, deployment: str = DEPLOYMENT,
                  lease_seconds: float = LEASE_SECONDS) -> PostgresStorage:
    """A storage of ``shard`` that owns it, its deployment being the active one."""
    storage = PostgresStorage(url, shard, holder=pg_leases.holder_name(deployment),
                              deployment_id=deployment, lease_seconds=lease_seconds)
    with psycopg.connect(url, autocommit=True) as conn:
        assert pg_leases.acquire_deployment(conn, deployment, lease_seconds) is not None
    assert storage.acquire(), f"shard {shard} is owned by another deployment"
    return storage


def accepted(record: Record, now: float = 0.0) -> LogEvent:
    """The delivery-log event of ``record``'s acceptance."""
    event = log_event(record, "accepted", "queued", None, now)
    assert event is not None
    return event
