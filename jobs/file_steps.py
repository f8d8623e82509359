"""The database rollup's commit: file steps recorded in PostgreSQL with the events they hold deleted.

A step is "rename ``source`` → ``target``" (a staged Parquet file published under ``events/``)
or "delete ``source``" (a small file a compaction merged away), paths relative to the
destination (``herald.analytics_store.AnalyticsStore``). :func:`commit` records steps in
``herald_rollup_steps`` *in the same transaction* that deletes, from ``herald_events``, exactly
the events the staged files hold: that transaction is the commit point. :func:`finish` carries
committed steps out and then forgets them; every part of it can run twice, so a run that died
anywhere in it is finished by the next.

Why in the database and not in a manifest file beside the Parquet: the events and the promise
that their Parquet will be published must change together, and only the database can commit
both at once; a destination in an object store has no atomic rename to commit with anyway.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from herald.analytics_store import AnalyticsStore
from jobs.segments import fsync_path

log = logging.getLogger("herald.rollup")


class RollupConflict(RuntimeError):
    """Events being rolled up left the database by another hand: nothing was committed."""


@dataclass(frozen=True, slots=True)
class Step:
    source: str
    #: None: delete ``source``.
    target: str | None = None


def commit(conn: Any, store: AnalyticsStore, steps: Sequence[Step],
           events: Sequence[int] = ()) -> None:
    """Delete ``events`` (ids, every one of them) and record ``steps``, in one transaction.

    Raises RollupConflict, committing nothing, when some of ``events`` were already gone:
    someone else rolled or shipped them, and publishing our copy would count them twice.
    """
    with conn.transaction():
        if events:
            deleted = conn.execute("DELETE FROM herald_events WHERE id = ANY(%s::bigint[])",
                                   (list(events),)).rowcount
            if deleted != len(events):
                raise RollupConflict(
                    f"{len(events) - deleted} of {len(events)} events being rolled up were "
                    "deleted by someone else (a log shipper, or a rollup that ignored the lock)")
        conn.execute(
            "INSERT INTO herald_rollup_steps (destination, source, target)"
            " SELECT %s, source, target FROM unnest(%s::text[], %s::text[]) AS s(source, target)",
            (store.name, [step.source for step in steps], [step.target for step in steps]))


def pending(conn: Any, store: AnalyticsStore) -> list[Step]:
    """The steps committed for ``store`` and not finished yet."""
    rows = conn.execute("SELECT source, target FROM herald_rollup_steps WHERE destination = %s"
                        " ORDER BY source", (store.name,)).fetchall()
    return [Step(str(source), None if target is None else str(target)) for source, target in rows]


def move(filesystem: pafs.FileSystem, source: str, target: str) -> None:
    """One publishing rename (a seam the crash tests break)."""
    filesystem.move(source, target)


def finish(conn: Any, store: AnalyticsStore) -> tuple[int, int]:
    """Carry out the committed steps of ``store``; (files published, files deleted).

    Publishing comes first and deleting only once every publish is done, so a compaction's
    small files go only after the merged file is in place. A step whose file is in neither
    place is kept and logged, not dropped: its staged file may be on another machine's disk
    (two Heralds writing to "the same" local path), whose next run finishes it.
    """
    steps = pending(conn, store)
    if not steps:
        return 0, 0
    fs = store.filesystem
    publishes = [step for step in steps if step.target is not None]
    sources = _existing(fs, [store.path(step.source) for step in steps])
    targets = _existing(fs, [store.path(step.target) for step in publishes if step.target])
    done: list[str] = []
    touched: set[str] = set()
    published = missing = 0
    for step in publishes:
        assert step.target is not None
        source, target = store.path(step.source), store.path(step.target)
        if source in sources:
            fs.create_dir(posixpath.dirname(target), recursive=True)
            move(fs, source, target)
            touched.add(posixpath.dirname(target))
            published += 1
        elif target not in targets:
            log.error("rollup: committed file %s is in neither staging nor events/ of %s; "
                      "kept for the run that can see it", step.source, store.name)
            missing += 1
            continue
        done.append(step.source)
    removed = 0
    if not missing:
        for step in steps:
            if step.target is None:
                path = store.path(step.source)
                if path in sources:
                    fs.delete_file(path)
                    touched.add(posixpath.dirname(path))
                    removed += 1
                done.append(step.source)
    if store.local_dir is not None:  # the renames must survive a power cut before we forget them
        for directory in touched:
            fsync_path(directory)
    conn.execute("DELETE FROM herald_rollup_steps WHERE destination = %s AND source = ANY(%s)",
                 (store.name, done))
    return published, removed


def _existing(fs: pafs.FileSystem, paths: list[str]) -> set[str]:
    if not paths:
        return set()
    infos = fs.get_file_info(paths)
    return {path for path, info in zip(paths, infos, strict=True)
            if info.type != pafs.FileType.NotFound}
