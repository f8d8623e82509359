"""The rollup job: delivery-log segments → deduplicated Parquet by day and channel, idempotently.

One function, ``rollup()``, run three ways: ``python -m jobs.rollup --data-dir DIR`` (the
entrypoint of ``ray job submit --working-dir . -- python -m jobs.rollup …``), ``herald rollup``,
and every ``HERALD_ROLLUP_SECONDS`` inside ``herald up`` (``RollupScheduler``); with
``HERALD_DATABASE_URL`` the three run ``jobs.database_rollup`` instead (no segments, no Ray).
Runs of one data directory take turns (a lock file). A run:

1. finishes what a crashed run committed (the manifest's pending renames and deletions) and
   deletes what it had not committed (everything in ``analytics/.staging/``);
2. lists the closed segments ``log/shard-<n>/<first>-<last>.arrow`` the manifest does not hold
   and decides from the id ranges in their names, against the ranges already rolled, which
   event ids of each to keep, so a (shard, event_id) is counted once even if two segments held
   it. No data is read for this, and no shuffle is needed afterwards;
3. runs Ray tasks, a handful of segments each, pinned to this node (the files are local), that
   read the segments, keep those ids, and write Parquet partitions ``dt=YYYY-MM-DD/channel=…``
   (UTC day) into ``analytics/.staging/`` and fsync them; each task says which ids it found;
4. commits: one atomic manifest write records the ids found and kept (exactly those, never a
   name's promise: ``jobs.manifest.settle``), the segments whose every id is now counted, and
   the renames staging → ``analytics/events/dt=…/channel=…/part-<uuid>.parquet``; then it
   renames. A segment that left ids to one that proved unreadable is rolled again in a second
   round without it;
5. compacts: a partition with many small files has them rewritten as one file, by the same
   staging → manifest → rename-then-delete protocol;
6. deletes rolled-up segments older than ``retention_days`` (by file mtime: when the shard
   closed them).

Why "stage, commit the manifest with the renames to do, rename" rather than "write in place and
record the file names": the manifest write is the only commit point, and everything on either
side of it can be redone. A crash before it leaves only staging files, deleted by the next run,
which rolls the same segments again; a crash after it leaves renames the next run finishes
before anything else (roll forward), so a segment is never counted twice nor lost. Readers only
look in ``events/``, where a file appears whole (rename is atomic). The one window readers can
see is inside a compaction, between publishing the merged file and deleting the small ones
(milliseconds, or until the next run if the process dies right there): rows are then counted
twice by a reader, never lost, and never twice in what the next run leaves.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import math
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from herald.analytics_store import AnalyticsStore, final_name
from herald.config import load_settings
from herald.data_dir import EVENTS, MANIFEST, PARQUET_SUFFIX, ROLLUP_LOCK_FILE, STAGING, DataDir, part_name
from herald.errors import ConfigError
from jobs.database_rollup import DatabaseUnreachable, rollup_database
from jobs.local_ray import RayUnreachable, answers, is_loopback, join_locally, recorded_address
from jobs.manifest import Manifest, Range, merge, settle, subtract
from jobs.run_report import RollupCancelled, RollupReport
from jobs.segments import (
    COMPACT_MIN_FILES,
    SMALL_FILE_BYTES,
    Segment,
    Staged,
    compact_files,
    list_segments,
    roll_segments,
    small_file_groups,
)

log = logging.getLogger("herald.rollup")

#: Segment bytes one task reads at most (zstd on disk: about 5x that in memory).
MAX_TASK_BYTES = 256 << 20
#: Rounds of one run: the second rolls what an unreadable segment held back; more is rare.
MAX_ROUNDS = 3

_roll = ray.remote(num_cpus=1, max_retries=2)(roll_segments)
_compact = ray.remote(num_cpus=1, max_retries=2)(compact_files)


def rollup(data_dir: Path | str, *, retention_days: float = 7.0, now: float | None = None,
           compact_min_files: int = COMPACT_MIN_FILES, small_file_bytes: int = SMALL_FILE_BYTES,
           max_task_bytes: int = MAX_TASK_BYTES, cancel: threading.Event | None = None,
           analytics_dir: Path | None = None) -> RollupReport:
    """Roll the new closed segments under ``data_dir/log`` into ``analytics_dir/events``
    (default ``data_dir/analytics``).

    Needs Ray (``connect()`` or ``ray.init()`` first). Raises RollupCancelled when ``cancel``
    is set while tasks run.
    """
    if not ray.is_initialized():
        raise RuntimeError("rollup() runs on Ray: call jobs.rollup.connect() or ray.init() first")
    started = time.monotonic()
    now = time.time() if now is None else now
    layout = DataDir(Path(data_dir))
    root = analytics_dir or layout.analytics
    root.mkdir(parents=True, exist_ok=True)
    report = RollupReport()
    with _locked(root / ROLLUP_LOCK_FILE):
        manifest = Manifest.load(root / MANIFEST)
        manifest.finish()  # a crashed run's committed step
        shutil.rmtree(root / STAGING, ignore_errors=True)  # and what it had not committed
        _roll_new(manifest, layout, report, now, max_task_bytes, cancel)
        if cancel is None or not cancel.is_set():
            _compact_small(manifest, report, compact_min_files, small_file_bytes, cancel)
        report.segments_deleted = _expire(manifest, layout, now - retention_days * 86400)
        shutil.rmtree(root / STAGING, ignore_errors=True)  # only empty directories by now
    report.seconds = time.monotonic() - started
    return report


def _plan(new: Sequence[Segment], rolled: dict[int, list[Range]]) -> list[Segment]:
    """Each segment with the ids to keep: not rolled before, not in an earlier new segment."""
    covered = {shard: list(ranges) for shard, ranges in rolled.items()}
    planned = []
    for segment in new:
        have = covered.get(segment.shard, [])
        planned.append(replace(segment, keep=tuple(subtract(have, segment.first, segment.last))))
        covered[segment.shard] = merge(have, [(segment.first, segment.last)])
    return planned


def _groups(segments: Sequence[Segment], cpus: int, max_bytes: int) -> list[list[Segment]]:
    """Consecutive segments in about equal byte shares: two tasks a CPU, none over max_bytes."""
    total = sum(s.size for s in segments)
    count = max(min(len(segments), 2 * cpus), math.ceil(total / max_bytes))
    target = total / count
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    size = 0
    for segment in segments:
        current.append(segment)
        size += segment.size
        if size >= target and len(groups) < count - 1:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _roll_new(manifest: Manifest, layout: DataDir, report: RollupReport, now: float,
              max_task_bytes: int, cancel: threading.Event | None) -> None:
    """Roll the segments the manifest does not hold, in rounds: a segment left undone because
    ids it left to an unreadable one were not counted is planned again without that one."""
    unreadable: set[str] = set()
    pending = [s for s in list_segments(layout) if s.key not in manifest.segments]
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        done, failed = _roll_round(manifest, pending, report, now, max_task_bytes, cancel)
        unreadable |= failed
        pending = [s for s in pending if s.key not in done and s.key not in unreadable]
    report.duplicates = report.rows - report.rows_written
    report.unreadable = sorted(unreadable)
    for key in report.unreadable:
        log.error("rollup: segment %s is unreadable; it stays for the next run", key)


def _roll_round(manifest: Manifest, new: Sequence[Segment], report: RollupReport, now: float,
                max_task_bytes: int, cancel: threading.Event | None) -> tuple[set[str], set[str]]:
    """Roll ``new`` once and commit what was read; (keys done, keys unreadable)."""
    planned = _plan(new, manifest.rolled)
    staging = manifest.root / STAGING / uuid.uuid4().hex
    refs = [_roll.options(scheduling_strategy=_this_node()).remote(
                group, str(staging / str(i)), str(manifest.root))
            for i, group in enumerate(_groups(planned, _node_cpus(), max_task_bytes))]
    results: list[Staged] = _gather(refs, cancel)
    found = {key: ranges for staged in results for key, ranges in staged.found.items()}
    done, counted = settle(planned, found, manifest.rolled)
    manifest.record(done, counted, now)
    manifest.publish = [(path, final_name(path)) for staged in results for path, _ in staged.files]
    manifest.save()  # the commit point
    report.files_written += manifest.finish()[0]
    report.segments += len(done)
    report.rows += sum(staged.rows_read for staged in results)
    report.rows_written += sum(staged.rows_kept for staged in results)
    return set(done), {key for staged in results for key in staged.unreadable}


def _compact_small(manifest: Manifest, report: RollupReport, min_files: int, small_bytes: int,
                   cancel: threading.Event | None) -> None:
    root = manifest.root
    merges: list[tuple[list[Path], Path, Path]] = []
    staging = root / STAGING / uuid.uuid4().hex
    for group in small_file_groups(str(root / EVENTS), min_files, small_bytes):
        small = [Path(path) for path in group]
        merges.append((small, staging / f"{len(merges)}{PARQUET_SUFFIX}",
                       small[0].parent / part_name()))
    if not merges:
        return
    _gather([_compact.options(scheduling_strategy=_this_node()).remote(
                [str(p) for p in files], str(staged)) for files, staged, _ in merges], cancel)
    manifest.publish = [(str(staged.relative_to(root)), str(final.relative_to(root)))
                        for _, staged, final in merges]
    manifest.remove = [str(p.relative_to(root)) for files, _, _ in merges for p in files]
    manifest.save()  # the commit point of the compaction
    published, removed = manifest.finish()
    report.files_written += published
    report.files_compacted += removed


def _expire(manifest: Manifest, layout: DataDir, cutoff: float) -> int:
    """Delete rolled-up segments closed before ``cutoff``; forget the ones already gone."""
    deleted, changed = 0, False
    for key in list(manifest.segments):
        path = layout.segment(key)
        try:
            expired = path.stat().st_mtime <= cutoff
        except FileNotFoundError:
            expired = True
        if expired:
            if path.exists():
                path.unlink()
                deleted += 1
            del manifest.segments[key]  # its ids stay in ``rolled``: never counted again
            changed = True
    if changed:
        manifest.save()
    return deleted


# ---- Ray plumbing ---------------------------------------------------------------------------

def _this_node() -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _node_cpus() -> int:
    node = ray.get_runtime_context().get_node_id()
    for info in ray.nodes():
        if info["NodeID"] == node:
            return max(1, int(info["Resources"].get("CPU", 1)))
    return 1


def _gather(refs: list[Any], cancel: threading.Event | None) -> list[Any]:
    """``ray.get`` that gives up (cancelling the tasks) as soon as ``cancel`` is set."""
    pending = list(refs)
    while pending:
        if cancel is not None and cancel.is_set():
            for ref in pending:
                ray.cancel(ref)
            raise RollupCancelled("rollup cancelled")
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
    return list(ray.get(refs))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One rollup of a data directory at a time (``herald up``'s and a manual one)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect(address: str | None = None, data_dir: Path | None = None) -> bool:
    """Join Ray at ``address``. None: the Ray of the `herald up` recorded in ``data_dir``
    (``jobs.local_ray``), else the Ray that Ray's own rules name (``RAY_ADDRESS``, as inside
    ``ray job submit``; a ``ray start`` of this box), else a local Ray of our own.

    Raises RayUnreachable (a one-line message) at once when the Ray named does not answer.
    Returns True when this call connected (the caller then calls ``ray.shutdown()``).
    """
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "namespace": "herald"}
    if address is None and data_dir is not None:
        address = recorded_address(data_dir)
    if address is None:
        ray.init(include_dashboard=False, **quiet)
        return True
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in host:  # a GCS address, not auto or ray://
        if not answers(host.strip("[]"), int(port)):
            raise RayUnreachable(f"no Ray answers at {address}")
        if is_loopback(address):  # else Ray would call it at the machine's network address
            join_locally()
    ray.init(address=address, **quiet)
    return True


def run(data_dir: Path, address: str | None, retention_days: float, *,
        database_url: str | None = None, analytics_uri: str | None = None) -> RollupReport:
    """What ``python -m jobs.rollup`` and ``herald rollup`` do: with ``database_url``, roll the
    database's events (no Ray); else connect to Ray, roll the segments, disconnect.

    Raises ConfigError (one line) for a destination the segments' rollup cannot write to.
    """
    if database_url is not None:
        return rollup_database(database_url, AnalyticsStore.locate(data_dir, analytics_uri))
    analytics_dir = segments_destination(data_dir, analytics_uri)
    ours = connect(address, data_dir)
    try:
        return rollup(data_dir, retention_days=retention_days, analytics_dir=analytics_dir)
    finally:
        if ours:
            ray.shutdown()


def segments_destination(data_dir: Path, analytics_uri: str | None) -> Path:
    """Where the segments' rollup writes: a directory of this machine (its manifest is a file
    renamed in place, and Ray tasks pinned here write the staging)."""
    if analytics_uri and "://" in analytics_uri and not analytics_uri.startswith("file://"):
        raise ConfigError("HERALD_ANALYTICS_URI: without HERALD_DATABASE_URL the rollup reads "
                          "this machine's log segments and writes to a directory or a file:// "
                          "URI; an object store needs the database's rollup")
    local = AnalyticsStore.locate(data_dir, analytics_uri).local_dir
    assert local is not None
    return local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.rollup",
        description="Roll Herald's delivery log (its segments, or with HERALD_DATABASE_URL the "
                    "database's events) into Parquet (dt=…/channel=…) under DATA_DIR/analytics "
                    "or HERALD_ANALYTICS_URI.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Herald's data directory (default: HERALD_DATA_DIR, else ./.herald)")
    parser.add_argument("--address", default=None,
                        help="Ray to run on: HOST:PORT, auto, local, ray://… (default: the Ray "
                             "of the herald up of the data dir, else RAY_ADDRESS or a `ray start` "
                             "of this box, else a local Ray)")
    parser.add_argument("--retention-days", type=float, default=None,
                        help="delete rolled-up segments older than this (default: "
                             "HERALD_RETENTION_DAYS, else 7)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except (ValueError, OSError) as exc:
        print(f"rollup: configuration error: {exc}", file=sys.stderr)
        return 2
    retention = settings.retention_days if args.retention_days is None else args.retention_days
    try:
        report = run(args.data_dir or settings.data_dir, args.address, retention,
                     database_url=settings.database_url, analytics_uri=settings.analytics_uri)
    except ConfigError as exc:
        print(f"rollup: configuration error: {exc}", file=sys.stderr)
        return 2
    except (RayUnreachable, DatabaseUnreachable) as exc:
        print(f"rollup: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
