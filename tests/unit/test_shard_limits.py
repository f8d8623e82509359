"""Limits that protect a shard: retention of final records, bytes in memory, private files."""

from __future__ import annotations

import stat
from pathlib import Path

from herald.outcome import Outcome
from herald.storage import SQLiteStorage, Storage
from tests.unit.conftest import T0, lane, make_notification, make_shard


def test_final_records_older_than_the_cutoff_are_deleted_in_small_batches(storage: Storage) -> None:
    shard = make_shard(storage)
    old = [make_notification("SMS") for _ in range(5)]
    live = make_notification("SMS")
    shard.enqueue([*old, live], T0)
    for delivery in shard.lease(lane("SMS"), 5, T0, 30.0):
        shard.ack([Outcome(delivery.tag, "sent", "twilio", lease=delivery.lease)], T0 + 1)
    shard.flush()
    assert shard.delete_final(T0 + 12, 10, limit=3) == 3  # a small batch at a time
    assert shard.delete_final(T0 + 12, 10, limit=3) == 2
    assert shard.delete_final(T0 + 12, 10, limit=3) == 0
    assert all(storage.get(n.tag) is None for n in old)
    assert storage.get(live.tag) is not None  # not final: never deleted
    assert shard.delete_final(T0 + 10, 10, limit=10) == 0  # nothing is older than the cutoff


def test_the_bytes_of_live_payloads_are_counted_in_and_out(storage: Storage) -> None:
    shard = make_shard(storage)
    big = make_notification("SMS", vars={"blob": "x" * 10_000}, content="{blob|sub(0,10)}")
    small = make_notification("SMS")
    shard.enqueue([big, small], T0)
    assert shard.live_bytes == big.size + small.size and big.size > 10_000
    [delivery, _] = shard.lease(lane("SMS"), 2, T0, 30.0)
    shard.ack([Outcome(delivery.tag, "sent", "twilio", lease=delivery.lease)], T0 + 1)
    shard.flush()
    remaining = small.size if delivery.tag == big.tag else big.size
    assert shard.live_bytes == remaining
    restarted = make_shard(storage)  # recovery counts what it loads
    assert abs(restarted.live_bytes - remaining) < 64


def test_shard_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "queue" / "shard-0.db"
    storage = SQLiteStorage(path)
    shard = make_shard(storage)
    shard.enqueue([make_notification()], T0)
    shard.flush()
    for file in path.parent.iterdir():  # the database and its -wal / -shm files
        assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file.name
    storage.close()
