"""Herald's tables in PostgreSQL (``HERALD_DATABASE_URL``), created and migrated at start, versioned.

Every shard's state lives in one database, each row naming its shard: the notifications, the
delivery-log events not yet rolled up, receipts held for notifications still being sent,
idempotency claims, pauses, users' settings and suppressions (``herald_documents``).
``herald_rollup_steps`` holds the file steps a rollup committed (``jobs.file_steps``).
``herald_leases`` holds the owners (the active deployment, and one owner per shard, each with an
epoch that fences the one before); ``herald_settings`` holds what every deployment on the database
must share (the shard layout, the secrets).

``MIGRATIONS[i]`` brings the schema from version ``i`` to ``i + 1``; they run in one
transaction under an advisory lock, so two Heralds starting together migrate once. A database
whose version is newer than this code knows is refused with one line (``SchemaTooNew``): an
older Herald must not write rows it does not understand.
"""

from __future__ import annotations

from typing import Any

from herald.errors import ConfigError
from herald.record_rows import FINAL_SQL as _FINAL_SQL
from herald.record_rows import WAITING_SQL as _WAITING_SQL

#: Any number, the same in every Herald: the advisory lock taken while migrating.
_MIGRATION_LOCK = 0x4845_5241  # "HERA"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 → 1: the shards' state, owners, shared settings
        # tag in byte order ("C"), as SQLite and Python order it: the admin search's cursor
        # compares tags, and the database's default collation may order them otherwise.
        "CREATE TABLE herald_notifications ("
        " tag TEXT COLLATE \"C\" PRIMARY KEY, shard INTEGER NOT NULL, tenant TEXT NOT NULL,"
        " type TEXT NOT NULL, channel TEXT NOT NULL, priority INTEGER NOT NULL,"
        " seq BIGINT NOT NULL, uid TEXT NOT NULL, recipient TEXT, idempotency_key TEXT,"
        " created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL,"
        " payload BYTEA NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
        " not_before DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL, provider_id TEXT, history BYTEA NOT NULL,"
        " lease_token DOUBLE PRECISION NOT NULL DEFAULT 0, deferrals INTEGER NOT NULL DEFAULT 0,"
        " held TEXT)",
        "CREATE UNIQUE INDEX herald_notifications_idempotency ON herald_notifications"
        " (shard, tenant, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX herald_notifications_seq ON herald_notifications (shard, seq)",
        f"CREATE INDEX herald_notifications_in_line ON herald_notifications"
        f" (shard, channel, priority, seq) WHERE status IN ({_WAITING_SQL}) AND held IS NULL",
        f"CREATE INDEX herald_notifications_held ON herald_notifications"
        f" (shard, held, not_before) WHERE status IN ({_WAITING_SQL}) AND held IS NOT NULL",
        f"CREATE INDEX herald_notifications_expiry ON herald_notifications (shard, expires_at)"
        f" WHERE status IN ({_WAITING_SQL})",
        "CREATE INDEX herald_notifications_sending ON herald_notifications (shard, seq)"
        " WHERE status = 'sending'",
        f"CREATE INDEX herald_notifications_final_age ON herald_notifications"
        f" (shard, updated_at) WHERE status IN ({_FINAL_SQL})",
        # The admin search (herald.pg_admin_queries): newest first with the tie-break, so a
        # walk in search order reads the index; and dead letters counted by status.
        "CREATE INDEX herald_notifications_newest ON herald_notifications (shard, created_at, tag)",
        "CREATE INDEX herald_notifications_status_age ON herald_notifications"
        " (shard, status, created_at)",
        "CREATE TABLE herald_events (id BIGSERIAL PRIMARY KEY, shard INTEGER NOT NULL,"
        " event BYTEA NOT NULL)",
        "CREATE INDEX herald_events_shard ON herald_events (shard, id)",
        "CREATE TABLE herald_receipts (tag TEXT PRIMARY KEY, shard INTEGER NOT NULL,"
        " receipt BYTEA NOT NULL)",
        "CREATE INDEX herald_receipts_shard ON herald_receipts (shard)",
        "CREATE TABLE herald_claims (shard INTEGER NOT NULL, tenant TEXT NOT NULL,"
        " key TEXT NOT NULL, tag TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (shard, tenant, key))",
        "CREATE INDEX herald_claims_age ON herald_claims (shard, at)",
        "CREATE TABLE herald_pauses (shard INTEGER NOT NULL, channel TEXT NOT NULL,"
        " since DOUBLE PRECISION NOT NULL, PRIMARY KEY (shard, channel))",
        # name: 'deployment' or 'shard-N'; holder: who owns it; epoch: +1 at every new owner;
        # renewed_at: the database's clock, so Heralds on different machines agree on expiry.
        "CREATE TABLE herald_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL,"
        " epoch BIGINT NOT NULL, renewed_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE herald_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # The rollup's commit (jobs.file_steps): file steps in the Parquet destination named
        # ``destination`` that a run committed, in the transaction that deleted the events they
        # hold, and may not have finished: rename source → target, or delete source (target
        # NULL); paths relative to the destination.
        "CREATE TABLE herald_rollup_steps (destination TEXT NOT NULL, source TEXT NOT NULL,"
        " target TEXT, PRIMARY KEY (destination, source))",
    ),
    (  # 1 → 2: a shard's small documents (herald.documents): users' settings, suppressions
        "CREATE TABLE herald_documents (shard INTEGER NOT NULL, kind TEXT NOT NULL,"
        " tenant TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (shard, kind, tenant, key))",
    ),
    (  # 2 → 3: users' inbox feeds (herald.inbox): which records are in one, and when read
        "ALTER TABLE herald_notifications ADD COLUMN inbox BOOLEAN NOT NULL DEFAULT false,"
        " ADD COLUMN read_at DOUBLE PRECISION",
        "CREATE INDEX herald_notifications_inbox ON herald_notifications (shard, tenant, uid, seq)"
        " WHERE inbox",
    ),
)
VERSION = len(MIGRATIONS)


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer Herald than this one."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"HERALD_DATABASE_URL: the database's schema is version {found}; this Herald knows"
            f" up to {VERSION}: upgrade Herald (it never writes a schema it does not know)")


def migrate(conn: Any) -> int:
    """Bring the schema of ``conn`` (a psycopg connection in autocommit mode) to ``VERSION``;
    the version found before. Raises ``SchemaTooNew`` for a newer one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS herald_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM herald_schema").fetchone()
        found = int(row[0]) if row else 0
        if found > VERSION:
            raise SchemaTooNew(found)
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO herald_schema VALUES (%s)", (VERSION,))
        elif found < VERSION:
            conn.execute("UPDATE herald_schema SET version = %s", (VERSION,))
    return found
