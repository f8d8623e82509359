"""Coalesce concurrent calls to one shard (enqueue, receipts) into one actor call and one commit."""

from __future__ import annotations

import asyncio
from typing import Any


class ShardBatcher:
    """While a call to the shard is in flight, new requests wait and then go together.

    No timer: under light load a request goes out at once; under heavy load each actor call
    carries everything that arrived meanwhile, so commits scale with load, not requests.
    """

    def __init__(self, handle: Any, method: str = "enqueue", max_batch: int = 5000) -> None:
        self._method = getattr(handle, method)
        self._max_batch = max_batch
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[dict[str, Any]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """``{"results": [...]}`` (one per item, in order) or ``{"error": {...}}``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[list[dict[str, Any]], asyncio.Future[dict[str, Any]]]]:
        taken: list[tuple[list[dict[str, Any]], asyncio.Future[dict[str, Any]]]] = []
        size = 0
        while self._pending and (not taken or size + len(self._pending[0][0]) <= self._max_batch):
            item = self._pending.pop(0)
            taken.append(item)
            size += len(item[0])
        return taken

    async def _drain(self) -> None:
        while self._pending:
            taken = self._take()
            flat = [n for group, _ in taken for n in group]
            try:
                answer = await self._method.remote(flat)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            results, start = answer.get("results"), 0
            for group, future in taken:
                # A request whose client went away was cancelled: the others still get answers.
                if not future.done():
                    future.set_result(answer if results is None else
                                      {"results": results[start:start + len(group)]})
                start += len(group)
