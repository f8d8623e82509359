"""The rollup of a PostgreSQL deployment: ``herald_events`` → Parquet, then those events deleted.

With ``HERALD_DATABASE_URL`` every shard writes its delivery-log events into ``herald_events``
(in the transaction of the state change they describe) and no log shipper runs: there are no
segments and nothing on a node's disk. This rollup reads the events straight from the database,
needs no Ray, and writes the same Parquet as the segments' rollup (``jobs.segments``' writer,
``herald.log_schema``'s columns, ``dt=…/channel=…``) to a directory or a ``pyarrow.fs`` URI
(``herald.analytics_store``). A run:

1. takes the rollup lock, a PostgreSQL advisory lock: one run per database at a time, from
   whichever machine (``herald up``'s scheduler, ``herald rollup``, a ``ray job``);
2. finishes the file steps a crashed run committed (``jobs.file_steps``), then deletes
   everything left in ``.staging/`` (written, never committed);
3. reads the events of every shard in id order, ``batch_rows`` at a time, up to the highest id
   there was when it began (so a run ends under any load); writes each batch as Parquet into
   ``.staging/`` (durable); then commits, in one transaction, the deletion of exactly the ids
   of that batch with the renames staging → ``events/``; then renames;
4. compacts partitions with many small files, by the same stage → commit → rename protocol
   (a commit that deletes no event).

Crash anywhere: before a commit, the events are still in the table and the next run deletes
the staged files and rolls them again; after it, the events are gone and the renames are
recorded, and the next run finishes them before anything else. An event is in the Parquet once.

Ids that commit out of order: a BIGSERIAL id is taken when the row is inserted, so a
transaction holding a lower id may commit after a higher one was read. That is harmless here
because nothing is reasoned about ranges: a run deletes exactly the ids it read (never "every
id up to the highest rolled"), so a row that becomes visible later, whatever its id, stays in
the table and the next run reads it (paging by id within a run may pass it by, never lose it).
No watermark, hence no transaction-id column and no settle time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from herald.analytics_store import AnalyticsStore, final_name
from herald.data_dir import PARQUET_SUFFIX, STAGING, part_name
from herald.delivery_log import LogEvent
from herald.log_rows import log_batch
from herald.pg_schema import migrate
from jobs.file_steps import Step, commit, finish
from jobs.run_report import DATABASE, RollupCancelled, RollupReport
from jobs.segments import (
    COMPACT_MIN_FILES,
    SMALL_FILE_BYTES,
    compact_files,
    small_file_groups,
    write_partitions,
)

log = logging.getLogger("herald.rollup")

#: Events one batch reads (and one commit deletes): ~30 MB of Python objects at most.
BATCH_ROWS = 50_000
#: Any number, the same in every Herald, other than the schema's: the rollup's advisory lock.
ROLLUP_LOCK = 0x4845_524C  # "HERL"
_LOCK_POLL = 0.2


class DatabaseUnreachable(Exception):
    """The database did not answer; the message is one line."""


def rollup_database(database_url: str, store: AnalyticsStore, *, batch_rows: int = BATCH_ROWS,
                    compact_min_files: int = COMPACT_MIN_FILES,
                    small_file_bytes: int = SMALL_FILE_BYTES,
                    cancel: threading.Event | None = None) -> RollupReport:
    """Roll every event in ``herald_events`` of ``database_url`` into ``store``; delete them.

    Raises DatabaseUnreachable when it cannot connect, RollupCancelled when ``cancel`` is set
    (between batches, or waiting for the lock), RollupConflict when events vanish under it,
    psycopg's errors when the database goes away in the middle (the next run takes over).
    """
    import psycopg  # here: the segments' rollup never needs it

    from herald.pg_connect import connect

    started = time.monotonic()
    report = RollupReport(source=DATABASE)
    try:
        connection = connect(database_url)
    except psycopg.OperationalError as exc:  # libpq's message names host and port, no password
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(f"cannot reach HERALD_DATABASE_URL: {reason}") from None
    with connection as conn:
        migrate(conn)  # a rollup before the first `herald up` finds the tables too
        with _locked(conn, cancel):
            finish(conn, store)  # a crashed run's committed steps
            _clear_staging(store)  # and what it had not committed
            _roll_events(conn, store, batch_rows, report, cancel)
            _compact(conn, store, compact_min_files, small_file_bytes, report, cancel)
            _clear_staging(store)
    report.rows_written = report.rows
    report.seconds = time.monotonic() - started
    return report


def read_events(conn: Any, after: int, through: int,
                limit: int) -> list[tuple[int, int, bytes]]:
    """Up to ``limit`` rows (id, shard, event) with ``after`` < id <= ``through``, by id."""
    rows = conn.execute("SELECT id, shard, event FROM herald_events WHERE id > %s AND id <= %s"
                        " ORDER BY id LIMIT %s", (after, through, limit)).fetchall()
    return [(int(i), int(shard), bytes(event)) for i, shard, event in rows]


def events_table(rows: Sequence[tuple[int, int, bytes]]) -> tuple[pa.Table, list[int]]:
    """The rows that decode as LogEvents, as one table of ``SCHEMA``; and the ids that do not."""
    ids, shards, events, bad = [], [], [], []
    for event_id, shard, blob in rows:
        try:
            events.append(LogEvent(**orjson.loads(blob)))
        except (orjson.JSONDecodeError, TypeError):  # not JSON, not an object, not its fields
            bad.append(event_id)
            continue
        ids.append(event_id)
        shards.append(shard)
    return pa.Table.from_batches([log_batch(shards, ids, events)]), bad


def _roll_events(conn: Any, store: AnalyticsStore, batch_rows: int, report: RollupReport,
                 cancel: threading.Event | None) -> None:
    row = conn.execute("SELECT max(id) FROM herald_events").fetchone()
    through = int(row[0]) if row and row[0] is not None else 0
    after = 0
    while True:
        _check(cancel)
        rows = read_events(conn, after, through, batch_rows)
        if not rows:
            return
        after = rows[-1][0]
        table, bad = events_table(rows)
        for event_id in bad:
            log.error("rollup: herald_events id %d is not a delivery-log event; it stays", event_id)
            report.unreadable.append(f"herald_events id {event_id}")
        if not table.num_rows:
            continue
        staging = store.path(STAGING, uuid.uuid4().hex)
        written = write_partitions(table, staging, store.filesystem)
        steps = [Step(staged, final_name(staged))
                 for staged in (store.relative(path) for path, _ in written)]
        commit(conn, store, steps, table["event_id"].to_pylist())  # the commit point
        report.files_written += finish(conn, store)[0]
        report.rows += table.num_rows
        report.batches += 1


def _compact(conn: Any, store: AnalyticsStore, min_files: int, small_bytes: int,
             report: RollupReport, cancel: threading.Event | None) -> None:
    groups = small_file_groups(store.events, min_files, small_bytes, store.filesystem)
    if not groups:
        return
    staging = store.path(STAGING, uuid.uuid4().hex)
    steps: list[Step] = []
    for number, files in enumerate(groups):
        _check(cancel)
        staged = f"{staging}/{number}{PARQUET_SUFFIX}"
        compact_files(files, staged, store.filesystem)
        partition = store.relative(files[0]).rsplit("/", 1)[0]
        steps.append(Step(store.relative(staged), f"{partition}/{part_name()}"))
        steps += [Step(store.relative(path)) for path in files]
    commit(conn, store, steps)  # the commit point of the compaction
    published, removed = finish(conn, store)
    report.files_written += published
    report.files_compacted += removed


def _clear_staging(store: AnalyticsStore) -> None:
    staging = store.path(STAGING)
    if store.filesystem.get_file_info(staging).type != pafs.FileType.NotFound:
        store.filesystem.delete_dir(staging)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise RollupCancelled("rollup cancelled")


@contextmanager
def _locked(conn: Any, cancel: threading.Event | None) -> Iterator[None]:
    """The database's one rollup at a time; waits (cancellably) while another runs. A session
    lock: it goes with the connection if this process dies."""
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (ROLLUP_LOCK,)).fetchone()[0]:
        _check(cancel)
        time.sleep(_LOCK_POLL)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK,))
