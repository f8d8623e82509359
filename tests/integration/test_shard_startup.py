"""A shard with a big backlog answers its health check while it recovers (it is not a hang)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import ray

from actors.queue import QueueActor, shard_path
from herald.config import Settings
from herald.storage import SQLiteStorage
from tests.unit.conftest import T0, make_notification, make_shard

pytestmark = pytest.mark.ray
BACKLOG = 150_000


def _backlog(settings: Settings) -> None:
    """One real record, copied in SQL to BACKLOG live ones (fast to make, slow to load)."""
    path = shard_path(settings, 0)
    storage = SQLiteStorage(path, "OFF")
    shard = make_shard(storage)
    shard.enqueue([make_notification("EMAIL")], T0)
    shard.flush()
    storage.close()
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(notifications)")]
        copy = ", ".join("tag || '-' || i" if c == "tag" else "seq + i" if c == "seq"
                         else "NULL" if c == "idempotency_key" else "? + 0 * i" if c == "expires_at"
                         else c for c in columns)
        db.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                   f" INSERT INTO notifications SELECT {copy} FROM notifications, n",
                   (BACKLOG - 1, time.time() + 86400))


def test_health_is_answered_during_a_long_recovery(ray_session: None, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, shards=1, sqlite_synchronous="OFF")
    _backlog(settings)
    actor = QueueActor.options(name=f"startup-{time.time()}").remote(0, settings)  # type: ignore[attr-defined]
    try:
        ready = actor.ready.remote()
        started = time.monotonic()
        ray.get(actor.pid.remote(), timeout=60)  # the Supervisor's health check
        answered = time.monotonic() - started
        done, _ = ray.wait([ready], timeout=0)
        assert not done, f"recovery finished before the check ({answered:.2f}s): make BACKLOG bigger"
        assert ray.get(ready, timeout=300) is True
        assert ray.get(actor.stats.remote(), timeout=30).depth["EMAIL"]["queued"] == BACKLOG
    finally:
        ray.kill(actor, no_restart=True)
