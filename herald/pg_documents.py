"""A shard's small JSON documents (``herald.documents``) kept in PostgreSQL (``herald_documents``).

The same behaviour as ``herald.documents.SQLiteDocuments``; a save is one fenced write transaction
of the shard's storage, like every other write (a shard that lost its lease writes nothing).
"""

from __future__ import annotations

from herald.documents import Documents, Kept
from herald.pg_admin_queries import Cursor, ShardConnection


class PostgresDocuments(Documents):
    def __init__(self, storage: ShardConnection) -> None:
        super().__init__()
        self._storage = storage

    def load_all(self, kind: str) -> Kept:
        rows = self._storage.query("SELECT tenant, key, value FROM herald_documents"
                                   " WHERE shard = %s AND kind = %s", (self._storage.shard, kind))
        return {(str(tenant), str(key)): str(value) for tenant, key, value in rows}

    def save(self, kind: str, tenant: str, key: str, value: str | None, now: float) -> None:
        shard = self._storage.shard

        def work(cursor: Cursor) -> None:
            if value is None:
                cursor.execute("DELETE FROM herald_documents WHERE shard = %s AND kind = %s"
                               " AND tenant = %s AND key = %s", (shard, kind, tenant, key))
            else:
                cursor.execute("INSERT INTO herald_documents (shard, kind, tenant, key, value,"
                               " updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
                               " ON CONFLICT (shard, kind, tenant, key) DO UPDATE SET"
                               " value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
                               (shard, kind, tenant, key, value, now))

        self._storage.transaction(work)
