"""Unit tests for herald.storage: both backends keep the same promises."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from herald.attempt import Attempt
from herald.record import Record
from herald.storage import SQLiteStorage, Storage
from tests.unit.conftest import T0, make_notification

_NEXT_SEQ = iter(range(1, 1_000_000))


def make_record(seq: int | None = None, *, tenant: str = "acme", btag: str | None = None,
                **changes: Any) -> Record:
    record = Record.new(make_notification(tenant=tenant, btag=btag), seq or next(_NEXT_SEQ))
    return dataclasses.replace(record, **changes)


def test_round_trip_of_every_field(storage: Storage) -> None:
    record = make_record(
        7, btag="A36701", status="retrying", attempts=2, not_before=T0 + 5.5,
        lease_until=T0 + 30.25, updated_at=T0 + 1, provider_id="SM1",
        history=[Attempt(attempt=1, at=T0, outcome="retry", info={"n": [1, 2]})],
    )
    record.payload["details"]["vars"] = {"unicode": "héllo ✓", "nested": {"a": [1, 2.5, None]}}
    storage.write([record], [])
    assert storage.get(record.tag) == record
    assert storage.get("missing") is None


def test_update_changes_only_mutable_fields(storage: Storage) -> None:
    record = make_record(1)
    storage.write([record], [])
    changed = dataclasses.replace(
        record, status="sent", attempts=1, updated_at=T0 + 3, provider_id="p1",
        history=[Attempt(attempt=1, at=T0, outcome="sent")], priority=9, payload={"changed": True},
    )
    storage.write([], [changed])
    stored = storage.get(record.tag)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.provider_id) == ("sent", 1, "p1")
    assert stored.history == [Attempt(attempt=1, at=T0, outcome="sent")]
    assert (stored.priority, stored.payload) == (record.priority, record.payload)


def test_backend_keeps_its_own_copy(storage: Storage) -> None:
    record = make_record(1)
    storage.write([record], [])
    record.status = "sending"
    record.history.append(Attempt(at=T0, outcome="sent"))
    fetched = storage.get(record.tag)
    assert fetched is not None and (fetched.status, fetched.history) == ("queued", [])
    fetched.history.append(Attempt(at=T0, outcome="x"))
    again = storage.get(record.tag)
    assert again is not None and again.history == []


def test_load_live_excludes_final_and_orders_by_seq(storage: Storage) -> None:
    records = [make_record(seq) for seq in (5, 2, 9, 1, 7, 3)]
    storage.write(records, [])
    finals = {2: "sent", 7: "dead", 3: "cancelled"}
    storage.write([], [dataclasses.replace(r, status=finals[r.seq])
                       for r in records if r.seq in finals])
    storage.write([], [dataclasses.replace(r, status="sending", lease_until=T0)
                       for r in records if r.seq == 9])
    live = storage.load_live()
    assert [r.seq for r in live] == [1, 5, 9]
    assert [r.status for r in live] == ["queued", "queued", "sending"]


def test_find_idempotent_is_per_tenant_and_survives_final(storage: Storage) -> None:
    first = make_record(1, btag="k")
    other = make_record(2, tenant="globex", btag="k")
    plain = make_record(3)
    storage.write([first, other, plain], [])
    storage.write([], [dataclasses.replace(first, status="sent")])
    assert storage.find_idempotent("acme", "k") == first.tag
    assert storage.find_idempotent("globex", "k") == other.tag
    assert storage.find_idempotent("acme", "other") is None
    assert storage.find_idempotent("initech", "k") is None


def test_max_seq(storage: Storage) -> None:
    assert storage.max_seq() == 0
    storage.write([make_record(4), make_record(11), make_record(2)], [])
    assert storage.max_seq() == 11


def test_empty_write_is_a_no_op(storage: Storage) -> None:
    storage.write([], [])
    assert storage.load_live() == []


def test_write_inserts_and_updates_together(storage: Storage) -> None:
    old = make_record(1)
    storage.write([old], [])
    new = make_record(2)
    storage.write([new], [dataclasses.replace(old, status="sending", lease_until=T0 + 30)])
    assert [(r.seq, r.status) for r in storage.load_live()] == [(1, "sending"), (2, "queued")]


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "shard.db"
    db = SQLiteStorage(path)
    live, done = make_record(1, btag="k"), make_record(2)
    db.write([live, done], [])
    db.write([], [dataclasses.replace(done, status="delivered")])
    db.close()

    reopened = SQLiteStorage(path)
    try:
        assert [r.tag for r in reopened.load_live()] == [live.tag]
        assert reopened.get(done.tag) == dataclasses.replace(done, status="delivered")
        assert reopened.find_idempotent("acme", "k") == live.tag
        assert reopened.max_seq() == 2
    finally:
        reopened.close()


def test_sqlite_write_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shard.db"
    db = SQLiteStorage(path, synchronous="OFF")
    kept = make_record(1)
    db.write([kept], [])
    good = make_record(2)
    poison = make_record(3)
    poison.payload["details"]["vars"] = {"n": 10**30}  # JSON cannot hold it in 64 bits
    with pytest.raises(TypeError):
        db.write([good, poison], [dataclasses.replace(kept, status="sent")])
    db.close()

    reopened = SQLiteStorage(path, synchronous="OFF")
    try:
        assert reopened.get(good.tag) is None
        assert [(r.tag, r.status) for r in reopened.load_live()] == [(kept.tag, "queued")]
    finally:
        reopened.close()


def test_sqlite_uses_wal_mode(tmp_path: Path) -> None:
    db = SQLiteStorage(tmp_path / "shard.db")
    try:
        mode = db._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        db.close()


def test_find_idempotent_many_finds_only_stored_keys(storage: Storage) -> None:
    from herald.record import Record
    from tests.unit.conftest import make_notification

    first = Record.new(make_notification(btag="k1"), 1)
    second = Record.new(make_notification(btag="k2", tenant="other"), 2)
    storage.write([first, second], [])
    found = storage.find_idempotent_many([(first.tenant, "k1"), (first.tenant, "k2"),
                                          ("other", "k2"), ("nobody", "k9")])
    assert found == {(first.tenant, "k1"): first.tag, ("other", "k2"): second.tag}


def test_every_committed_write_is_counted_once(storage: Storage) -> None:
    """``commits`` (``herald_store_commits_total``): one per write transaction, none for a
    write with nothing in it."""
    first, second = make_record(1, btag="k"), make_record(2)
    storage.write([], [])
    assert storage.commits == 0
    storage.write([first, second], [dataclasses.replace(first, status="sending")])
    storage.claim([("acme", "elsewhere", "tag-on-another-shard")], T0)
    storage.delete_final(T0, 10, T0)
    storage.delete_events(0)
    storage.admin().save_pause("EMAIL", T0)
    assert storage.commits == 5
