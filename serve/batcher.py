"""Coalesce concurrent calls to one shard (enqueue, receipts) into one actor call and one commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herald.coalescer import Coalescer


class ShardBatcher:
    """While a call to the shard is in flight, new requests wait and then go together.

    No timer: under light load a request goes out at once; under heavy load each actor call
    carries everything that arrived meanwhile, so commits scale with load, not requests.
    The merging is ``herald.coalescer.Coalescer``; this class only binds it to a shard method
    that takes a list and answers one result per item (``enqueue``, ``receipts``).
    """

    def __init__(self, handle: Any, method: str = "enqueue", max_batch: int = 5000) -> None:
        self._method = getattr(handle, method)
        self._coalescer: Coalescer[Any, Any] = Coalescer(self._call, max_batch=max_batch)

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The shard's results for ``items``, one per item, in order.

        What the shard raises for a batch (``QueueFull``, a dead actor) is raised to every
        request in that batch.
        """
        return await self._coalescer.submit(items)

    async def _call(self, items: list[Any]) -> list[Any]:
        return list(await self._method.remote(items))
