"""The data directory's layout: every path and file name Herald keeps on disk, spelled here only.

``HERALD_DATA_DIR`` holds (the names Herald always used, so an existing data dir keeps working):

- ``queue/shard-<n>.db``: each shard's SQLite database; ``queue/layout.json``: the shard count
  (``herald.layout``);
- ``log/shard-<n>/<first id>-<last id>.arrow``: a shard's closed delivery-log segments, the ids
  zero-padded to 14 digits so names sort by id; ``<first id>.arrow.open`` is the one being
  written (``actors.log_shipper`` writes them, ``jobs.rollup`` reads the closed ones);
- ``analytics/``: the rolled-up log unless ``HERALD_ANALYTICS_URI`` names another place; inside
  it (wherever it is) ``events/dt=YYYY-MM-DD/channel=<channel>/part-<uuid>.parquet``, the
  ``.staging/`` a rollup has not committed, ``rollup-manifest.json`` and ``.rollup.lock``
  (``herald.analytics_store`` builds the Parquet partitioning from these names, for the writer in
  ``jobs/`` and the reader in ``analytics/`` alike); HTML reports beside them;
- ``outbox/<channel>.jsonl``: what the dev-mode capture peers received;
- the secrets Herald makes once (``dev-api-key``, ``admin-key``, ``browser-secret``,
  ``unsubscribe-secret``, ``webhook-secrets.json``): values of the deployment's store, whose
  names are also their keys in the database when ``HERALD_DATABASE_URL`` is set;
- ``ray-address.json``: the local Ray of a running ``herald up`` (``jobs.local_ray``).

Pure: paths and names only, no I/O beyond listing a directory.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# ---- names in the deployment's store (a file here, or a row of the database) -----------------
DEV_API_KEY = "dev-api-key"
ADMIN_KEY = "admin-key"
BROWSER_SECRET = "browser-secret"
UNSUBSCRIBE_SECRET = "unsubscribe-secret"
WEBHOOK_SECRETS = "webhook-secrets.json"
#: The shard count the stored data was written with.
LAYOUT = "queue/layout.json"

# ---- inside the analytics store (``<data dir>/analytics`` or ``HERALD_ANALYTICS_URI``) -------
EVENTS = "events"
STAGING = ".staging"
MANIFEST = "rollup-manifest.json"
ROLLUP_LOCK_FILE = ".rollup.lock"
#: The hive partition columns of ``events/``, outermost first: ``dt=YYYY-MM-DD/channel=<channel>``.
DAY, CHANNEL = "dt", "channel"
PARQUET_SUFFIX = ".parquet"
PART_PREFIX = "part-"

_QUEUE, _LOG, _ANALYTICS, _OUTBOX = "queue", "log", "analytics", "outbox"
_RAY_RECORD = "ray-address.json"
_SHARD = "shard-"
_SHARD_DB = re.compile(r"shard-(\d+)\.db\Z")
_SHARD_DIR = re.compile(r"shard-(\d+)\Z")
SEGMENT_SUFFIX = ".arrow"
OPEN_SEGMENT_SUFFIX = ".arrow.open"
_SEGMENT = re.compile(r"(\d{14})-(\d{14})\.arrow\Z")
_OUTBOX_SUFFIX = ".jsonl"


def shard_key(shard: int) -> str:
    """``shard-<n>``: a shard's directory under ``log/`` (and its manifest keys' first part)."""
    return f"{_SHARD}{shard}"


def segment_name(first: int, last: int) -> str:
    """A closed segment's file name: the first and last event id it holds."""
    return f"{first:014d}-{last:014d}{SEGMENT_SUFFIX}"


def open_segment_name(first: int) -> str:
    """The file name of the segment being written, from its first event id."""
    return f"{first:014d}{OPEN_SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(first, last) event id of a closed segment's file name; None for any other name."""
    match = _SEGMENT.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def part_name() -> str:
    """A new, unique Parquet file name inside a partition."""
    return f"{PART_PREFIX}{uuid.uuid4().hex}{PARQUET_SUFFIX}"


def part_template() -> str:
    """Parquet file names for one write of several files (``{i}`` numbers them)."""
    return f"{PART_PREFIX}{uuid.uuid4().hex}-{{i}}{PARQUET_SUFFIX}"


def is_part_path(parts: list[str]) -> bool:
    """Whether ``parts`` (a path under ``events/``, split on ``/``) is a partition's Parquet file."""
    return (len(parts) == 3 and parts[0].startswith(DAY + "=")
            and parts[1].startswith(CHANNEL + "=") and parts[2].startswith(PART_PREFIX)
            and parts[2].endswith(PARQUET_SUFFIX))


def outbox_file(outbox: Path, channel: str) -> Path:
    """Where the capture peers append ``channel``'s messages."""
    return outbox / f"{channel.lower()}{_OUTBOX_SUFFIX}"


def outbox_files(outbox: Path) -> list[Path]:
    """Every channel's outbox file, by name."""
    return sorted(outbox.glob("*" + _OUTBOX_SUFFIX))


@dataclass(frozen=True, slots=True)
class ClosedSegment:
    """A closed log segment found on disk."""

    shard: int
    path: Path
    first: int
    last: int

    @property
    def key(self) -> str:
        """``shard-<n>/<name>``: the segment relative to ``log/`` (its key in the manifest)."""
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class DataDir:
    """One data directory: where each thing Herald keeps lives in it."""

    root: Path

    @property
    def queue(self) -> Path:
        return self.root / _QUEUE

    def shard_db(self, shard: int) -> Path:
        return self.queue / f"{_SHARD}{shard}.db"

    def shard_dbs(self) -> list[int]:
        """The shards that have a SQLite database here."""
        return sorted(int(m.group(1)) for f in self.queue.glob(_SHARD + "*.db")
                      if (m := _SHARD_DB.match(f.name)))

    @property
    def log(self) -> Path:
        return self.root / _LOG

    def log_dir(self, shard: int) -> Path:
        return self.log / shard_key(shard)

    def segment(self, key: str) -> Path:
        """A segment's path from its key (``ClosedSegment.key``)."""
        return self.log / key

    def closed_segments(self, shard: int | None = None) -> Iterator[ClosedSegment]:
        """The closed segments of ``shard`` (None: of every shard), unordered."""
        dirs = [self.log_dir(shard)] if shard is not None else self.log.glob(_SHARD + "*")
        for directory in dirs:
            match = _SHARD_DIR.match(directory.name)
            if not match:
                continue
            for path in directory.glob("*" + SEGMENT_SUFFIX):
                if ids := parse_segment_name(path.name):
                    yield ClosedSegment(int(match.group(1)), path, *ids)

    @property
    def analytics(self) -> Path:
        """The analytics store when ``HERALD_ANALYTICS_URI`` is unset."""
        return self.root / _ANALYTICS

    def reports(self) -> list[Path]:
        """The HTML reports written into the data dir (beside it, or in its analytics)."""
        return [*self.root.glob("report*.html"), *self.analytics.glob("*.html"),
                *(self.analytics / "reports").glob("*.html")]

    @property
    def outbox(self) -> Path:
        return self.root / _OUTBOX

    def stored(self, name: str) -> Path:
        """The file of a value of the deployment's store (``DEV_API_KEY``, ``LAYOUT``…)."""
        return self.root / name

    @property
    def ray_record(self) -> Path:
        return self.root / _RAY_RECORD
