"""A priority gate: at most ``capacity`` holders at once, waiters let in highest priority first.

A provider's connection pool (SMTP connections, an HTTP connector's sockets) admits a bounded
number of sends; the rest wait. ``asyncio.Semaphore`` and aiohttp's connector let waiters in first
come, first served, so an asap message queued behind hundreds of normal ones waits for all of
them. ``PriorityGate`` lets in the waiter with the highest priority first (FIFO among equals), so
an asap send goes out on the next free connection.

    async with gate.slot(message.priority):
        ...  # holds one of ``capacity`` slots

Cancellation-safe: a waiter cancelled before it was let in leaves the queue; one cancelled after
it was let in (but before it ran) passes its slot on, so no slot is ever lost. ``capacity`` may
change while in use (``resize``): growing lets waiters in at once, shrinking takes effect as
holders leave. Pure asyncio: no clock, no I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

__all__ = ["PriorityGate"]


class PriorityGate:
    """At most ``capacity`` concurrent holders; waiters admitted by priority, then arrival."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._held = 0
        self._waiting = 0
        #: (-priority, arrival, future): the heap's smallest is the next waiter to let in.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held(self) -> int:
        """Slots taken: by holders, and by waiters let in that have not run yet."""
        return self._held

    @property
    def waiting(self) -> int:
        """Waiters not let in yet."""
        return self._waiting

    def resize(self, capacity: int) -> None:
        """Change how many may hold a slot at once."""
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._admit()

    def slot(self, priority: int) -> _Slot:
        """Hold one slot for the ``async with`` block; waits (by ``priority``, higher first)
        while all are held."""
        return _Slot(self, priority)

    async def acquire(self, priority: int) -> None:
        """Take a slot, waiting behind every waiter of higher or equal priority that came first."""
        # Nobody waits while a slot is free (``_admit`` keeps it so): no one to jump ahead of.
        if self._held < self._capacity:
            self._held += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._arrivals), future))
        self._waiting += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # let in, then cancelled before running: hand the slot on
            else:
                future.cancel()  # ``_admit`` skips it
                self._waiting -= 1
            raise

    def release(self) -> None:
        """Give a slot back; the highest-priority waiter gets it."""
        if self._held <= 0:
            raise RuntimeError("PriorityGate released more often than acquired")
        self._held -= 1
        self._admit()

    def _admit(self) -> None:
        while self._held < self._capacity and self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():  # a cancelled waiter's entry is dropped here
                future.set_result(None)
                self._held += 1
                self._waiting -= 1


class _Slot:
    """``async with gate.slot(priority)``: a plain class, as it sits on every send's path."""

    __slots__ = ("_gate", "_priority")

    def __init__(self, gate: PriorityGate, priority: int) -> None:
        self._gate, self._priority = gate, priority

    async def __aenter__(self) -> None:
        await self._gate.acquire(self._priority)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._gate.release()
