"""The rollup on Ray: segments from real shippers → Parquet whose counts equal the generated truth.

Counted three ways (pandas, pyarrow datasets, DuckDB), after running twice, after crashes at
each step, with duplicate segments, with retention; and once through ``ray job submit`` against
a ``ray start --head`` of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import jobs.manifest
from actors.log_shipper import LogShipper
from capture.net import free_port
from herald.data_dir import MANIFEST, DataDir
from herald.delivery_log import LogEvent
from herald.storage import SQLiteStorage
from jobs.manifest import Manifest
from jobs.rollup import RollupCancelled, rollup
from jobs.scheduler import RollupScheduler
from tests.support.crash import Crash, crash_on_call

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC: the rows fall on three days
CHANNELS = ("email", "sms", "fax", "browser")
Truth = Counter[tuple[str, str]]


class Logs:
    """Shards writing delivery-log events through real SQLite storage and log shippers."""

    def __init__(self, data_dir: Path, shards: int = 2, max_rows: int = 150) -> None:
        self.data_dir = data_dir
        self.truth: Truth = Counter()
        self._storages = [SQLiteStorage(data_dir / f"queue/shard-{i}.db", "OFF") for i in range(shards)]
        self._shippers = [LogShipper(s, DataDir(data_dir), i, 60.0, max_rows)
                          for i, s in enumerate(self._storages)]
        self._written = 0

    def add(self, per_shard: int) -> None:
        for storage, shipper in zip(self._storages, self._shippers, strict=True):
            events = []
            for _ in range(per_shard):
                i = self._written
                self._written += 1
                at = T0 + i * 97.0
                channel = CHANNELS[(i * 7 // 3) % 4]
                events.append(LogEvent(f"tag-{i}", "acme", f"CM_{channel.upper()}", channel,
                                       "attempt", "sent", "smtp", 1, None, "svc", 4, at, 5.0))
                self.truth[(datetime.fromtimestamp(at, UTC).date().isoformat(), channel)] += 1
            storage.write([], [], events)
            shipper.close(T0)

    def close(self) -> None:
        for storage in self._storages:
            storage.close()

    @property
    def events(self) -> Path:
        return self.data_dir / "analytics" / "events"

    def segments(self, shard: int = 0) -> list[Path]:
        return sorted((self.data_dir / "log" / f"shard-{shard}").glob("*.arrow"))


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    generated = Logs(tmp_path / "data")
    generated.add(600)
    yield generated
    generated.close()


def by_pandas(events: Path) -> Truth:
    frame = pd.read_parquet(events, columns=["shard", "event_id", "dt", "channel"])
    assert not frame.duplicated(["shard", "event_id"]).any()
    return Counter({(str(dt), str(ch)): int(n)
                    for (dt, ch), n in frame.groupby(["dt", "channel"], observed=True).size().items()})


def by_pyarrow(events: Path) -> Truth:
    table = ds.dataset(events, format="parquet", partitioning="hive").to_table(
        columns=["event_id", "dt", "channel"])
    counts = table.group_by(["dt", "channel"]).aggregate([("event_id", "count")]).to_pylist()
    return Counter({(row["dt"], row["channel"]): row["event_id_count"] for row in counts})


def by_duckdb(events: Path) -> Truth:
    with duckdb.connect() as db:
        rows = db.sql(f"SELECT CAST(dt AS VARCHAR), channel, count(*) FROM read_parquet("
                      f"'{events}/**/*.parquet', hive_partitioning=true) GROUP BY ALL").fetchall()
    return Counter({(dt, channel): count for dt, channel, count in rows})


def counts(events: Path) -> Truth:
    """The same counts from all three readers (or the test fails)."""
    if not events.exists():
        return Counter()
    seen = by_pandas(events)
    assert by_pyarrow(events) == seen
    assert by_duckdb(events) == seen
    return seen


def _files(events: Path) -> list[Path]:
    return sorted(events.rglob("*.parquet"))


def test_counts_equal_the_truth_in_pandas_pyarrow_and_duckdb(ray_session: None, logs: Logs) -> None:
    report = rollup(logs.data_dir)
    assert report.segments == 8 and report.rows == 1200 == report.rows_written
    assert report.duplicates == 0 and report.files_written == len(_files(logs.events))
    assert len({dt for dt, _ in logs.truth}) == 3 and len(logs.truth) == 12
    assert counts(logs.events) == logs.truth
    frame = pd.read_parquet(logs.events)
    assert str(frame["at"].dtype) == "datetime64[us, UTC]" and frame["tag"].nunique() == 1200
    schema = pq.ParquetFile(_files(logs.events)[0]).schema_arrow
    assert schema.metadata[b"herald.schema_version"] == b"1"
    assert not (logs.data_dir / "analytics" / ".staging").exists()

    again = rollup(logs.data_dir)  # idempotent: nothing new, nothing counted twice
    assert (again.segments, again.rows, again.files_written) == (0, 0, 0)
    assert counts(logs.events) == logs.truth
    logs.add(100)  # more events later: only they are added
    assert rollup(logs.data_dir).rows == 200
    assert counts(logs.events) == logs.truth


def test_a_crash_before_the_commit_leaves_nothing_visible(
    ray_session: None, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_on_call(patch, Manifest, "save", 1)
        with pytest.raises(Crash):
            rollup(logs.data_dir)
    assert counts(logs.events) == Counter()  # the Parquet was staged only
    assert list((logs.data_dir / "analytics" / ".staging").rglob("*.parquet"))
    assert rollup(logs.data_dir).segments == 8
    assert counts(logs.events) == logs.truth
    assert not (logs.data_dir / "analytics" / ".staging").exists()


def test_a_crash_halfway_through_publishing_is_finished_by_the_next_run(
    ray_session: None, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_on_call(patch, jobs.manifest, "rename", 2)  # after the first partition file
        with pytest.raises(Crash):
            rollup(logs.data_dir)
    partial = counts(logs.events)
    assert 0 < sum(partial.values()) < 1200 and not partial - logs.truth
    rerun = rollup(logs.data_dir)
    assert rerun.segments == 0  # committed before the crash: never rolled (counted) again
    assert counts(logs.events) == logs.truth


def test_compaction_merges_small_files_and_survives_a_crash(
    ray_session: None, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        rollup(logs.data_dir, compact_min_files=100)
        logs.add(150)
    rollup(logs.data_dir, compact_min_files=100)
    many = len(_files(logs.events))
    assert many > 12 * 3
    with monkeypatch.context() as patch:
        crash_on_call(patch, jobs.manifest, "rename", 3)  # three partitions' merged files out
        with pytest.raises(Crash):
            rollup(logs.data_dir, compact_min_files=2)
    report = rollup(logs.data_dir, compact_min_files=2)  # finishes the compaction
    assert report.segments == 0
    assert len(_files(logs.events)) == len(logs.truth)  # one file per partition
    assert counts(logs.events) == logs.truth


def _copy_segment(logs: Logs, first: int, last: int) -> None:
    """A segment holding ids ``first..last`` of shard 0 that other segments hold too."""
    tables = [pa.ipc.open_file(path).read_all() for path in logs.segments()]
    table = pa.concat_tables(tables)
    ids = table["event_id"]
    table = table.filter(pc.and_(pc.greater_equal(ids, first), pc.less_equal(ids, last)))
    unique = table.to_pandas().drop_duplicates("event_id")  # earlier copies held some too
    table = pa.Table.from_pandas(unique, schema=table.schema, preserve_index=False)
    path = logs.data_dir / "log" / "shard-0" / f"{first:014d}-{last:014d}.arrow"
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def test_rows_held_by_two_segments_are_counted_once(ray_session: None, logs: Logs) -> None:
    _copy_segment(logs, 1, 300)  # in the same run as the segments that also hold them
    report = rollup(logs.data_dir)
    assert (report.rows, report.duplicates) == (1500, 300)
    assert counts(logs.events) == logs.truth
    _copy_segment(logs, 100, 200)  # against what an earlier run counted
    report = rollup(logs.data_dir)
    assert (report.segments, report.rows, report.rows_written) == (1, 101, 0)
    assert counts(logs.events) == logs.truth


def _segment(logs: Logs, first: int, last: int) -> Path:
    return logs.data_dir / "log" / "shard-0" / f"{first:014d}-{last:014d}.arrow"


def _write_segment(path: Path, table: pa.Table) -> None:
    temp = path.with_name(path.name + ".tmp")
    with pa.ipc.new_file(temp, table.schema) as writer:
        writer.write_table(table)
    os.replace(temp, path)


def test_a_segment_holding_less_than_its_name_says_marks_only_the_ids_it_held(
    ray_session: None, logs: Logs
) -> None:
    # "151-300" holds only 151..200 (cut short, or replaced between listing and reading).
    path = _segment(logs, 151, 300)
    table = pa.ipc.open_file(path).read_all()
    ids = table["event_id"]
    _write_segment(path, table.filter(pc.less_equal(ids, 200)))
    rollup(logs.data_dir)
    assert Manifest.load(logs.data_dir / "analytics" / MANIFEST).rolled[0] == [(1, 200), (301, 600)]
    _write_segment(_segment(logs, 201, 300), table.filter(pc.greater(ids, 200)))  # shipped again
    report = rollup(logs.data_dir)
    assert (report.segments, report.rows_written) == (1, 100)
    assert counts(logs.events) == logs.truth


def test_ids_left_to_an_unreadable_segment_are_rolled_from_another_that_holds_them(
    ray_session: None, logs: Logs
) -> None:
    _copy_segment(logs, 1, 300)  # planned before 151-300, which it covers
    copy = _segment(logs, 1, 300)
    copy.write_bytes(copy.read_bytes()[:200])  # and unreadable
    report = rollup(logs.data_dir)
    assert report.unreadable == ["shard-0/00000000000001-00000000000300.arrow"]
    assert counts(logs.events) == logs.truth
    manifest = Manifest.load(logs.data_dir / "analytics" / MANIFEST)
    assert manifest.rolled[0] == [(1, 600)] and copy.name not in str(manifest.segments)


def test_retention_deletes_old_rolled_up_segments_only(ray_session: None, logs: Logs) -> None:
    bad = logs.data_dir / "log" / "shard-7" / "00000000000001-00000000000010.arrow"
    bad.parent.mkdir()
    bad.write_bytes(b"not arrow")  # old, never rolled up: must stay
    rollup(logs.data_dir)
    old = time.time() - 8 * 86400
    for path in [*logs.segments(0), bad]:
        os.utime(path, (old, old))
    report = rollup(logs.data_dir, retention_days=7)
    assert report.segments_deleted == 4
    assert report.unreadable == ["shard-7/00000000000001-00000000000010.arrow"]
    assert logs.segments(0) == [] and len(logs.segments(1)) == 4 and bad.exists()
    manifest = Manifest.load(logs.data_dir / "analytics" / MANIFEST)
    assert all(key.startswith("shard-1/") for key in manifest.segments)
    assert counts(logs.events) == logs.truth  # the Parquet keeps everything
    assert rollup(logs.data_dir, retention_days=7).rows == 0


def test_the_scheduler_runs_periodically_and_stops_promptly(ray_session: None, logs: Logs) -> None:
    scheduler = RollupScheduler(logs.data_dir, every_seconds=0.2, retention_days=7).start()
    deadline = time.monotonic() + 60
    while scheduler.last_report is None and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 5
    assert counts(logs.events) == logs.truth
    assert RollupScheduler(logs.data_dir, 0, 7).start()._thread is None  # 0: off


def test_the_scheduler_interrupts_a_run_on_stop(tmp_path: Path) -> None:
    entered = threading.Event()

    def slow(data_dir: Path, retention_days: float, cancel: threading.Event) -> Any:
        entered.set()
        cancel.wait()
        raise RollupCancelled("stopped")

    scheduler = RollupScheduler(tmp_path, 0.01, 7, job=slow).start()
    assert entered.wait(10)
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 1 and scheduler._thread is not None
    assert not scheduler._thread.is_alive()


def test_herald_rollup_and_the_module_entrypoint(
    ray_session: None, logs: Logs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.rollup import main as module_main
    from launcher.cli import main as cli_main

    monkeypatch.chdir(logs.data_dir)  # no herald.toml here
    monkeypatch.setenv("HERALD_DATA_DIR", str(logs.data_dir))
    assert cli_main(["rollup"]) == 0
    assert "rollup: 8 segments, 1200 rows" in capsys.readouterr().out
    logs.add(10)
    assert module_main(["--data-dir", str(logs.data_dir)]) == 0
    assert "rollup: 2 segments, 20 rows" in capsys.readouterr().out
    assert counts(logs.events) == logs.truth


# ---- through `ray job submit`, against a head node of its own ---------------------------------

def _session_pids(session: int) -> list[int]:
    """Every process in ``session`` (the `ray start` we launched and all it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session:  # state ppid pgrp session …
                pids.append(int(entry.name))
    return pids


def _stop_head(session: int) -> None:
    """Stop only our head: `ray stop` would stop every Ray on the machine (the session's too)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in _session_pids(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _session_pids(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_pids(session):
            return


def _agent_log(temp_dir: str) -> str:
    logs = sorted(Path(temp_dir).glob("session_*/logs/dashboard_agent*.log"))
    return "".join(f"\n--- {path}\n" + path.read_text()[-3000:] for path in logs)


def test_rollup_through_ray_job_submit(logs: Logs, tmp_path: Path) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    port, dashboard = free_port(), free_port()
    # Every port a head listens on, chosen free: the defaults (agent 52365, client server
    # 10001…) may belong to another Ray on this machine, and then the job agent never comes up.
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port",
        "object-manager-port")]
    temp_dir = f"/tmp/ray-rollup-{os.getpid()}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",  # a loopback-only head of the test's own
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    head_log = tmp_path / "ray-start.log"
    with open(head_log, "w") as out:  # a file, not a pipe: Ray's daemons inherit it and live on
        head = subprocess.Popen(
            [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
             "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1",
             "--include-dashboard=true", "--num-cpus=1", "--disable-usage-stats",
             f"--temp-dir={temp_dir}", *ports],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    session = head.pid  # start_new_session: the head's daemons and workers share this session
    try:
        assert head.wait(timeout=180) == 0, head_log.read_text()
        excludes = '{"excludes": [".venv", ".git", ".herald", "**/__pycache__", ".mypy_cache", ' \
                   '".ruff_cache", ".hypothesis", ".pytest_cache"]}'
        deadline = time.monotonic() + 90
        while True:  # `ray start` returns before the head's job agent takes submissions
            job = subprocess.run(
                [ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}",
                 "--working-dir", str(ROOT), "--runtime-env-json", excludes, "--",
                 sys.executable, "-m", "jobs.rollup", "--data-dir", str(logs.data_dir)],
                env=env, capture_output=True, text=True, timeout=300, check=False)
            output = job.stdout + job.stderr
            if "No available agent" not in output or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job.returncode == 0 and "succeeded" in output, output + _agent_log(temp_dir)
        assert "rollup: 8 segments, 1200 rows" in output, output
    finally:
        _stop_head(session)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert counts(logs.events) == logs.truth
