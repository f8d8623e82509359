"""What one rollup run did (``RollupReport``), and how a run asked to stop ends (``RollupCancelled``).

Shared by the segments' rollup (``jobs.rollup``) and the database's (``jobs.database_rollup``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Where a run read the delivery log from.
SEGMENTS, DATABASE = "segments", "database"


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
    source: str = SEGMENTS
    #: Database batches committed (each: its Parquet published, its events deleted).
    batches: int = 0

    def summary(self) -> str:
        if self.source == DATABASE:
            batches = f"{self.batches} batch" + ("" if self.batches == 1 else "es")
            line = (f"rollup: {self.rows} rows from the database in {batches}, "
                    f"{self.files_written} files written, {self.files_compacted} small files "
                    f"compacted, {self.seconds:.2f} s")
            if self.unreadable:
                line += f"; unreadable, left in the database: {', '.join(self.unreadable)}"
            return line
        line = (f"rollup: {self.segments} segments, {self.rows} rows ({self.duplicates} already "
                f"counted), {self.files_written} files written, {self.files_compacted} small "
                f"files compacted, {self.segments_deleted} old segments deleted, "
                f"{self.seconds:.2f} s")
        if self.unreadable:
            line += f"; unreadable, left for the next run: {', '.join(self.unreadable)}"
        return line
