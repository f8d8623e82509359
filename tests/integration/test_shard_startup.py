"""A shard's start: with a big backlog it answers its health check while it recovers (it is not
a hang); a start that fails (SQLite's write lock held by another connection) is reported down, with
why, on ``/healthz`` and the admin overview, and the shard comes back by itself once the lock goes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
import ray

from actors.queue import QueueActor
from actors.shard_store import shard_path
from herald.config import Settings
from herald.sharding import shard_for_uid, shard_of_tag
from tests.conftest import ADMIN_KEY, Service
from tests.support.payloads import email_payload
from tests.support.shard_rows import copies_of_one_record

pytestmark = pytest.mark.ray
BACKLOG = 150_000


def _backlog(settings: Settings) -> None:
    """One real record, copied in SQL to BACKLOG live ones (fast to make, slow to load)."""
    copies_of_one_record(settings, BACKLOG - 1, {"expires_at": "? + 0 * i"}, time.time() + 86400)


def test_health_is_answered_during_a_long_recovery(ray_session: None, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, shards=1, sqlite_synchronous="OFF")
    _backlog(settings)
    actor = QueueActor.options(name=f"startup-{time.time()}").remote([0], settings)  # type: ignore[attr-defined]
    try:
        ready = actor.ready.remote(0)
        started = time.monotonic()
        ray.get(actor.pid.remote(0), timeout=60)  # the Supervisor's health check
        answered = time.monotonic() - started
        done, _ = ray.wait([ready], timeout=0)
        assert not done, f"recovery finished before the check ({answered:.2f}s): make BACKLOG bigger"
        assert ray.get(ready, timeout=300) is True
        assert ray.get(actor.stats.remote(0), timeout=30).depth["EMAIL"]["queued"] == BACKLOG
    finally:
        ray.kill(actor, no_restart=True)


def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """``check()``'s first truthy answer, polled; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"{what} within {timeout:g}s"
        time.sleep(0.25)


def _post(client: httpx.Client, uid: str) -> str:
    response = client.post("/v1/notifications", json=email_payload(uid=uid))
    assert response.status_code == 202, response.text
    return str(response.json()["details"]["tag"])


def _status(client: httpx.Client, tag: str) -> str | None:
    response = client.get(f"/v1/notifications/{tag}")
    return response.json()["status"] if response.status_code == 200 else None


def test_a_shard_whose_start_meets_a_locked_file_is_reported_down_and_comes_back(
        service: Service) -> None:
    shards = service.herald.supervisor.shard_handles().get()
    admin = httpx.Client(base_url=service.base_url, timeout=30.0,
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with service.client() as client, admin:
        tag = _post(client, "startup-1")
        index = shard_of_tag(tag, len(shards))
        assert index is not None
        _until(lambda: _status(client, tag) == "sent", 60, f"{tag} sent")
        # A closed delivery-log segment: the shard's start deletes its events from storage,
        # a write, which waits for SQLite's lock (5 s) and then fails.
        shards[index].close().get(timeout=30)
        assert list((service.data_dir / "log" / f"shard-{index}").glob("*.arrow"))
        path = shard_path(Settings(data_dir=service.data_dir), index)
        lock = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            lock.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
            ray.kill(shards[index].handle, no_restart=False)  # Ray restarts it: its start fails
            health = _until(lambda: (r := client.get("/healthz")).status_code == 503 and r,
                            60, "/healthz never said a shard is down")
            down = health.json()["down"]
            assert [d["shard"] for d in down] == [index], health.text
            assert "locked" in down[0]["reason"], health.text
            row = _until(lambda: next(s for s in admin.get("/v1/admin/overview").json()["shards"]
                                      if s["shard"] == index and not s["up"] and s["reason"]),
                         30, "the overview never listed the shard as down")
            assert "locked" in row["reason"]
            assert client.get(f"/v1/notifications/{tag}").status_code == 503  # not a hang
            # The health check is answered: the Supervisor does not replace it (it would not help).
            assert shards[index].pid().get(timeout=30) > 0
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # Back by itself: healthy, and it takes and delivers notifications again.
        _until(lambda: client.get("/healthz").status_code == 200, 60, "/healthz back to 200")
        assert client.get("/healthz").json()["status"] == "ok"
        uid = next(u for u in (f"startup-{n}" for n in range(2, 500))
                   if shard_for_uid(u, len(shards)) == index)
        again = _post(client, uid)
        assert shard_of_tag(again, len(shards)) == index
        _until(lambda: _status(client, again) == "sent", 60, f"{again} sent after the lock")
        assert _status(client, tag) == "sent"
        overview = admin.get("/v1/admin/overview").json()
        assert all(s["up"] and s["reason"] is None for s in overview["shards"])
