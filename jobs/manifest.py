"""The rollup's manifest: which segments and event ids are rolled up, and the file step to finish.

One JSON file, ``analytics/rollup-manifest.json``, replaced atomically (temp file, fsync, rename,
fsync of the directory); its write is the rollup's commit point. It holds:

- ``segments``: segment key (``shard-<n>/<first>-<last>.arrow``) → when it was rolled up;
- ``rolled``: per shard, the merged ranges of event ids already in the Parquet, so a row is
  counted once even if two segments held it (ids only grow, so this stays a range or two);
- ``publish`` / ``remove``: the renames (staging → ``events/``) and deletions a run committed but
  may not have finished. ``finish()`` carries them out; every step of it can run twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald.log_schema import SCHEMA_VERSION
from jobs.segments import Range, Segment, fsync_path

log = logging.getLogger("herald.rollup")

MANIFEST_VERSION = 1


def subtract(ranges: Sequence[Range], first: int, last: int) -> list[Range]:
    """The parts of ``[first, last]`` that the sorted, disjoint ``ranges`` do not cover."""
    parts: list[Range] = []
    low = first
    for start, end in ranges:
        if end < low:
            continue
        if start > last:
            break
        if start > low:
            parts.append((low, start - 1))
        low = max(low, end + 1)
        if low > last:
            break
    if low <= last:
        parts.append((low, last))
    return parts


def merge(ranges: Sequence[Range], added: Sequence[Range]) -> list[Range]:
    """``ranges`` and ``added`` as sorted, disjoint ranges; touching ranges become one."""
    merged: list[Range] = []
    for start, end in sorted([*ranges, *added]):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(ranges: Sequence[Range], others: Sequence[Range]) -> list[Range]:
    """The ids in both sorted, disjoint range lists, as sorted, disjoint ranges."""
    both: list[Range] = []
    i = j = 0
    while i < len(ranges) and j < len(others):
        low, high = max(ranges[i][0], others[j][0]), min(ranges[i][1], others[j][1])
        if low <= high:
            both.append((low, high))
        if ranges[i][1] < others[j][1]:
            i += 1
        else:
            j += 1
    return both


def settle(planned: Sequence[Segment], found: Mapping[str, Sequence[Range]],
           rolled: Mapping[int, Sequence[Range]]) -> tuple[list[str], dict[int, list[Range]]]:
    """What a run may record, from what its tasks actually read: (segments done, ids counted).

    ``found`` holds, per segment read, the ids its file held within its name's range (a segment
    absent from it was unreadable). The ids counted are exactly those kept and written: the ids
    found within ``keep``, never the range a file's name claims, so a file that held less than
    its name says (cut short, replaced between listing and reading) marks nothing it did not
    give. A segment is done only when every id found in it is counted now or was before: one
    whose ids were left to another segment of this run that could not be read is not, so it is
    rolled again rather than its ids lost.
    """
    counted: dict[int, list[Range]] = {}
    for segment in planned:
        if segment.key in found:
            kept = intersect(found[segment.key], segment.keep)
            counted[segment.shard] = merge(counted.get(segment.shard, []), kept)
    done = []
    for segment in planned:
        if segment.key not in found:
            continue
        have = merge(rolled.get(segment.shard, []), counted.get(segment.shard, []))
        if all(not subtract(have, low, high) for low, high in found[segment.key]):
            done.append(segment.key)
    return done, counted


def rename(source: Path, target: Path) -> None:
    """One publishing rename (a seam the crash tests break)."""
    os.replace(source, target)


@dataclass
class Manifest:
    path: Path
    segments: dict[str, float] = field(default_factory=dict)
    rolled: dict[int, list[Range]] = field(default_factory=dict)
    #: (staging path, final path), both relative to the analytics directory.
    publish: list[tuple[str, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.is_file():
            return cls(path)
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{path}: manifest version {data.get('version')!r}, "
                             f"this Herald reads {MANIFEST_VERSION}")
        return cls(
            path,
            segments={str(k): float(v) for k, v in data["segments"].items()},
            rolled={int(k): [(int(a), int(b)) for a, b in v] for k, v in data["rolled"].items()},
            publish=[(str(a), str(b)) for a, b in data["publish"]],
            remove=[str(name) for name in data["remove"]],
        )

    @property
    def root(self) -> Path:
        return self.path.parent

    def save(self) -> None:
        """Replace the manifest on disk atomically and durably."""
        data = {
            "version": MANIFEST_VERSION, "schema_version": SCHEMA_VERSION, "saved_at": time.time(),
            "segments": self.segments,
            "rolled": {str(shard): ranges for shard, ranges in sorted(self.rolled.items())},
            "publish": self.publish, "remove": self.remove,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "w") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)
        fsync_path(self.root)

    def record(self, keys: Sequence[str], ranges: dict[int, list[Range]], now: float) -> None:
        """Mark segments rolled up and their ids counted (in memory; ``save`` commits)."""
        for key in keys:
            self.segments[key] = now
        for shard, added in ranges.items():
            self.rolled[shard] = merge(self.rolled.get(shard, []), added)

    def finish(self) -> tuple[int, int]:
        """Do the committed renames and deletions, then record them done; (published, removed).

        Idempotent: a file already renamed or removed is skipped, so a run that crashed here
        is finished by the next one.
        """
        published = removed = 0
        directories: set[Path] = set()
        for staged, final in self.publish:
            source, target = self.root / staged, self.root / final
            if source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                rename(source, target)
                directories.add(target.parent)
                published += 1
            elif not target.exists():  # committed but gone: say so rather than hide a loss
                log.error("rollup: committed file %s is missing from staging", staged)
        for name in self.remove:
            path = self.root / name
            if path.exists():
                path.unlink()
                directories.add(path.parent)
                removed += 1
        for directory in directories:
            fsync_path(directory)
        if self.publish or self.remove:
            self.publish, self.remove = [], []
            self.save()
        return published, removed
