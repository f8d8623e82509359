"""The log shipper: events leave storage for Arrow segments once, in order, and survive a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from actors.log_shipper import LogShipper
from herald.data_dir import OPEN_SEGMENT_SUFFIX, DataDir, parse_segment_name
from herald.delivery_log import LogEvent
from herald.log_schema import SCHEMA
from herald.memory_storage import MemoryStorage
from herald.storage import SQLiteStorage, Storage

T0 = 1_700_000_000.0
CHANNELS = ("email", "sms", "fax", "browser")


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend: Storage = (MemoryStorage() if request.param == "memory"
                        else SQLiteStorage(tmp_path / "shard.db", synchronous="OFF"))
    yield backend
    backend.close()


def _event(i: int) -> LogEvent:
    return LogEvent(
        tag=f"tag-{i}", tenant="acme", type="CM_EMAIL", channel=CHANNELS[i % 4],
        event="attempt" if i % 3 else "accepted", status="sent" if i % 3 else "queued",
        provider="smtp" if i % 3 else None, attempt=i % 3, error_code="550" if i % 7 == 0 else None,
        requester_service="svc", priority=4, at=T0 + i / 1000, latency_ms=float(i),
    )


def _log(storage: Storage, start: int, count: int) -> None:
    storage.write([], [], [_event(i) for i in range(start, start + count)])


def _segments(log_dir: Path, shard: int = 0) -> list[Path]:
    return sorted((log_dir / f"shard-{shard}").glob("*.arrow"))


def _read(path: Path) -> pa.Table:
    with pa.ipc.open_file(path) as reader:
        return reader.read_all()


def _tags(log_dir: Path) -> list[str]:
    return [tag for path in _segments(log_dir) for tag in _read(path)["tag"].to_pylist()]


def _stored(storage: Storage) -> int:
    return len(storage.read_events(0, 1_000_000))


def test_rotates_by_rows_and_names_segments_by_their_ids(storage: Storage, tmp_path: Path) -> None:
    _log(storage, 0, 250)
    shipper = LogShipper(storage, DataDir(tmp_path), 3, rotate_seconds=60.0, max_rows=100,
                         read_batch=30)
    assert shipper.ship(T0) == 250
    segments = _segments(tmp_path / "log", 3)
    assert [p.name for p in segments] == ["00000000000001-00000000000100.arrow",
                                          "00000000000101-00000000000200.arrow"]
    assert shipper.open_rows == 50
    assert _stored(storage) == 50  # the closed segments' events left storage, the open ones not
    table = _read(segments[0])
    assert table.schema.equals(SCHEMA, check_metadata=True)
    assert table.num_rows == 100
    assert table["event_id"].to_pylist() == list(range(1, 101))
    assert set(table["shard"].to_pylist()) == {3}
    row = table.slice(7, 1).to_pylist()[0]
    expected = _event(7)
    assert row["tag"] == "tag-7" and row["channel"] == expected.channel
    assert row["error_code"] == "550" and row["provider"] == "smtp" and row["attempt"] == 1
    assert row["at"].timestamp() == pytest.approx(expected.at, abs=1e-6)
    assert row["latency_ms"] == 7.0


def test_rotates_by_time_and_never_writes_an_empty_segment(storage: Storage, tmp_path: Path) -> None:
    shipper = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=10_000)
    assert shipper.ship(T0) == 0
    assert not list((tmp_path / "log" / "shard-0").iterdir())  # nothing to ship: no file
    _log(storage, 0, 10)
    shipper.ship(T0)
    _log(storage, 10, 5)
    shipper.ship(T0 + 59)
    assert _segments(tmp_path / "log") == [] and _stored(storage) == 15
    assert shipper.ship(T0 + 60) == 0  # due: the open segment closes although nothing is new
    assert [p.name for p in _segments(tmp_path / "log")] == ["00000000000001-00000000000015.arrow"]
    assert _stored(storage) == 0
    _log(storage, 15, 3)
    shipper.ship(T0 + 100)  # a new segment's clock starts with its first row
    assert len(_segments(tmp_path / "log")) == 1
    shipper.ship(T0 + 160)
    assert len(_segments(tmp_path / "log")) == 2
    assert _tags(tmp_path / "log") == [f"tag-{i}" for i in range(18)]


def test_events_leave_storage_only_after_the_segment_is_closed(
    storage: Storage, tmp_path: Path
) -> None:
    _log(storage, 0, 40)
    shipper = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=1000)
    shipper.ship(T0)
    [open_file] = (tmp_path / "log" / "shard-0").glob("*" + OPEN_SEGMENT_SUFFIX)
    assert open_file.name == "00000000000001" + OPEN_SEGMENT_SUFFIX
    assert _stored(storage) == 40 and shipper.shipped_through == 40
    shipper.close(T0 + 1)
    assert not open_file.exists() and _stored(storage) == 0
    assert _tags(tmp_path / "log") == [f"tag-{i}" for i in range(40)]


def test_a_crash_with_an_open_segment_loses_and_duplicates_nothing(
    storage: Storage, tmp_path: Path
) -> None:
    _log(storage, 0, 120)
    first = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=50)
    first.ship(T0)  # two closed segments, 20 rows in the open one
    _log(storage, 120, 30)
    first.ship(T0 + 1)
    assert len(_segments(tmp_path / "log")) == 3 and first.open_rows == 0
    _log(storage, 150, 7)
    first.ship(T0 + 2)
    assert first.open_rows == 7
    # The process dies here: no close(). The .open file and the stored events are left.
    assert list((tmp_path / "log" / "shard-0").glob("*" + OPEN_SEGMENT_SUFFIX))
    _log(storage, 157, 13)  # accepted by the shard after the restart
    second = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=50)
    assert not list((tmp_path / "log" / "shard-0").glob("*" + OPEN_SEGMENT_SUFFIX))
    second.close(T0 + 3)
    assert _tags(tmp_path / "log") == [f"tag-{i}" for i in range(170)]
    assert _stored(storage) == 0


def test_a_crash_between_rename_and_delete_ships_nothing_twice(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _log(storage, 0, 30)
    shipper = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=1000)
    shipper.ship(T0)

    def crash(through: int) -> None:
        raise KeyboardInterrupt("killed")  # not an error the shipper handles: the process ends

    monkeypatch.setattr(storage, "delete_events", crash)
    with pytest.raises(KeyboardInterrupt):
        shipper.close(T0 + 1)
    monkeypatch.undo()
    assert len(_segments(tmp_path / "log")) == 1 and _stored(storage) == 30
    restarted = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=1000)
    assert _stored(storage) == 0  # the closed segment's name says these are shipped
    _log(storage, 30, 5)
    restarted.close(T0 + 2)
    assert _tags(tmp_path / "log") == [f"tag-{i}" for i in range(35)]


def test_a_disk_error_drops_the_open_segment_and_ships_it_again_later(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _log(storage, 0, 10)
    shipper = LogShipper(storage, DataDir(tmp_path), 0, rotate_seconds=60.0, max_rows=1000)
    shipper.ship(T0)
    failing = True
    real_replace = __import__("os").replace

    def replace(src: Path, dst: Path) -> None:
        if failing:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("actors.log_shipper.os.replace", replace)
    assert shipper.ship(T0 + 61) == 0  # logged, not raised: the shard's timer goes on
    assert not list((tmp_path / "log" / "shard-0").iterdir()) and _stored(storage) == 10
    failing = False
    _log(storage, 10, 2)
    assert shipper.ship(T0 + 62) == 12
    shipper.close(T0 + 63)
    assert _tags(tmp_path / "log") == [f"tag-{i}" for i in range(12)]


def test_shards_write_to_their_own_directories(tmp_path: Path) -> None:
    stores = [MemoryStorage(), MemoryStorage()]
    for shard, store in enumerate(stores):
        _log(store, 0, 5 + shard)
        LogShipper(store, DataDir(tmp_path), shard, 60.0, 100).close(T0)
    for shard in (0, 1):
        [segment] = _segments(tmp_path / "log", shard)
        assert parse_segment_name(segment.name)
        assert set(_read(segment)["shard"].to_pylist()) == {shard}
        assert _read(segment).num_rows == 5 + shard
