"""Short chaos on the session's Herald: a shard whose SQLite file is write-locked by another
connection across its restart is reported down, comes back by itself once the lock goes, and
nothing accepted is lost. The long version (60 s) is in ``make chaos`` (``tests/chaos/run.py``)."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.peers import Peers
from tests.chaos.report import details, table
from tests.chaos.scenarios import locked_shard
from tests.conftest import KEYS, Service

pytestmark = pytest.mark.ray


def test_a_shard_locked_mid_load_comes_back_by_itself_and_loses_nothing(service: Service) -> None:
    tally = asyncio.run(locked_shard(service.base_url, KEYS["tenant-a"], Peers.of_service(service),
                                     data_dir=service.data_dir, lock_for=12.0, rate=10, shard=1,
                                     settle=150))
    print("\n" + table([tally]) + "\n" + details([tally]))
    assert tally.accepted == tally.offered > 50
    assert tally.lost == 0, tally.problems
    assert not tally.problems, tally.problems
