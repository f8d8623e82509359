"""Intake's enqueue across shards, with real ShardBatchers over in-process fake shard handles.

A batch across shards answers per item: the items of a shard that failed get an error, the
items other shards committed keep their tags (no 503 for the whole batch, so a client retrying
only the failed items duplicates nothing). Idempotency keys hold across shards.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.clients import ShardClient
from herald.errors import HeraldError, Unavailable
from herald.memory_storage import MemoryStorage
from herald.notification import Accepted
from herald.queue import QueueShard
from herald.sharding import shard_for_key
from serve.enqueue import ShardRouter
from tests.unit.conftest import T0, make_notification


class _Method:
    def __init__(self, call: Any) -> None:
        self._call = call

    def remote(self, shard: int, *args: Any) -> Any:  # ``shard``: which of a process's shards
        async def run() -> Any:
            await asyncio.sleep(0)
            return self._call(*args)
        return run()


class FakeShard:
    """A QueueShard behind the methods intake calls, as a Ray handle would offer them."""

    def __init__(self, broken: bool = False) -> None:
        self.shard = QueueShard(MemoryStorage(), {}, T0)
        self.broken = broken
        self.enqueue = _Method(self._enqueue)
        self.claimed = _Method(self.shard.claimed)
        self.claim = _Method(lambda entries: self.shard.claim(entries, T0))
        self.cancel = _Method(lambda tag, tenant: self.shard.cancel(tag, tenant, T0).public())
        self.receipts = _Method(lambda outcomes: [])

    def _enqueue(self, notifications: list[Any]) -> list[Accepted]:
        if self.broken:
            raise Unavailable("shard cannot write")
        results = self.shard.enqueue(notifications, T0)
        self.shard.flush()
        return results


def _intake(shards: list[FakeShard]) -> ShardRouter:
    return ShardRouter([ShardClient(shard, i) for i, shard in enumerate(shards)])


async def test_a_failed_shard_fails_only_its_own_items() -> None:
    shards = [FakeShard(), FakeShard(broken=True)]
    intake = _intake(shards)
    ok, broken = _reshard(make_notification(), 0), _reshard(make_notification(), 1)
    results = await intake.enqueue([ok, broken])
    assert isinstance(results[0], Accepted) and results[0].tag == ok.tag
    assert isinstance(results[1], HeraldError) and results[1].status == 503
    assert shards[0].shard.live_count() == 1 and shards[1].shard.live_count() == 0


async def test_the_same_key_with_another_uid_is_accepted_once_across_shards() -> None:
    shards = [FakeShard(), FakeShard()]
    intake = _intake(shards)
    key = next(k for k in (f"btag-{i}" for i in range(100)) if shard_for_key("acme", k, 2) == 1)
    first = _reshard(make_notification(btag=key), 0)  # lives on shard 0, its key on shard 1
    [accepted] = await intake.enqueue([first])
    assert isinstance(accepted, Accepted) and not accepted.duplicate
    again = _reshard(make_notification("BROWSER", uid="someone-else", btag=key), 1)
    [answer] = await intake.enqueue([again])
    assert isinstance(answer, Accepted) and answer.duplicate and answer.tag == first.tag
    assert shards[1].shard.live_count() == 0


async def test_two_racing_with_one_key_keep_the_first() -> None:
    shards = [FakeShard(), FakeShard(), FakeShard()]
    intake = _intake(shards)
    key = next(k for k in (f"race-{i}" for i in range(100)) if shard_for_key("acme", k, 3) == 1)
    a = _reshard(make_notification("BROWSER", uid="a", btag=key), 0)
    b = _reshard(make_notification("BROWSER", uid="b", btag=key), 2)
    results = await intake.enqueue([a, b])  # neither is claimed yet when both are checked
    assert [r.tag for r in results if isinstance(r, Accepted)] == [a.tag, a.tag]
    assert shards[2].shard.get(b.tag, "acme").status == "cancelled"  # withdrawn, not lost


def _reshard(notification: Any, shard: int) -> Any:
    """The same notification routed to ``shard`` (tests pick the shards explicitly)."""
    import dataclasses

    from herald.sharding import make_tag

    return dataclasses.replace(notification, shard=shard, tag=make_tag(shard))
