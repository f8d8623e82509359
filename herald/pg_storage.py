"""A queue shard's records in PostgreSQL (``HERALD_DATABASE_URL``): shards anywhere, fenced owners.

Every shard's rows share the tables of ``herald.pg_schema``, each row naming its shard; one
``PostgresStorage`` serves one shard and reads and writes only its rows. Payloads and attempt
histories are stored as JSON bytes (``BYTEA``), exactly as SQLite stores them, and
``Record.size`` is their length there too.

The driver is psycopg 3's synchronous API: the ``Storage`` interface is synchronous and shared
with SQLite, and the shard's actor already batches a window of changes into one ``write`` (group
commit), so a call is a few statements in one transaction, where async would add nothing but a
second interface. A batch of rows travels as one array per column (``unnest``, binary): one
statement for a batch, not one per row. One connection (autocommit) serves the shard's calls,
used by one thread at a time; every write is one transaction.

**Fencing.** A storage writes only while it owns its shard: ``acquire`` takes the shard's lease
(``herald.pg_leases``) and remembers its epoch, and every write transaction first renews that
lease with ``FENCE_SQL``; when the epoch is gone (another owner took the shard) the transaction
is rolled back and ``Fenced`` raised: the owner must stop. A storage that never acquired, or
was fenced, refuses every write the same way. The fence's row lock orders an owner's commits
against a new owner's takeover, so the old one can never commit after the new one began.

**Lost connections.** A connection that breaks (a failover, a restart, the network) makes the
call raise ``StoreUnavailable`` (nothing of it committed); the next call reconnects (or call
``reconnect``). One that breaks while a write commits raises ``StoreInDoubt``: the database may
hold the write or not, and the shard rebuilds its memory from the database. The URL goes to
libpq unchanged, so a multi-host URL with ``target_session_attrs=read-write`` finds the new
primary after a failover.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
import psycopg

from herald import pg_leases
from herald.admin_queries import AdminQueries
from herald.channels import Channel
from herald.delivery_log import LogEvent
from herald.documents import Documents
from herald.errors import Fenced, StoreInDoubt, StoreUnavailable
from herald.inbox_store import InboxStore
from herald.outcome import Outcome
from herald.pg_admin_queries import Cursor, PostgresAdminQueries
from herald.pg_connect import connect
from herald.pg_documents import PostgresDocuments
from herald.pg_inbox_store import PostgresInboxStore
from herald.pg_schema import migrate
from herald.record import Record
from herald.record_rows import (
    COLUMNS,
    FINAL_SQL,
    INSERTED,
    MUTABLE,
    WAITING_SQL,
    decode_record,
    encode_insert,
    encode_update,
)
from herald.status import Status
from herald.storage import ReceiptChanges, Storage, WaitingCount

__all__ = ["PostgresStorage"]

T = TypeVar("T")

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM herald_notifications WHERE shard = %s"
#: Each column's type, for the arrays a batch is sent in (one statement per batch).
_TYPES = {"priority": "integer", "seq": "bigint", "attempts": "integer", "deferrals": "integer",
          "payload": "bytea", "history": "bytea", "inbox": "boolean",
          **{c: "double precision" for c in ("created_at", "expires_at", "not_before",
                                             "lease_until", "updated_at", "lease_token")}}


def _arrays(columns: Sequence[str]) -> str:
    """``unnest`` of one array parameter per column, named as the columns."""
    arrays = ", ".join(f"%b::{_TYPES.get(c, 'text')}[]" for c in columns)
    return f"unnest({arrays}) AS batch ({', '.join(columns)})"


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows → one list per column (what ``_arrays`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)]


_INSERT = (f"INSERT INTO herald_notifications (shard, {', '.join(INSERTED)})"
           f" SELECT %s, {', '.join(INSERTED)} FROM {_arrays(INSERTED)} ON CONFLICT DO NOTHING")
_UPDATE = (f"UPDATE herald_notifications AS n SET {', '.join(f'{c} = batch.{c}' for c in MUTABLE)}"
           f" FROM {_arrays((*MUTABLE, 'tag'))} WHERE n.tag = batch.tag AND n.shard = %s")
_COUNTS = ("SELECT channel, priority, tenant, status, COUNT(*), SUM(octet_length(payload))"
           f" FROM herald_notifications WHERE shard = %s AND status IN ({WAITING_SQL})")


class PostgresStorage(Storage):
    """Shard ``shard``'s records in the database at ``url``; writes as ``holder`` (of
    ``deployment_id``) once ``acquire`` took the shard's lease, renewed by every write."""

    def __init__(self, url: str, shard: int, *, holder: str, deployment_id: str,
                 lease_seconds: float) -> None:
        self.shard = shard
        self.holder = holder
        self.deployment_id = deployment_id
        self.lease_seconds = lease_seconds
        #: The epoch of this owner's lease; None before ``acquire`` and once fenced.
        self.epoch: int | None = None
        self._url = url
        self._lease = pg_leases.shard_lease(shard)
        self._conn: psycopg.Connection[Any] | None = None
        self._admin: PostgresAdminQueries | None = None
        with self._mapped():
            migrate(self._connection())  # SchemaTooNew: refused before anything is read

    # -- the connection ------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url)
        return self._conn

    def reconnect(self) -> None:
        """Drop the connection and open a new one now (each call also reconnects by itself)."""
        self._drop()
        with self._mapped():
            self._connection()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """A failed connection or statement of the database's own (``OperationalError``: lost,
        restarting, cancelled) as ``StoreUnavailable``; the connection is dropped if broken."""
        try:
            yield
        except psycopg.OperationalError as exc:
            if self._conn is not None and self._conn.closed:
                self._drop()
            raise StoreUnavailable(f"shard {self.shard}: the database failed: "
                                   f"{type(exc).__name__}", retry_after=2.0) from exc

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement over this shard's connection (``shard`` is the
        caller's to put in ``params``)."""
        with self._mapped(), self._connection().cursor(binary=True) as cursor:
            return cursor.execute(sql, params).fetchall()

    def _records(self, sql: str, params: Sequence[Any]) -> list[Record]:
        return [decode_record(row) for row in self.query(sql, params)]

    def transaction(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one write transaction, fenced: the shard's lease is renewed first and
        ``Fenced`` raised (nothing written) when this owner no longer holds it. Counted in
        ``commits`` once committed."""
        if self.epoch is None:
            raise Fenced(f"shard {self.shard}: not the owner ({self.holder} holds no lease)")
        conn = self._connection_or_unavailable()
        committing = False
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(pg_leases.FENCE_SQL, (self._lease, self.holder, self.epoch))
                if cursor.rowcount != 1:
                    self.epoch = None
                    raise Fenced(f"shard {self.shard}: {self.holder} lost its lease to another"
                                 " owner; it must stop")
                result = work(cursor)
                committing = True  # what fails from here on fails in COMMIT
        except psycopg.OperationalError as exc:
            broken = conn.closed
            if broken:
                self._drop()
            if committing and broken:
                raise StoreInDoubt(f"shard {self.shard}: the connection broke while committing;"
                                   " the write may or may not be stored", retry_after=2.0) from exc
            raise StoreUnavailable(f"shard {self.shard}: the database failed: "
                                   f"{type(exc).__name__}", retry_after=2.0) from exc
        self.commits += 1
        return result

    def _connection_or_unavailable(self) -> psycopg.Connection[Any]:
        with self._mapped():
            return self._connection()

    # -- ownership -------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the shard's lease (``pg_leases.acquire_shard``) with a new epoch; False while
        this deployment is not the active one or another deployment's owner still holds it."""
        with self._mapped():
            epoch = pg_leases.acquire_shard(self._connection(), self.shard, self.holder,
                                            self.deployment_id, self.lease_seconds)
        self.epoch = epoch
        return epoch is not None

    def renew(self) -> None:
        """Renew the shard's lease; ``Fenced`` when it is no longer this owner's."""
        if self.epoch is None:
            raise Fenced(f"shard {self.shard}: not the owner ({self.holder} holds no lease)")
        with self._mapped():
            held = pg_leases.renew(self._connection(), self._lease, self.holder, self.epoch)
        if not held:
            self.epoch = None
            raise Fenced(f"shard {self.shard}: {self.holder} lost its lease to another owner")

    def release(self) -> None:
        """Give the shard up (a clean stop): the next owner need not wait for the lease to run
        out. Writes are refused from here on."""
        if self.epoch is not None:
            epoch, self.epoch = self.epoch, None
            with self._mapped():
                pg_leases.release(self._connection(), self._lease, self.holder, epoch)

    # -- reads -----------------------------------------------------------------------------------
    def load_live(self) -> list[Record]:
        return self._records(f"{_SELECT} AND status NOT IN ({FINAL_SQL}) ORDER BY seq",
                             (self.shard,))

    def load_in_memory(self, windowed: Sequence[Channel]) -> list[Record]:
        kept = [c.value for c in Channel if c not in windowed]
        rows = [*self._records(f"{_SELECT} AND status = 'sending'", (self.shard,)),
                *self._records(f"{_SELECT} AND status IN ({WAITING_SQL}) AND held IS NULL"
                               f" AND channel = ANY(%s)", (self.shard, kept))]
        return sorted(rows, key=lambda r: r.seq)

    def _counts(self, sql: str, params: Sequence[Any]) -> list[WaitingCount]:
        return [(Channel(c), int(p), str(t), Status(s), int(n), int(b))
                for c, p, t, s, n, b in self.query(sql, params)]

    def waiting_counts(self, windowed: Sequence[Channel]) -> list[WaitingCount]:
        return self._counts(f"{_COUNTS} AND held IS NULL AND channel = ANY(%s)"
                            " GROUP BY channel, priority, tenant, status",
                            (self.shard, [c.value for c in windowed]))

    def held_counts(self) -> list[WaitingCount]:
        return self._counts(f"{_COUNTS} AND held IS NOT NULL"
                            " GROUP BY channel, priority, tenant, status", (self.shard,))

    def load_held_due(self, now: float, limit: int) -> list[Record]:
        return self._records(f"{_SELECT} AND held = 'deferred' AND status IN ({WAITING_SQL})"
                             " AND not_before <= %s ORDER BY not_before LIMIT %s",
                             (self.shard, now, limit))

    def load_parked(self, tenant: str, uid: str) -> list[Record]:
        return self._records(f"{_SELECT} AND held = 'parked' AND status IN ({WAITING_SQL})"
                             " AND tenant = %s AND uid = %s ORDER BY seq", (self.shard, tenant, uid))

    def load_expired(self, now: float, limit: int) -> list[Record]:
        return self._records(f"{_SELECT} AND status IN ({WAITING_SQL}) AND expires_at <= %s"
                             " ORDER BY expires_at LIMIT %s", (self.shard, now, limit))

    def load_waiting(self, channel: Channel, priority: int, after_seq: int,
                     limit: int) -> list[Record]:
        return self._records(f"{_SELECT} AND channel = %s AND priority = %s AND status IN"
                             f" ({WAITING_SQL}) AND held IS NULL AND seq > %s ORDER BY seq LIMIT %s",
                             (self.shard, channel.value, priority, after_seq, limit))

    def get(self, tag: str) -> Record | None:
        found = self._records(f"{_SELECT} AND tag = %s", (self.shard, tag))
        return found[0] if found else None

    def existing(self, tags: Sequence[str]) -> set[str]:
        rows = self.query("SELECT tag FROM herald_notifications WHERE shard = %s AND tag = ANY(%s)",
                          (self.shard, list(tags)))
        return {str(row[0]) for row in rows}

    def find_idempotent(self, tenant: str, key: str) -> str | None:
        return self.find_idempotent_many([(tenant, key)]).get((tenant, key))

    def find_idempotent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        return self._tags_by_key("herald_notifications", "idempotency_key", keys)

    def _tags_by_key(self, table: str, key_column: str,
                     keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(tenant, key) → tag for the ``keys`` found in ``table``: one query for the batch."""
        if not keys:
            return {}
        rows = self.query(
            f"SELECT t.tenant, t.{key_column}, t.tag FROM {table} t"
            f" JOIN unnest(%s::text[], %s::text[]) AS k(tenant, key)"
            f" ON t.tenant = k.tenant AND t.{key_column} = k.key WHERE t.shard = %s",
            ([tenant for tenant, _ in keys], [key for _, key in keys], self.shard))
        return {(str(tenant), str(key)): str(tag) for tenant, key, tag in rows}

    def max_seq(self) -> int:
        [(seq,)] = self.query("SELECT MAX(seq) FROM herald_notifications WHERE shard = %s",
                              (self.shard,))
        return int(seq or 0)

    def load_receipts(self) -> list[tuple[str, Outcome]]:
        rows = self.query("SELECT tag, receipt FROM herald_receipts WHERE shard = %s",
                          (self.shard,))
        return [(str(tag), Outcome(**orjson.loads(receipt))) for tag, receipt in rows]

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._tags_by_key("herald_claims", "key", keys)

    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        rows = self.query("SELECT id, event FROM herald_events WHERE shard = %s AND id > %s"
                          " ORDER BY id LIMIT %s", (self.shard, after, limit))
        return [(int(i), LogEvent(**orjson.loads(event))) for i, event in rows]

    # -- writes: each one fenced transaction -----------------------------------------------------
    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if not (inserts or updates or events or receipts):
            return
        # Encode everything before the transaction: a value that cannot be stored fails here,
        # with nothing begun.
        shard = self.shard
        insert_columns = _columns([encode_insert(r) for r in inserts])
        # One row per tag (the last change wins, as row-by-row updates would have it).
        update_columns = _columns([encode_update(r) for r in {r.tag: r for r in updates}.values()])
        event_rows = [orjson.dumps(e) for e in events]
        held = [(t, shard, orjson.dumps(o)) for t, o in (receipts or {}).items() if o is not None]
        released = [(t, shard) for t, o in (receipts or {}).items() if o is None]

        def work(cursor: Cursor) -> None:
            if event_rows:
                cursor.execute("INSERT INTO herald_events (shard, event) SELECT %s, event"
                               " FROM unnest(%b::bytea[]) WITH ORDINALITY AS batch (event, n)"
                               " ORDER BY n", (shard, event_rows))  # ids in the batch's order
            if inserts:
                cursor.execute(_INSERT, (shard, *insert_columns))
            if updates:
                cursor.execute(_UPDATE, (*update_columns, shard))
            if held:
                cursor.executemany(
                    "INSERT INTO herald_receipts (tag, shard, receipt) VALUES (%s, %s, %s)"
                    " ON CONFLICT (tag) DO UPDATE SET shard = EXCLUDED.shard,"
                    " receipt = EXCLUDED.receipt", held)
            if released:
                cursor.executemany("DELETE FROM herald_receipts WHERE tag = %s AND shard = %s",
                                   released)

        self.transaction(work)

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        if not entries:
            return []

        def work(cursor: Cursor) -> None:
            cursor.execute(
                "INSERT INTO herald_claims (shard, tenant, key, tag, at)"
                " SELECT %s, k.tenant, k.key, k.tag, %s"
                " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(tenant, key, tag)"
                " ON CONFLICT DO NOTHING",
                (self.shard, now, [t for t, _, _ in entries], [k for _, k, _ in entries],
                 [tag for _, _, tag in entries]))

        self.transaction(work)
        found = self.claimed([(t, k) for t, k, _ in entries])
        return [found[(t, k)] for t, k, _ in entries]

    def delete_final(self, updated_before: float, limit: int, claims_before: float) -> int:
        def work(cursor: Cursor) -> int:
            cursor.execute(
                "DELETE FROM herald_claims WHERE (shard, tenant, key) IN (SELECT shard, tenant,"
                " key FROM herald_claims WHERE shard = %s AND at < %s LIMIT %s)",
                (self.shard, claims_before, limit))
            cursor.execute(
                f"DELETE FROM herald_notifications WHERE tag IN (SELECT tag FROM"
                f" herald_notifications WHERE shard = %s AND status IN ({FINAL_SQL})"
                f" AND updated_at < %s LIMIT %s)", (self.shard, updated_before, limit))
            return int(cursor.rowcount)

        return self.transaction(work)

    def delete_events(self, through: int) -> None:
        def work(cursor: Cursor) -> None:
            cursor.execute("DELETE FROM herald_events WHERE shard = %s AND id <= %s",
                           (self.shard, through))

        self.transaction(work)

    # -- the rest --------------------------------------------------------------------------------
    def documents(self) -> Documents:
        return PostgresDocuments(self)

    def inbox(self) -> InboxStore:
        return PostgresInboxStore(self)

    def admin(self) -> AdminQueries:
        if self._admin is None:
            self._admin = PostgresAdminQueries(self, self._url)
        return self._admin

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._drop()
