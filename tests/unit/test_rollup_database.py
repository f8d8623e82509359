"""The database's rollup on a real PostgreSQL: ``herald_events`` of every shard → Parquet, once each.

Events are inserted the way the shards' storage does (a row per event, orjson of a LogEvent);
the Parquet is then read back and compared with them row for row, after reruns, after crashes
at each step, with ids that commit out of order, and through ``herald rollup`` and
``herald report`` with a ``file://`` destination. No Ray: this rollup does not need one.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import jobs.database_rollup
import jobs.file_steps
from herald.analytics_store import AnalyticsStore
from herald.config import Settings
from herald.data_dir import STAGING
from herald.delivery_log import LogEvent
from herald.log_schema import SCHEMA
from herald.pg_schema import migrate
from jobs.database_rollup import ROLLUP_LOCK, rollup_database
from jobs.file_steps import RollupConflict, pending
from jobs.run_report import RollupCancelled
from tests.support.crash import Crash, crash_on_call
from tests.support.postgres import PostgresServer

T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC: the rows fall on three days
CHANNELS = ("email", "sms", "fax", "browser")
SHARDS = 3
_databases = itertools.count()
#: (shard, event_id) → (tag, channel, UTC day): what the Parquet must hold, exactly once each.
Truth = dict[tuple[int, int], tuple[str, str, str]]




class Shards:
    """Shards logging events into one database, and the truth of what they logged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.truth: Truth = {}
        self._count = 0
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)

    def event(self, shard: int) -> tuple[int, bytes, tuple[str, str, str]]:
        """The next notification's ``accepted`` or ``final`` event (two per tag)."""
        i = self._count
        self._count += 1
        at = T0 + i * 400.0
        channel = CHANNELS[(i // 2) % 4]
        kind, status = ("accepted", "queued") if i % 2 == 0 else ("final", "sent")
        event = LogEvent(f"tag-{i // 2}", "acme", f"CM_{channel.upper()}", channel, kind, status,
                         None if i % 2 == 0 else "smtp", i % 2, None, "svc", 4, at, (i % 2) * 5.0)
        day = datetime.fromtimestamp(at, UTC).date().isoformat()
        return shard, orjson.dumps(event), (event.tag, channel, day)

    def add(self, per_shard: int, conn: psycopg.Connection | None = None) -> list[int]:
        """Log ``per_shard`` events on each shard, shards interleaved; their ids. Committed at
        once, or in ``conn``'s open transaction (then the caller commits)."""
        if conn is None:
            with psycopg.connect(self.url) as db:  # one transaction, committed on leaving
                return self.add(per_shard, db)
        ids = []
        for shard, blob, fact in [self.event(s) for _ in range(per_shard) for s in range(SHARDS)]:
            row = conn.execute("INSERT INTO herald_events (shard, event) VALUES (%s, %s)"
                               " RETURNING id", (shard, blob)).fetchone()
            assert row is not None
            self.truth[(shard, row[0])] = fact
            ids.append(row[0])
        return ids

    def left(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM herald_events").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def shards(pg_server: PostgresServer) -> Shards:
    made = Shards(pg_server.fresh_database(f"rollup_{next(_databases)}"))
    made.add(100)
    return made


@pytest.fixture
def store(tmp_path: Path) -> AnalyticsStore:
    return AnalyticsStore.open(f"file://{tmp_path}/analytics")


def parquet(store: AnalyticsStore) -> Truth:
    """Every row of the Parquet as the truth's key and value; fails on a row seen twice."""
    root = Path(store.events)
    if not root.exists():
        return {}
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(
        columns=["shard", "event_id", "tag", "channel", "dt"])
    rows = table.to_pylist()
    found = {(r["shard"], r["event_id"]): (r["tag"], r["channel"], str(r["dt"])) for r in rows}
    assert len(found) == len(rows), "a (shard, event_id) is in the Parquet twice"
    return found


def files(store: AnalyticsStore) -> list[Path]:
    return sorted(Path(store.events).rglob("*.parquet"))


def test_every_shards_events_become_parquet_once_and_leave_the_database(
    shards: Shards, store: AnalyticsStore
) -> None:
    report = rollup_database(shards.url, store, batch_rows=70, compact_min_files=100)
    assert (report.rows, report.batches, report.unreadable) == (300, 5, [])
    assert parquet(store) == shards.truth and shards.left() == 0
    assert len({day for _, _, day in shards.truth.values()}) == 3
    schema = pq.ParquetFile(files(store)[0]).schema_arrow  # the segments' rollup's files
    assert schema.names == [name for name in SCHEMA.names if name != "channel"]
    assert schema.metadata[b"herald.schema_version"] == b"1"
    assert not Path(store.path(STAGING)).exists()

    again = rollup_database(shards.url, store)  # nothing new: nothing written, nothing twice
    assert (again.rows, again.files_written) == (0, 0) and parquet(store) == shards.truth
    shards.add(10)
    assert rollup_database(shards.url, store).rows == 30
    assert parquet(store) == shards.truth and shards.left() == 0


def test_a_crash_after_writing_the_parquet_and_before_the_commit_loses_and_doubles_nothing(
    shards: Shards, store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_on_call(patch, jobs.database_rollup, "commit", 2)  # the second batch's
        with pytest.raises(Crash):
            rollup_database(shards.url, store, batch_rows=100)
    assert len(parquet(store)) == 100 and shards.left() == 200  # the first batch only
    assert list(Path(store.path(STAGING)).rglob("*.parquet"))  # the second, staged only
    rollup_database(shards.url, store, batch_rows=100)
    assert parquet(store) == shards.truth and shards.left() == 0
    assert not Path(store.path(STAGING)).exists()


def test_a_crash_after_the_commit_is_finished_by_the_next_run(
    shards: Shards, store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(shards.url, autocommit=True) as conn:
        with monkeypatch.context() as patch:
            crash_on_call(patch, jobs.file_steps, "move", 2)  # the batch's second file
            with pytest.raises(Crash):
                rollup_database(shards.url, store)
        assert shards.left() == 0  # committed: the events are gone...
        assert 0 < len(parquet(store)) < 300  # ...and not all their Parquet is out yet
        assert pending(conn, store)
        rerun = rollup_database(shards.url, store)
        assert rerun.rows == 0 and not pending(conn, store)
    assert parquet(store) == shards.truth


def test_compaction_merges_small_files_and_survives_a_crash(
    shards: Shards, store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollup_database(shards.url, store, batch_rows=20, compact_min_files=100)
    partitions = {path.parent for path in files(store)}
    assert len(files(store)) > 2 * len(partitions)
    with monkeypatch.context() as patch:
        crash_on_call(patch, jobs.file_steps, "move", 3)  # two merged files out, none removed
        with pytest.raises(Crash):
            rollup_database(shards.url, store, compact_min_files=2)
    report = rollup_database(shards.url, store, compact_min_files=2)
    assert report.rows == 0 and sorted(path.parent for path in files(store)) == sorted(partitions)
    assert parquet(store) == shards.truth


def test_ids_that_commit_out_of_order_are_rolled_by_a_later_run(
    shards: Shards, store: AnalyticsStore
) -> None:
    with psycopg.connect(shards.url) as slow:
        late = set(shards.add(1, slow))  # lower ids, their transaction still open...
        shards.add(5)  # ...while higher ones commit
        assert rollup_database(shards.url, store).rows == 315
        assert parquet(store) == {key: fact for key, fact in shards.truth.items()
                                  if key[1] not in late}
        slow.commit()
    assert shards.left() == SHARDS
    assert rollup_database(shards.url, store).rows == SHARDS
    assert parquet(store) == shards.truth and shards.left() == 0


def test_events_deleted_by_another_hand_commit_nothing(
    shards: Shards, store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = jobs.database_rollup.write_partitions

    def shipped_meanwhile(*args: object, **kwargs: object) -> object:
        with psycopg.connect(shards.url, autocommit=True) as conn:
            conn.execute("DELETE FROM herald_events WHERE id IN (SELECT min(id) FROM herald_events)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.database_rollup, "write_partitions", shipped_meanwhile)
    with pytest.raises(RollupConflict):
        rollup_database(shards.url, store)
    assert parquet(store) == {} and shards.left() == 299


def test_a_row_that_is_not_an_event_stays_and_the_rest_roll(
    shards: Shards, store: AnalyticsStore
) -> None:
    with psycopg.connect(shards.url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO herald_events (shard, event) VALUES (1, 'not json')"
                           " RETURNING id").fetchone()
    assert row is not None
    report = rollup_database(shards.url, store)
    assert report.unreadable == [f"herald_events id {row[0]}"] and "unreadable" in report.summary()
    assert parquet(store) == shards.truth and shards.left() == 1


def test_one_run_per_database_at_a_time_and_a_waiting_one_can_be_cancelled(
    shards: Shards, store: AnalyticsStore
) -> None:
    cancel = threading.Event()
    with psycopg.connect(shards.url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ROLLUP_LOCK,))  # another run holds it
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        started = time.monotonic()
        with pytest.raises(RollupCancelled):
            rollup_database(shards.url, store, cancel=cancel)
        assert time.monotonic() - started < 5 and shards.left() == 300
    assert rollup_database(shards.url, store).rows == 300  # its lock went with its session


def test_herald_rollup_and_report_through_a_file_uri(
    shards: Shards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.rollup import main as module_main
    from launcher.cli import main as cli_main

    monkeypatch.chdir(tmp_path)  # no herald.toml here
    uri = f"file://{tmp_path}/bucket/herald"
    for name, value in {"HERALD_DATABASE_URL": shards.url, "HERALD_ANALYTICS_URI": uri,
                        "HERALD_DATA_DIR": str(tmp_path / "data"),
                        "HERALD_RAY_ADDRESS": "127.0.0.1:1"}.items():  # no Ray may be needed
        monkeypatch.setenv(name, value)
    assert cli_main(["rollup"]) == 0
    assert capsys.readouterr().out.startswith("rollup: 300 rows from the database in 1 batch,")
    shards.add(4)  # two more notifications on each shard
    assert module_main([]) == 0
    assert "rollup: 12 rows from the database" in capsys.readouterr().out
    assert parquet(AnalyticsStore.open(uri)) == shards.truth
    assert not (tmp_path / "data").exists()  # nothing went to the data dir

    assert cli_main(["report", "--format", "json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    tags = len({tag for tag, _, _ in shards.truth.values()})
    assert numbers["rows"] == 312 and numbers["notifications"] == tags == 156
    assert numbers["outcomes"]["sent"] == tags  # accepted, then sent: every one
    assert numbers["data_dir"] == f"{tmp_path}/bucket/herald/events"


def test_herald_rollup_of_segments_refuses_an_object_store_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from launcher.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HERALD_ANALYTICS_URI", "s3://bucket/herald")
    monkeypatch.delenv("HERALD_DATABASE_URL", raising=False)
    assert cli_main(["rollup"]) == 2  # before any Ray is asked for
    error = capsys.readouterr().err
    assert error.startswith("herald: HERALD_ANALYTICS_URI: ") and error.count("\n") == 1


def test_an_unreachable_database_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from launcher.cli import main as cli_main
    from tests.support.postgres import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HERALD_DATABASE_URL",
                       f"postgresql://herald:secret-pw@127.0.0.1:{free_port()}/herald?connect_timeout=5")
    assert cli_main(["rollup"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("herald: cannot reach HERALD_DATABASE_URL: ") and error.count("\n") == 1
    assert "secret-pw" not in error


def test_herald_ups_scheduler_rolls_the_database(shards: Shards, tmp_path: Path) -> None:
    from jobs.scheduler import RollupScheduler

    settings = Settings(data_dir=tmp_path, database_url=shards.url, rollup_seconds=0.1)
    scheduler = RollupScheduler.from_settings(settings).start()
    deadline = time.monotonic() + 30
    while scheduler.last_report is None and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert scheduler.last_report is not None and scheduler.last_report.rows == 300
    assert parquet(AnalyticsStore.locate(tmp_path)) == shards.truth


def test_only_the_active_deployment_s_scheduler_rolls(shards: Shards, tmp_path: Path) -> None:
    """Two deployments on one database: the standby leaves the rollup to the active one, so
    the Parquet is where the active one's report reads it."""
    from herald.pg_leases import acquire_deployment
    from jobs.scheduler import scheduled_job

    with psycopg.connect(shards.url, autocommit=True) as conn:
        assert acquire_deployment(conn, "active-one", 15.0) is not None
    standby = scheduled_job(Settings(data_dir=tmp_path / "b", database_url=shards.url,
                                     deployment_id="standby-one"))
    assert standby(tmp_path / "b", retention_days=7).rows == 0
    active = scheduled_job(Settings(data_dir=tmp_path / "a", database_url=shards.url,
                                    deployment_id="active-one"))
    assert active(tmp_path / "a", retention_days=7).rows == 300
    assert parquet(AnalyticsStore.locate(tmp_path / "a")) == shards.truth


def test_the_segments_scheduler_with_an_object_store_turns_itself_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jobs.scheduler import RollupScheduler

    settings = Settings(data_dir=tmp_path, analytics_uri="gs://bucket/herald", rollup_seconds=0.05)
    scheduler = RollupScheduler.from_settings(settings).start()
    assert scheduler._thread is not None
    scheduler._thread.join(10)
    assert not scheduler._thread.is_alive()
    assert "rollup off: HERALD_ANALYTICS_URI" in caplog.text
