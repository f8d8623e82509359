"""Enqueue: validated notifications to their shards, coalesced, answered item by item.

Shards answer independently, so a batch across shards never fails as a whole: the items of a
shard that failed get that error, the items other shards committed keep their tags.
Idempotency keys hold across shards (``actors.idempotency``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from actors.clients import ShardClient
from actors.idempotency import claim, claimed, keyed_elsewhere, withdraw
from herald.errors import HeraldError, QueueFull
from herald.notification import Accepted, Notification
from serve.answers import as_herald_error
from serve.batcher import ShardBatcher


class ShardRouter:
    """Intake's way to the shards' ``enqueue``: one coalescing batcher per shard."""

    def __init__(self, shards: Sequence[ShardClient]) -> None:
        self.shards = list(shards)
        self.batchers: list[ShardBatcher[Notification, Accepted | QueueFull]] = [
            ShardBatcher(shard.enqueue) for shard in shards]

    async def enqueue(self, notifications: list[Notification]) -> list[Accepted | HeraldError]:
        """Send validated notifications to their shards (coalesced); results in input order.

        Shards answer independently: one shard's failure is that shard's items' error, and the
        items other shards committed still get their tags (a client retrying only the failed
        items duplicates nothing). Idempotency keys hold across shards (``actors.idempotency``).
        """
        results: list[Accepted | HeraldError | None] = [None] * len(notifications)
        remote = keyed_elsewhere(self.shards, notifications)
        for i, first in (await claimed(self.shards, remote, notifications)).items():
            results[i] = Accepted(first, 0, duplicate=True)
        by_shard: dict[int, list[int]] = {}
        for i, n in enumerate(notifications):
            if results[i] is None:
                by_shard.setdefault(n.shard, []).append(i)
        answers = await asyncio.gather(*(
            self.batchers[s].submit([notifications[i] for i in idx]) for s, idx in by_shard.items()
        ), return_exceptions=True)
        for (_, idx), answer in zip(by_shard.items(), answers, strict=True):
            for j, i in enumerate(idx):
                results[i] = as_herald_error(answer) if isinstance(answer, BaseException) \
                    else answer[j]
        accepted = {i: k for i, k in remote.items()
                    if isinstance(results[i], Accepted) and not results[i].duplicate}  # type: ignore[union-attr]
        for i, holder in (await claim(self.shards, accepted, notifications)).items():
            if holder != notifications[i].tag:  # two raced for one key: keep the first
                results[i] = await withdraw(self.shards, notifications[i], holder, results[i])
        return [r if r is not None else HeraldError("not answered") for r in results]
