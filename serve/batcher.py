"""Coalesce concurrent calls to one shard (enqueue, receipts) into one actor call and one commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from herald.coalescer import Coalescer

Item = TypeVar("Item")
Result = TypeVar("Result")


class ShardBatcher(Generic[Item, Result]):
    """While a call to the shard is in flight, new requests wait and then go together.

    No timer: under light load a request goes out at once; under heavy load each actor call
    carries everything that arrived meanwhile, so commits scale with load, not requests.
    The merging is ``herald.coalescer.Coalescer``; this class only binds it to a shard method
    that takes a list and answers one result per item (a shard client's ``enqueue``,
    ``receipts``).
    """

    def __init__(self, call: Callable[[list[Item]], Awaitable[list[Result]]], max_batch: int = 5000,
                 window: float = 0.0) -> None:
        self._method = call
        self._coalescer: Coalescer[Item, Result] = Coalescer(self._call, max_batch=max_batch,
                                                             window=window)

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """The shard's results for ``items``, one per item, in order.

        What the shard raises for a batch (``QueueFull``, a dead actor) is raised to every
        request in that batch.
        """
        return await self._coalescer.submit(items)

    async def _call(self, items: list[Item]) -> list[Result]:
        return list(await self._method(items))
