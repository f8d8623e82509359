"""An admin search runs beside its shard's other calls: a long one holds up no enqueue there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from actors.queue import QueueActor
from herald.config import Settings
from herald.errors import ValidationError
from herald.search import SearchPage, SearchQuery
from tests.support.shard_rows import copies_of_one_record
from tests.unit.conftest import make_notification

pytestmark = pytest.mark.ray
ROWS = 400_000


def _history(settings: Settings) -> None:
    """ROWS sent notifications (final: not loaded at start), copied in SQL from one."""
    copies_of_one_record(settings, ROWS, {"status": "'sent'", "updated_at": "? + 0 * i"},
                         time.time())


def test_a_long_search_does_not_hold_up_an_enqueue_on_its_shard(ray_session: None,
                                                                 tmp_path: Path) -> None:
    # A budget above the table: this search reads every record (a service no one has).
    settings = Settings(data_dir=tmp_path, shards=1, sqlite_synchronous="OFF",
                        admin_search_scan=10 * ROWS)
    _history(settings)
    actor = QueueActor.options(name=f"search-{time.time()}").remote([0], settings)  # type: ignore[attr-defined]
    try:
        assert ray.get(actor.ready.remote(0), timeout=300) is True
        search = actor.admin_search.remote(0, SearchQuery(service="no-such-service", limit=10))
        enqueue = actor.enqueue.remote(0, [make_notification("EMAIL", now=time.time())])
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
