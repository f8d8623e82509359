"""The work of one rollup task: read log segments, keep each event once, write Parquet by day/channel.

Plain functions (no Ray here): ``jobs.rollup`` runs them as Ray tasks, tests call them directly.
Everything they write goes to a staging directory and is fsynced before they return, because the
rollup's manifest will promise those files exist the moment it records them. The Parquet
writing (``write_partitions``, ``compact_files``, ``small_file_groups``) also serves the
database's rollup (``jobs.database_rollup``), on any ``pyarrow.fs`` filesystem.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from herald.analytics_store import partitioning
from herald.data_dir import DAY, DataDir, is_part_path, part_template
from herald.log_schema import SCHEMA

#: Hive layout of the Parquet: ``dt=YYYY-MM-DD/channel=<email|sms|fax|browser>/``. ``dt`` is the
#: UTC day of ``at``; both columns live in the path, not in the files (the hive convention).
PARTITIONING = partitioning(pa.date32())
#: Same codec DuckDB and pandas use by default: fast to write, read everywhere.
COMPRESSION = "snappy"
ROW_GROUP = 1 << 20
#: A partition with this many files under SMALL_FILE_BYTES has them merged into one.
COMPACT_MIN_FILES = 8
SMALL_FILE_BYTES = 64 << 20
#: Dictionary-encode the repetitive columns only: on ``tag`` and the near-unique numbers the
#: writer pays for a dictionary, then falls back to plain (measured: ~20% faster, 10% smaller).
DICTIONARY = [f.name for f in SCHEMA if f.name not in {"tag", "event_id", "at", "latency_ms"}]

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Segment:
    """A closed segment and the event ids to keep from it (the rest were counted before)."""

    shard: int
    path: str
    #: ``shard-<n>/<name>``: the segment's key in the manifest.
    key: str
    first: int
    last: int
    size: int
    keep: tuple[Range, ...] = ()


@dataclass
class Staged:
    """What one task wrote: Parquet files (path relative to the analytics dir, rows) and counts."""

    files: list[tuple[str, int]] = field(default_factory=list)
    rows_read: int = 0
    rows_kept: int = 0
    #: Keys of segments that could not be read; left out of the manifest, tried next run.
    unreadable: list[str] = field(default_factory=list)
    #: Per segment read, the event ids its file held within its name's range, as sorted,
    #: disjoint ranges: what the run may record, whatever the name promised.
    found: dict[str, list[Range]] = field(default_factory=dict)


def list_segments(data_dir: DataDir) -> list[Segment]:
    """Every closed segment of every shard in ``data_dir``, by shard then first id."""
    found = [Segment(s.shard, str(s.path), s.key, s.first, s.last, s.path.stat().st_size)
             for s in data_dir.closed_segments()]
    return sorted(found, key=lambda s: (s.shard, s.first, s.last))


def fsync_path(path: Path | str) -> None:
    """fsync a file, or a directory (so the names in it survive a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_segment(path: str) -> pa.Table:
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def id_ranges(ids: pa.ChunkedArray | pa.Array, first: int, last: int) -> list[Range]:
    """The distinct ids of ``ids`` within ``[first, last]`` as sorted, disjoint ranges."""
    values = np.unique(np.asarray(pc.filter(ids, pc.and_(pc.greater_equal(ids, first),
                                                         pc.less_equal(ids, last)))))
    if not len(values):
        return []
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.concatenate(([values[0]], values[breaks + 1]))
    ends = np.concatenate((values[breaks], [values[-1]]))
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _kept(table: pa.Table, segment: Segment) -> pa.Table:
    """Only the rows whose event id is in ``segment.keep``; vectorised, one mask per range."""
    ids = table["event_id"]
    if segment.keep == ((segment.first, segment.last),) and len(table):
        bounds = pc.min_max(ids).as_py()
        if bounds["min"] >= segment.first and bounds["max"] <= segment.last:
            return table  # the usual case: nothing in it was counted before
    mask = None
    for low, high in segment.keep:
        inside = pc.and_(pc.greater_equal(ids, low), pc.less_equal(ids, high))
        mask = inside if mask is None else pc.or_(mask, inside)
    return table.filter(mask) if mask is not None else table.slice(0, 0)


def _fsync_written(paths: Iterable[str]) -> None:
    names = list(paths)
    for name in names:
        fsync_path(name)
    for directory in {os.path.dirname(name) for name in names}:
        fsync_path(directory)


def roll_segments(segments: Sequence[Segment], staging: str, root: str) -> Staged:
    """Read ``segments``, keep their ``keep`` ids, write Parquet partitions under ``staging``."""
    staged = Staged()
    tables = []
    for segment in segments:
        try:
            table = _read_segment(segment.path)
        except (OSError, pa.ArrowInvalid):
            staged.unreadable.append(segment.key)
            continue
        staged.rows_read += table.num_rows
        staged.found[segment.key] = id_ranges(table["event_id"], segment.first, segment.last)
        tables.append(_kept(table, segment))
    table = pa.concat_tables(tables, promote_options="default") if tables else None
    if table is None or table.num_rows == 0:
        return staged
    staged.rows_kept = table.num_rows
    written = write_partitions(table, staging)
    staged.files = [(os.path.relpath(path, root), rows) for path, rows in written]
    return staged


def write_partitions(table: pa.Table, staging: str,
                     filesystem: pafs.FileSystem | None = None) -> list[tuple[str, int]]:
    """Write ``table`` (``SCHEMA``) as Parquet partitions ``dt=…/channel=…/`` under ``staging``
    (the UTC day of ``at``); (path, rows) of each file, durable when this returns."""
    table = table.append_column(DAY, pc.cast(table["at"], pa.date32()))
    written: list[tuple[str, int]] = []
    ds.write_dataset(
        table, staging, format="parquet", partitioning=PARTITIONING, filesystem=filesystem,
        basename_template=part_template(),
        file_options=ds.ParquetFileFormat().make_write_options(compression=COMPRESSION,
                                                               use_dictionary=DICTIONARY),
        max_rows_per_group=ROW_GROUP, existing_data_behavior="overwrite_or_ignore",
        file_visitor=lambda file: written.append((file.path, file.metadata.num_rows)),
    )
    if _local(filesystem):  # an object store's upload is durable once it is closed
        _fsync_written(path for path, _ in written)
    return written


def compact_files(paths: Sequence[str], target: str,
                  filesystem: pafs.FileSystem | None = None) -> int:
    """Rewrite the Parquet files ``paths`` (one partition) as the one file ``target``; its rows."""
    # ParquetFile, not read_table: the files must not gain partition columns from their path.
    table = pa.concat_tables([pq.ParquetFile(path, filesystem=filesystem).read() for path in paths],
                             promote_options="default")
    (filesystem or pafs.LocalFileSystem()).create_dir(posixpath.dirname(target), recursive=True)
    pq.write_table(table, target, compression=COMPRESSION, row_group_size=ROW_GROUP,
                   use_dictionary=DICTIONARY, filesystem=filesystem)
    if _local(filesystem):
        _fsync_written([target])
    return int(table.num_rows)


def small_file_groups(events: str, min_files: int, small_bytes: int,
                      filesystem: pafs.FileSystem | None = None) -> list[list[str]]:
    """Per partition ``dt=…/channel=…`` under ``events`` holding ``min_files`` or more files
    smaller than ``small_bytes``: those files, sorted (what compaction merges into one)."""
    filesystem = filesystem or pafs.LocalFileSystem()
    found = filesystem.get_file_info(pafs.FileSelector(events, allow_not_found=True,
                                                       recursive=True))
    partitions: dict[str, list[str]] = {}
    for info in found:
        parts = posixpath.relpath(info.path, events).split("/")
        if info.type == pafs.FileType.File and is_part_path(parts) and info.size < small_bytes:
            partitions.setdefault(posixpath.dirname(info.path), []).append(info.path)
    return [sorted(files) for _, files in sorted(partitions.items()) if len(files) >= min_files]


def _local(filesystem: pafs.FileSystem | None) -> bool:
    return filesystem is None or isinstance(filesystem, pafs.LocalFileSystem)
