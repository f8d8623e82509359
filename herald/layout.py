"""The shard layout: how many shards wrote the stored data, recorded so a changed ``HERALD_SHARDS`` is caught.

A notification's shard is chosen from its user (and written into its tag), so a different shard
count would orphan stored notifications (their tags 404) and break idempotency and ordering.
The count is recorded on first start, in the deployment's store (``queue/layout.json`` in the
data dir, or the database every deployment on it shares); a later start with another count is
refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from herald.data_dir import LAYOUT, DataDir
from herald.deployment_store import DeploymentStore
from herald.errors import ConfigError


def check_layout(store: DeploymentStore, shards: int, found: int | None = None) -> None:
    """Record ``shards`` if no count is recorded yet (``found`` instead, if given: what the data
    there shows, see ``shards_in_files``); raise ``ConfigError`` naming HERALD_SHARDS if the
    stored data was written with another count."""
    first = json.dumps({"shards": shards if found is None else found})
    recorded = int(json.loads(store.get_or_create(LAYOUT, lambda: first))["shards"])
    if recorded != shards:
        raise ConfigError(
            f"HERALD_SHARDS: the data in {store.where} was written by {recorded} shards, not"
            f" {shards}; start with HERALD_SHARDS={recorded} (another count would orphan stored"
            " notifications)")


def shards_in_files(data_dir: Path) -> int | None:
    """How many shards the SQLite files of a data dir from before the layout record show; None
    if it has none."""
    found = DataDir(data_dir).shard_dbs()
    return max(found) + 1 if found else None
