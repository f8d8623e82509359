"""Users' settings (``herald.recipients``) of a shard kept in PostgreSQL (``herald_recipients``).

The same behaviour as ``herald.recipient_store.SQLiteRecipientStore``; a save is one fenced write
transaction of the shard's storage, like every other write (a shard that lost its lease writes
nothing).
"""

from __future__ import annotations

from herald.pg_admin_queries import Cursor, ShardConnection
from herald.recipient_store import RecipientStore, UserKey
from herald.recipients import Recipient


class PostgresRecipientStore(RecipientStore):
    def __init__(self, storage: ShardConnection) -> None:
        super().__init__()
        self._storage = storage

    def load_all(self) -> dict[UserKey, Recipient]:
        rows = self._storage.query("SELECT tenant, uid, settings FROM herald_recipients"
                                   " WHERE shard = %s", (self._storage.shard,))
        return {(str(tenant), str(uid)): Recipient.from_json(settings)
                for tenant, uid, settings in rows}

    def save(self, tenant: str, uid: str, recipient: Recipient | None, now: float) -> None:
        shard = self._storage.shard

        def work(cursor: Cursor) -> None:
            if recipient is None:
                cursor.execute("DELETE FROM herald_recipients WHERE shard = %s AND tenant = %s"
                               " AND uid = %s", (shard, tenant, uid))
            else:
                cursor.execute("INSERT INTO herald_recipients (shard, tenant, uid, settings,"
                               " updated_at) VALUES (%s, %s, %s, %s, %s)"
                               " ON CONFLICT (shard, tenant, uid) DO UPDATE SET"
                               " settings = EXCLUDED.settings, updated_at = EXCLUDED.updated_at",
                               (shard, tenant, uid, recipient.to_json(), now))

        self._storage.transaction(work)
