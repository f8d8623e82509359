"""The shard's timer survives a failing round (issue 17, item 10): a SQLite error in one tick
is logged and the next round runs, instead of the timer task ending for good."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest

from actors.group_commit import GroupCommit
from actors.shard_service import ShardService


class _Metrics:
    def due(self) -> bool:
        return False


class _Shard:
    """A shard whose first timer round meets a locked database."""

    def __init__(self) -> None:
        self.ticks = 0

    def next_wakeup(self) -> float:
        return time.time() - 1  # always due

    def tick(self, now: float) -> None:
        self.ticks += 1
        if self.ticks == 1:
            raise sqlite3.OperationalError("database is locked")

    def flush(self) -> None:
        pass

    def take_finished(self) -> list[str]:
        return []

    def delete_final(self, now: float, keep: float, limit: int) -> int:
        return 0


class _Served:
    """The served shard, started (SQLite: no lease to renew, no shipper in this test)."""

    def __init__(self, shard: _Shard) -> None:
        self.shard, self.shipper = shard, None

    async def ready(self) -> _Shard:
        return self.shard

    def renew(self, shard: _Shard) -> None:
        pass


def _bare_actor(shard: _Shard) -> Any:
    """A shard's service, with just what its timer uses."""
    actor = ShardService.__new__(ShardService)
    actor._served, actor._shard_id, actor._ship_at = _Served(shard), 0, 0.0
    actor._wakeups, actor._waiters = {}, {}
    actor._group = GroupCommit(0, reload_on_failure=False, lose=lambda *_: None,
                               committed=lambda _: None)
    actor._retention_at, actor._metrics = 0.0, _Metrics()
    actor._settings = type("S", (), {"retention_days": 7})()
    return actor


def test_one_failing_timer_round_does_not_stop_the_timer(caplog: pytest.LogCaptureFixture) -> None:
    shard = _Shard()

    async def run() -> None:
        timer = asyncio.get_running_loop().create_task(_bare_actor(shard)._tick())
        for _ in range(300):  # bounded: up to 3 s for a few rounds of 10 ms
            await asyncio.sleep(0.01)
            if shard.ticks >= 3 or timer.done():
                break
        assert not timer.done(), "the timer ended"
        timer.cancel()

    asyncio.run(run())
    assert shard.ticks >= 3
    assert "shard timer round failed" in caplog.text
