"""Group commit (``actors.group_commit``): calls share transactions, nobody is answered before
theirs, and a failed one fails every call in it. Over a real shard and storage, without Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors.group_commit import FULL_BATCH, GroupCommit
from herald.delivery_log import LogEvent
from herald.errors import Unavailable
from herald.memory_storage import MemoryStorage
from herald.queue import QueueShard
from herald.record import Record
from herald.shard_health import ShardCondition
from herald.storage import ReceiptChanges
from tests.unit.conftest import T0, make_notification, make_shard


class _FailingStorage(MemoryStorage):
    """A disk that refuses writes while ``failing``."""

    failing = False

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if self.failing:
            raise OSError("disk full")
        super().write(inserts, updates, events, receipts)


def _group(window: float = 0.0, reload: bool = False,
           lost: list[str] | None = None) -> GroupCommit:
    def lose(shard: QueueShard, condition: ShardCondition, reason: str) -> None:
        if lost is not None:
            lost.append(reason)
    return GroupCommit(0, reload_on_failure=reload, lose=lose, committed=lambda _: None,
                       window_seconds=window)


def _enqueue_and_commit(shard: QueueShard, group: GroupCommit, n: int) -> asyncio.Future[None]:
    """One call: enqueue one notification, wait for its commit."""
    async def call() -> None:
        shard.enqueue([make_notification("EMAIL", btag=f"k{n}", to=f"u{n}@example.com")], T0)
        await group.commit(shard)
    return asyncio.ensure_future(call())


def test_the_calls_of_one_round_share_one_commit() -> None:
    storage = MemoryStorage()
    shard, group = make_shard(storage), _group()

    async def run() -> None:
        await asyncio.gather(*(_enqueue_and_commit(shard, group, n) for n in range(50)))

    asyncio.run(run())
    assert storage.commits == 1 and shard.live_count() == 50


def test_with_a_window_calls_spread_over_it_share_one_commit_and_wait_for_it() -> None:
    storage = MemoryStorage()
    shard, group = make_shard(storage), _group(window=0.05)

    async def run() -> None:
        first = _enqueue_and_commit(shard, group, 0)
        await asyncio.sleep(0.01)
        assert not first.done() and storage.commits == 0  # not answered before its commit
        second = _enqueue_and_commit(shard, group, 1)
        await asyncio.gather(first, second)

    asyncio.run(run())
    assert storage.commits == 1 and len(storage.load_live()) == 2


def test_a_full_batch_commits_without_waiting_for_its_window() -> None:
    storage = MemoryStorage()
    shard, group = make_shard(storage), _group(window=30.0)

    async def run() -> None:
        calls = [_enqueue_and_commit(shard, group, n) for n in range(FULL_BATCH)]
        await asyncio.wait_for(asyncio.gather(*calls), 5)  # not the 30 s window

    asyncio.run(run())
    assert storage.commits == 1


def test_a_failed_commit_fails_every_call_in_it_and_none_of_them_happened() -> None:
    storage = _FailingStorage()
    shard, group = make_shard(storage), _group()
    storage.failing = True

    async def run() -> list[BaseException | None]:
        results = await asyncio.gather(*(_enqueue_and_commit(shard, group, n) for n in range(3)),
                                       return_exceptions=True)
        return list(results)

    results = asyncio.run(run())
    assert all(isinstance(r, Unavailable) for r in results)
    assert shard.live_count() == 0 and storage.load_live() == []  # memory rolled back too


def test_on_a_database_a_failed_commit_gives_the_shard_up() -> None:
    """PostgreSQL: the write's outcome may be unknown; the shard starts over from the database."""
    storage, lost = _FailingStorage(), []
    shard, group = make_shard(storage), _group(reload=True, lost=lost)
    storage.failing = True

    async def run() -> None:
        with pytest.raises(Unavailable):
            await _enqueue_and_commit(shard, group, 0)

    asyncio.run(run())
    assert lost == ["write failed: OSError"]
