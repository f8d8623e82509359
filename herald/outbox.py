"""Reading the dev-mode outbox from its end: the newest messages the capture peers received.

The capture peers (``capture/outbox.py``) append one JSON line per message to
``<outbox>/<channel>.jsonl`` (``herald.data_dir.outbox_file``). The admin console shows the
newest few, so this reads each file backwards in blocks and stops after ``limit`` lines,
however long the outbox has grown; a line that is not JSON (a write cut short) is skipped.
Contact details are masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from herald.data_dir import outbox_file
from herald.masking import mask_payload

__all__ = ["OUTBOX_CHANNELS", "newest"]

OUTBOX_CHANNELS = ("email", "sms", "fax")
_BLOCK = 64 * 1024


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The non-empty lines of ``path``, last first, read in blocks from the end."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - _BLOCK)
            fh.seek(start)
            parts = (fh.read(end - start) + rest).split(b"\n")
            end = start
            rest = parts.pop(0) if start > 0 else b""  # maybe cut: the next block completes it
            yield from (part for part in reversed(parts) if part.strip())


def newest(outbox_dir: Path, channel: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` captured messages of ``channel`` (or of all), newest first, masked."""
    channels = [channel] if channel else list(OUTBOX_CHANNELS)
    entries: list[dict[str, Any]] = []
    for name in channels:
        path = outbox_file(outbox_dir, name)
        if not path.is_file():
            continue
        found = 0
        for line in _lines_backwards(path):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(mask_payload(entry))
                found += 1
                if found >= limit:
                    break
    entries.sort(key=lambda e: e.get("at", 0), reverse=True)
    return entries[:limit]
