"""What a deployment keeps beside its queue — secrets made once, the tenants' webhook secrets, the
shard count — behind one small interface, in the data dir or in the database.

A value is text kept under a name. The name is its file's path in the data dir (``dev-api-key``,
``webhook-secrets.json``, ``queue/layout.json``: the files Herald always kept there, mode 0600),
or its row in ``herald_settings`` when ``HERALD_DATABASE_URL`` is set: then every deployment on
that database shares it, and nothing of it is written to a data dir. ``herald.open_store`` is
the one place that chooses.

Two primitives make every change safe against a second writer (a second Herald starting at the
same moment, ``herald webhook-secret rotate`` while one runs): ``get`` and ``compare_and_set``,
which writes only if the value is still the one the writer read. ``get_or_create`` is built on
them: the first writer's value is the one everybody gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from herald.data_dir import DataDir


class DeploymentStore(ABC):
    """Named text values kept for this deployment (and every deployment sharing its database)."""

    #: Where the values are, for messages: the data dir's path, or "the database".
    where: str

    @abstractmethod
    def get(self, name: str) -> str | None:
        """The value kept under ``name``; None if there is none."""

    @abstractmethod
    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        """Keep ``value`` under ``name`` if ``name`` holds ``expected`` now (None: holds nothing);
        False, changing nothing, if another writer got there first."""

    @abstractmethod
    def close(self) -> None:
        """Let go of what the store holds open (a database connection)."""

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The value kept under ``name``; made with ``make`` and kept if there is none. Two
        callers at once both get the first one's value."""
        value = self.get(name)
        if value is None:
            self.compare_and_set(name, None, make())
            value = self.get(name)
        if value is None:
            raise RuntimeError(f"{name}: kept and then gone")  # nothing deletes a value
        return value

    def __enter__(self) -> DeploymentStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class DataDirStore(DeploymentStore):
    """Each value in its own file of the data dir, mode 0600, written whole (a temp file renamed
    into place, so a reader never sees half of one). Writers on this machine take turns under an
    ``flock`` of the data dir itself, so a value read and changed is never changed meanwhile."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.where = str(data_dir)
        self._layout = DataDir(data_dir)

    def close(self) -> None:
        pass  # nothing is held open between calls

    def get(self, name: str) -> str | None:
        try:
            return self._layout.stored(name).read_text().strip()
        except FileNotFoundError:
            return None

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        path = self._layout.stored(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing():
            if self.get(name) != expected:
                return False
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
            try:  # mkstemp makes it 0600: never readable by others, not even for a moment
                with os.fdopen(fd, "w") as out:
                    out.write(value + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        return True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
