"""Where the rolled-up delivery log lives: a directory or a ``pyarrow.fs`` URI, and its layout.

``HERALD_ANALYTICS_URI`` names it (a directory, ``file:///…``, ``s3://bucket/prefix``,
``gs://bucket/prefix``); unset, it is ``<data dir>/analytics`` as it always was. The rollup
writes there and ``herald report`` reads there, both through :class:`AnalyticsStore`, which is
the layout inside it (its names are ``herald.data_dir``'s):

- ``events/dt=YYYY-MM-DD/channel=<channel>/part-<uuid>.parquet``: what readers read, partitioned
  by ``partitioning()`` for the writer (``jobs/``) and the reader (``analytics/``) alike;
- ``.staging/…``: files a rollup wrote but has not committed (readers never look there);
- ``rollup-manifest.json``: the segments' rollup's manifest (``jobs.manifest``; the database's
  rollup keeps its commit in the database instead).

Kept out of ``herald.config`` so that loading settings does not import pyarrow.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from herald.data_dir import CHANNEL, DAY, EVENTS, PARQUET_SUFFIX, DataDir, part_name


def partitioning(day: pa.DataType) -> ds.Partitioning:
    """The hive partitioning of ``events/`` (``dt=…/channel=…``), ``dt`` read or written as
    ``day``: a date when the rollup writes it, text when a report prunes on it."""
    return ds.partitioning(pa.schema([(DAY, day), (CHANNEL, pa.string())]), flavor="hive")


@dataclass(frozen=True)
class AnalyticsStore:
    """A Parquet destination: a filesystem and the root path in it."""

    filesystem: pafs.FileSystem
    #: The root inside ``filesystem``, without a trailing ``/``.
    root: str
    #: How messages (and the database's rollup) name it: the scheme and path only, never the
    #: credentials or options a URI may carry.
    name: str

    @classmethod
    def locate(cls, data_dir: Path | str, uri: str | None = None) -> AnalyticsStore:
        """``uri`` (``HERALD_ANALYTICS_URI``) if given, else ``data_dir/analytics``."""
        return cls.open(uri) if uri else cls.open(DataDir(Path(data_dir)).analytics)

    @classmethod
    def open(cls, where: str | Path) -> AnalyticsStore:
        """A directory or a URI ``pyarrow.fs.FileSystem.from_uri`` knows. An ``s3://`` or
        ``gs://`` one may ask the network (its bucket's region) here, never earlier."""
        text = str(where)
        if "://" not in text:
            directory = str(Path(text).absolute())
            return cls(pafs.LocalFileSystem(), directory, directory)
        filesystem, inside = pafs.FileSystem.from_uri(text)
        root = str(inside).rstrip("/") or "/"
        if isinstance(filesystem, pafs.LocalFileSystem):
            return cls(filesystem, root, root)
        return cls(filesystem, root, f"{urlsplit(text).scheme}://{root}")

    @property
    def local_dir(self) -> Path | None:
        """The directory, when the store is on this machine's disk (else None)."""
        return Path(self.root) if isinstance(self.filesystem, pafs.LocalFileSystem) else None

    def path(self, *parts: str) -> str:
        """``parts`` (relative, ``/``-separated) joined to the root."""
        return posixpath.join(self.root, *parts)

    def relative(self, path: str) -> str:
        """``path`` (inside the store) relative to its root."""
        return posixpath.relpath(path, self.root)

    @property
    def events(self) -> str:
        return self.path(EVENTS)

    def parquet_files(self, under: str) -> list[str]:
        """Every ``*.parquet`` below ``under``, sorted, but none in a hidden directory (one whose
        name starts with ``.`` or ``_``: staging, Spark's ``_temporary``)."""
        found = self.filesystem.get_file_info(
            pafs.FileSelector(under, allow_not_found=True, recursive=True))
        return sorted(info.path for info in found
                      if info.type == pafs.FileType.File and info.path.endswith(PARQUET_SUFFIX)
                      and not any(part.startswith((".", "_"))
                                  for part in posixpath.relpath(info.path, under).split("/")))


def final_name(staged: str) -> str:
    """A staged partition file ``…/dt=…/channel=…/part-….parquet`` → its published name
    ``events/dt=…/channel=…/part-<uuid>.parquet`` (relative to the store's root)."""
    day, channel = staged.split("/")[-3:-1]
    return posixpath.join(EVENTS, day, channel, part_name())
