"""The dev-mode outbox: what the capture peers received, one JSON line per message per channel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson

from herald.data_dir import outbox_file, outbox_files

_lock = threading.Lock()


def append(outbox_dir: Path, channel: str, entry: dict[str, Any]) -> None:
    """Record one received message (adds ``at`` and ``channel``)."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps({"at": time.time(), "channel": channel.lower(), **entry}) + b"\n"
    with _lock, outbox_file(outbox_dir, channel).open("ab") as fh:
        fh.write(line)


def read(outbox_dir: Path, channel: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries of one channel (or all), oldest first; the last ``limit`` if given."""
    paths = [outbox_file(outbox_dir, channel)] if channel else outbox_files(outbox_dir)
    entries: list[dict[str, Any]] = []
    for path in paths:
        if path.is_file():
            with path.open("rb") as fh:
                entries.extend(orjson.loads(line) for line in fh if line.strip())
    entries.sort(key=lambda e: e.get("at", 0))
    return entries[-limit:] if limit else entries
