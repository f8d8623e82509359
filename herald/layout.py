"""The data dir's layout: how many shards wrote it, recorded so a changed ``HERALD_SHARDS`` is caught.

A notification's shard is chosen from its user (and written into its tag), so a different shard
count would orphan stored notifications (their tags 404) and break idempotency and ordering.
The count is recorded on first start; a later start with another count is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from herald.errors import ConfigError

LAYOUT_FILE = "layout.json"
_SHARD_FILE = re.compile(r"shard-(\d+)\.db\Z")


def check_layout(data_dir: Path, shards: int) -> None:
    """Record ``shards`` for a new data dir; raise ``ConfigError`` naming HERALD_SHARDS if the
    data there was written with another count."""
    queue = data_dir / "queue"
    path = queue / LAYOUT_FILE
    if path.is_file():
        recorded = int(json.loads(path.read_text())["shards"])
    else:  # a data dir from before the layout file: its shard files say how many there were
        found = [int(m.group(1)) for f in queue.glob("shard-*.db")
                 if (m := _SHARD_FILE.match(f.name))]
        recorded = max(found) + 1 if found else shards
    if recorded != shards:
        raise ConfigError(
            f"HERALD_SHARDS: the data in {data_dir} was written by {recorded} shards, not"
            f" {shards}; start with HERALD_SHARDS={recorded} (another count would orphan stored"
            " notifications)")
    if not path.is_file():
        queue.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"shards": shards}) + "\n")
