"""Where a queue shard keeps its state: its SQLite file in the data dir, or PostgreSQL as the
shard's fenced owner (``HERALD_DATABASE_URL``). The one place that chooses.

With PostgreSQL a shard is opened only by the owner of its lease (``herald.pg_leases``): the
deployment must hold the ``deployment`` lease, and the shard's lease must be free, expired, or
held by this deployment (a restarted actor takes over at once; another deployment waits for
``shard_lease_seconds``). Until then ``NotOwner``: the shard is a standby.
"""

from __future__ import annotations

from pathlib import Path

from herald.config import Settings
from herald.data_dir import DataDir
from herald.pg_leases import holder_name
from herald.pg_storage import PostgresStorage
from herald.storage import SQLiteStorage, Storage


class NotOwner(Exception):
    """Another deployment is active, or another owner still holds this shard's lease."""


def shard_path(settings: Settings, shard: int) -> Path:
    return DataDir(settings.data_dir).shard_db(shard)


def open_storage(settings: Settings, shard: int) -> Storage:
    """The shard's storage, ready to write; ``NotOwner`` while the lease is someone else's."""
    if settings.database_url is None:
        return SQLiteStorage(shard_path(settings, shard), settings.sqlite_synchronous)
    deployment = settings.deployment_id or "default"
    storage = PostgresStorage(settings.database_url, shard, holder=holder_name(deployment),
                              deployment_id=deployment,
                              lease_seconds=settings.shard_lease_seconds)
    try:
        owned = storage.acquire()
    except BaseException:
        storage.close()
        raise
    if not owned:
        storage.close()
        raise NotOwner(f"shard {shard}: another deployment is active or owns it")
    return storage
