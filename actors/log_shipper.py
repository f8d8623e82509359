"""LogShipper: moves a shard's delivery-log events from its storage into Arrow IPC segment files.

The shard writes events into its storage in the same transaction as the state change (so none
is lost); the shipper, run from the shard's timer, copies them in batches into the shard's open
segment ``log/shard-<n>/<first id>.arrow.open`` and rotates it every ``rotate_seconds`` or at
``max_rows``: close the writer, fsync, rename to ``<first id>-<last id>.arrow``, fsync the
directory, and only then delete the events it holds from storage.

Crash safety follows from that order. An ``.open`` file left by a crash is deleted on start:
its events were never deleted from storage, so they are shipped again. A crash between the
rename and the delete leaves events in storage that a closed segment already holds; the ids in
the closed segments' names say which, so they are deleted on start instead of shipped twice.
The rollup (``jobs/``) reads closed segments only.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from herald.data_dir import OPEN_SEGMENT_SUFFIX, DataDir, open_segment_name, segment_name
from herald.delivery_log import LogEvent
from herald.log_rows import log_batch
from herald.log_schema import SCHEMA
from herald.storage import Storage

log = logging.getLogger("herald.log_shipper")

#: zstd makes segments ~5x smaller and, measured, costs less to write and read than LZ4.
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


def closed_through(data_dir: DataDir, shard: int) -> int:
    """The highest event id held by a closed segment of ``shard`` (0 if none)."""
    return max((segment.last for segment in data_dir.closed_segments(shard)), default=0)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogShipper:
    """Ships one shard's events; ``ship(now)`` from the shard's timer, ``close()`` on shutdown."""

    def __init__(self, storage: Storage, data_dir: DataDir, shard: int, rotate_seconds: float,
                 max_rows: int, *, read_batch: int = 8192, per_call: int = 50_000) -> None:
        self._storage = storage
        self._shard = shard
        self._dir = data_dir.log_dir(shard)
        self._rotate_seconds = rotate_seconds
        self._max_rows = max_rows
        self._read_batch = read_batch
        #: A cap on one ship() call, so a backlog (after a restart) does not stall the shard's
        #: event loop (50,000 events read from SQLite take ~0.7 s); the next tick goes on.
        self._per_call = per_call
        self._dir.mkdir(parents=True, exist_ok=True)
        for stale in self._dir.glob("*" + OPEN_SEGMENT_SUFFIX):
            log.info("shard %d: dropping unfinished log segment %s", shard, stale.name)
            stale.unlink()
        #: Everything up to here is in a closed segment; the open one continues after it.
        self._closed_through = closed_through(data_dir, shard)
        if self._closed_through:  # a crash may have come between a rename and its delete
            storage.delete_events(self._closed_through)
        self._shipped = self._closed_through
        self._file: BinaryIO | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._path: Path | None = None
        self._first = self._last = self._rows = 0
        self._opened_at = 0.0

    @property
    def shipped_through(self) -> int:
        """The last event id written to a segment (open or closed)."""
        return self._shipped

    @property
    def open_rows(self) -> int:
        return self._rows

    def ship(self, now: float) -> int:
        """Append the events not shipped yet to the open segment, rotating it when it is due.

        Returns how many events were shipped. A disk error is logged and the open segment
        dropped (its events are still in storage): the shard's timer must keep running.
        """
        shipped = 0
        try:
            while shipped < self._per_call:
                room = self._max_rows - self._rows
                rows = self._storage.read_events(self._shipped, min(self._read_batch, room))
                if not rows:
                    break
                self._append(rows, now)
                shipped += len(rows)
                if self._rows >= self._max_rows:
                    self._rotate()
            if self._rows and now - self._opened_at >= self._rotate_seconds:
                self._rotate()
        except (OSError, pa.ArrowException):
            log.exception("shard %d: writing the delivery log failed; will retry", self._shard)
            self._abandon()
            return 0
        return shipped

    def close(self, now: float | None = None) -> None:
        """Ship what is left and close the open segment (on shutdown)."""
        while self.ship(time.time() if now is None else now):  # past per_call: ship it all
            pass
        try:
            self._rotate()
        except (OSError, pa.ArrowException):
            log.exception("shard %d: closing the delivery log failed", self._shard)
            self._abandon()

    # -- one segment ----------------------------------------------------------------------
    def _append(self, rows: list[tuple[int, LogEvent]], now: float) -> None:
        ids = [event_id for event_id, _ in rows]
        batch = log_batch(self._shard, ids, [event for _, event in rows])
        if self._writer is None:
            self._open(ids[0], now)
        assert self._writer is not None
        self._writer.write_batch(batch)
        self._rows += len(ids)
        self._last = self._shipped = ids[-1]

    def _open(self, first: int, now: float) -> None:
        self._path = self._dir / open_segment_name(first)
        self._file = open(self._path, "wb")  # closed by _rotate or _abandon
        self._writer = pa.ipc.new_file(self._file, SCHEMA, options=_IPC_OPTIONS)
        self._first, self._rows, self._opened_at = first, 0, now

    def _rotate(self) -> None:
        """Close, fsync and rename the open segment; then its events may leave storage."""
        if self._writer is None or self._file is None or self._path is None:
            return
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._dir / segment_name(self._first, self._last)
        os.replace(self._path, final)
        _fsync_dir(self._dir)  # the rename itself must survive a power cut before the delete
        self._closed_through = self._last
        self._reset()
        self._storage.delete_events(self._closed_through)

    def _abandon(self) -> None:
        """Drop the open segment; its events are still in storage and are shipped again."""
        for step in (getattr(self._writer, "close", None), getattr(self._file, "close", None)):
            try:
                if step is not None:
                    step()
            except (OSError, ValueError, pa.ArrowException):  # ValueError: already closed
                pass
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._reset()
        self._shipped = self._closed_through

    def _reset(self) -> None:
        self._writer, self._file, self._path = None, None, None
        self._first = self._last = self._rows = 0
