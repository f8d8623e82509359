"""The rollup job: delivery-log segments → deduplicated Parquet by day and channel, idempotently.

One function, ``rollup()``, run three ways: ``python -m jobs.rollup --data-dir DIR`` (the
entrypoint of ``ray job submit --working-dir . -- python -m jobs.rollup …``), ``herald rollup``,
and every ``HERALD_ROLLUP_SECONDS`` inside ``herald up`` (``RollupScheduler``). Runs of one data
directory take turns (a lock file). A run:

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from herald.config import Settings, load_settings
from jobs.local_ray import RayUnreachable, answers, is_loopback, join_locally, recorded_address
from jobs.manifest import Manifest, Range, merge, settle, subtract
from jobs.segments import Segment, Staged, compact_files, list_segments, roll_segments

log = logging.getLogger("herald.rollup")

MANIFEST = "rollup-manifest.json"
EVENTS = "events"
STAGING = ".staging"
LOCK = ".rollup.lock"
#: Segment bytes one task reads at most (zstd on disk: about 5x that in memory).
MAX_TASK_BYTES = 256 << 20
#: A partition with this many files under SMALL_FILE_BYTES has them merged into one.
COMPACT_MIN_FILES = 8
SMALL_FILE_BYTES = 64 << 20
#: Rounds of one run: the second rolls what an unreadable segment held back; more is rare.
MAX_ROUNDS = 3

_roll = ray.remote(num_cpus=1, max_retries=2)(roll_segments)
_compact = ray.remote(num_cpus=1, max_retries=2)(compact_files)


class RollupCancelled(Exception):
    """The run was asked to stop (shutdown); nothing it did is half-visible."""


@dataclass
class RollupReport:
    segments: int = 0
    rows: int = 0
    rows_written: int = 0
    #: Rows whose (shard, event_id) was already counted.
    duplicates: int = 0
    files_written: int = 0
    #: Small files merged away by compaction.
    files_compacted: int = 0
    segments_deleted: int = 0
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        line = (f"rollup: {self.segments} segments, {self.rows} rows ({self.duplicates} already "
                f"counted), {self.files_written} files written, {self.files_compacted} small "
                f"files compacted, {self.segments_deleted} old segments deleted, "
                f"{self.seconds:.2f} s")
        if self.unreadable:
            line += f"; unreadable, left for the next run: {', '.join(self.unreadable)}"
        return line


def rollup(data_dir: Path | str, *, retention_days: float = 7.0, now: float | None = None,
           compact_min_files: int = COMPACT_MIN_FILES, small_file_bytes: int = SMALL_FILE_BYTES,
           max_task_bytes: int = MAX_TASK_BYTES,
           cancel: threading.Event | None = None) -> RollupReport:
    """Roll the new closed segments under ``data_dir/log`` into ``data_dir/analytics/events``.

    Needs Ray (``connect()`` or ``ray.init()`` first). Raises RollupCancelled when ``cancel``
    is set while tasks run.
    """
    if not ray.is_initialized():
        raise RuntimeError("rollup() runs on Ray: call jobs.rollup.connect() or ray.init() first")
    started = time.monotonic()
    now = time.time() if now is None else now
    data_dir = Path(data_dir)
    root = data_dir / "analytics"
    root.mkdir(parents=True, exist_ok=True)
    report = RollupReport()
    with _locked(root / LOCK):
        manifest = Manifest.load(root / MANIFEST)
        manifest.finish()  # a crashed run's committed step
        shutil.rmtree(root / STAGING, ignore_errors=True)  # and what it had not committed
        _roll_new(manifest, data_dir / "log", report, now, max_task_bytes, cancel)
        if cancel is None or not cancel.is_set():
            _compact_small(manifest, report, compact_min_files, small_file_bytes, cancel)
        report.segments_deleted = _expire(manifest, data_dir / "log", now - retention_days * 86400)
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


def _roll_new(manifest: Manifest, log_dir: Path, report: RollupReport, now: float,
              max_task_bytes: int, cancel: threading.Event | None) -> None:
    """Roll the segments the manifest does not hold, in rounds: a segment left undone because
    ids it left to an unreadable one were not counted is planned again without that one."""
    unreadable: set[str] = set()
    pending = [s for s in list_segments(log_dir) if s.key not in manifest.segments]
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
    manifest.publish = [(path, _final_name(path)) for staged in results for path, _ in staged.files]
    manifest.save()  # the commit point
    report.files_written += manifest.finish()[0]
    report.segments += len(done)
    report.rows += sum(staged.rows_read for staged in results)
    report.rows_written += sum(staged.rows_kept for staged in results)
    return set(done), {key for staged in results for key in staged.unreadable}


def _final_name(staged: str) -> str:
    """``.staging/<run>/<task>/dt=…/channel=…/part-….parquet`` → ``events/dt=…/channel=…/part-<uuid>…``."""
    day, channel = Path(staged).parts[-3:-1]
    return str(Path(EVENTS, day, channel, f"part-{uuid.uuid4().hex}.parquet"))


def _compact_small(manifest: Manifest, report: RollupReport, min_files: int, small_bytes: int,
                   cancel: threading.Event | None) -> None:
    root = manifest.root
    merges: list[tuple[list[Path], Path, Path]] = []
    staging = root / STAGING / uuid.uuid4().hex
    for partition in sorted((root / EVENTS).glob("dt=*/channel=*")):
        small = sorted(p for p in partition.glob("part-*.parquet") if p.stat().st_size < small_bytes)
        if len(small) >= min_files:
            merges.append((small, staging / f"{len(merges)}.parquet",
                           partition / f"part-{uuid.uuid4().hex}.parquet"))
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


def _expire(manifest: Manifest, log_dir: Path, cutoff: float) -> int:
    """Delete rolled-up segments closed before ``cutoff``; forget the ones already gone."""
    deleted, changed = 0, False
    for key in list(manifest.segments):
        path = log_dir / key
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


def run(data_dir: Path, address: str | None, retention_days: float) -> RollupReport:
    """Connect, roll up, disconnect: what ``python -m jobs.rollup`` and ``herald rollup`` do."""
    ours = connect(address, data_dir)
    try:
        return rollup(data_dir, retention_days=retention_days)
    finally:
        if ours:
            ray.shutdown()


# ---- periodic, inside ``herald up`` -------------------------------------------------------------

class RollupScheduler:
    """Runs the rollup every ``every_seconds`` in a thread of the driver; 0 means never."""

    def __init__(self, data_dir: Path, every_seconds: float, retention_days: float,
                 job: Callable[..., RollupReport] = rollup) -> None:
        self.data_dir, self.every_seconds, self.retention_days = data_dir, every_seconds, retention_days
        self.last_report: RollupReport | None = None
        self._job = job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RollupScheduler:
        return cls(settings.data_dir, settings.rollup_seconds, settings.retention_days)

    def start(self) -> RollupScheduler:
        if self.every_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="herald-rollup", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: a run in progress gives up at its next step (its files are staged only)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.last_report = self._job(self.data_dir, retention_days=self.retention_days,
                                             cancel=self._stop)
                log.info("%s", self.last_report.summary())
            except RollupCancelled:
                return
            except Exception:  # the next period tries again; herald up stays up
                log.exception("rollup failed; trying again in %.0f s", self.every_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.rollup",
        description="Roll Herald's delivery-log segments into Parquet (dt=…/channel=…).")
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
        report = run(args.data_dir or settings.data_dir, args.address, retention)
    except RayUnreachable as exc:
        print(f"rollup: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
