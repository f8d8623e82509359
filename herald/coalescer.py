"""Merge concurrent calls into one: callers that arrive while a call is in flight go out together.

Behind ``serve.batcher.ShardBatcher`` (enqueue and receipts to a queue shard: one actor call and
one commit for everything that arrived meanwhile) and ``actors.ratelimiter.RateLimitClient``
(one ``admit`` call to the limiter for the questions of a few milliseconds). Pure asyncio.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Waiter(Generic[Item, Result]):
    """One ``submit``: its items and the future its caller awaits."""

    items: list[Item]
    future: asyncio.Future[list[Result]]


class Coalescer(Generic[Item, Result]):
    """``await coalescer.submit(items)`` → one result per item, in order.

    ``call(items)`` must answer one result per item, in order. When nothing is in flight, a
    submit goes out at once (or after ``window`` seconds, to let a burst gather); while a call is
    in flight, new submits wait and then go together in the next call, up to ``max_batch`` items
    per call. A submit is never split across calls, so one larger than ``max_batch`` goes alone.
    So there is no timer under light load, and under heavy load the number of calls follows the
    load rather than the number of callers.

    If ``call`` raises, every caller of that batch gets the exception; later batches go on. A
    caller that went away (its ``submit`` was cancelled) does not disturb the others: its items
    are dropped if they have not gone out yet, and its share of the answer is ignored if they have.
    """

    def __init__(
        self,
        call: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        window: float = 0.0,
        max_batch: int | None = None,
    ) -> None:
        if window < 0:
            raise ValueError("window must be >= 0 seconds")
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be >= 1 (or None for no limit)")
        self._call = call
        self._window = window
        self._max_batch = max_batch
        self._pending: deque[_Waiter[Item, Result]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """The results for ``items``, after the call that carried them."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Result]] = loop.create_future()
        self._pending.append(_Waiter(list(items), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def submit_one(self, item: Item) -> Result:
        """The result for one item."""
        (result,) = await self.submit([item])
        return result

    def _take(self) -> list[_Waiter[Item, Result]]:
        """The next batch: waiting submits in arrival order, up to ``max_batch`` items."""
        taken: list[_Waiter[Item, Result]] = []
        size = 0
        while self._pending:
            waiter = self._pending[0]
            if waiter.future.done():  # cancelled before its items went out: nobody wants them
                self._pending.popleft()
                continue
            if taken and self._max_batch is not None and size + len(waiter.items) > self._max_batch:
                break
            taken.append(self._pending.popleft())
            size += len(waiter.items)
        return taken

    async def _drain(self) -> None:
        """Run calls until nothing waits; the one task that calls ``call`` at a time."""
        taken: list[_Waiter[Item, Result]] = []
        try:
            if self._window > 0:
                await asyncio.sleep(self._window)
            while self._pending:
                taken = self._take()
                await self._run(taken)
                taken = []
        except asyncio.CancelledError:
            # The loop is shutting down: nobody will answer these callers, so do not leave them
            # waiting for ever.
            for waiter in (*taken, *self._pending):
                waiter.future.cancel()
            self._pending.clear()
            raise

    async def _run(self, taken: list[_Waiter[Item, Result]]) -> None:
        if not taken:  # every waiter went away
            return
        items = [item for waiter in taken for item in waiter.items]
        try:
            results = list(await self._call(items))
            if len(results) != len(items):
                raise ValueError(f"coalesced call answered {len(results)} results for {len(items)} items")
        except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
            for waiter in taken:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            return
        start = 0
        for waiter in taken:
            end = start + len(waiter.items)
            if not waiter.future.done():
                waiter.future.set_result(results[start:end])
            start = end
