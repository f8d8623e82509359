"""An admin search runs beside its shard's other calls: a long one holds up no enqueue there."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import ray

from actors.queue import QueueActor, shard_path
from herald.config import Settings
from herald.errors import ValidationError
from herald.search import SearchPage, SearchQuery
from herald.storage import SQLiteStorage
from tests.unit.conftest import T0, make_notification, make_shard

pytestmark = pytest.mark.ray
ROWS = 400_000


def _history(settings: Settings) -> None:
    """ROWS sent notifications (final: not loaded at start), copied in SQL from one."""
    path = shard_path(settings, 0)
    storage = SQLiteStorage(path, "OFF")
    shard = make_shard(storage)
    shard.enqueue([make_notification("EMAIL")], T0)
    shard.flush()
    storage.close()
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(notifications)")]
        copy = ", ".join("tag || '-' || i" if c == "tag" else "seq + i" if c == "seq"
                         else "NULL" if c == "idempotency_key" else "'sent'" if c == "status"
                         else "? + 0 * i" if c == "updated_at" else c for c in columns)
        db.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                   f" INSERT INTO notifications SELECT {copy} FROM notifications, n",
                   (ROWS, time.time()))


def test_a_long_search_does_not_hold_up_an_enqueue_on_its_shard(ray_session: None,
                                                                 tmp_path: Path) -> None:
    # A budget above the table: this search reads every record (a service no one has).
    settings = Settings(data_dir=tmp_path, shards=1, sqlite_synchronous="OFF",
                        admin_search_scan=10 * ROWS)
    _history(settings)
    actor = QueueActor.options(name=f"search-{time.time()}").remote(0, settings)  # type: ignore[attr-defined]
    try:
        assert ray.get(actor.ready.remote(), timeout=300) is True
        search = actor.admin_search.remote(SearchQuery(service="no-such-service", limit=10))
        enqueue = actor.enqueue.remote([make_notification("EMAIL", now=time.time())])
        done, _ = ray.wait([enqueue], timeout=120)
        assert done, "the enqueue never finished"
        searched, _ = ray.wait([search], timeout=0)
        assert not searched, "the enqueue waited for the search to finish"
        assert len(ray.get(enqueue)) == 1
        try:  # the search itself: no match, or too long for its time bound
            page = ray.get(search, timeout=120)
            assert isinstance(page, SearchPage) and page.items == []
        except ray.exceptions.RayTaskError as exc:
            assert isinstance(exc.cause, ValidationError)
    finally:
        ray.kill(actor, no_restart=True)
