"""A browser user's catch-up: what the shard released for them goes out before anything newer.

When a user connects, the gateway asks their shard to release what was parked for them. Those
notifications come back through a lease, a round trip later; a newer notification of the same
user may already be inside the gateway (leased while the user was offline, its send running just
after the connection), and would overtake them. While a ``CatchUp`` runs, ``admit`` lets the
released tags through at once and holds every other send of the user until the released ones
have all gone out (or the gateway gives up waiting: ``finish``). Waiters are woken in the order
they came, so the frames keep the order ``send`` was called in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class CatchUp:
    def __init__(self, previous: CatchUp | None = None) -> None:
        """``previous``: a catch-up still running for the same user (a late park recorded while
        it ran): this one admits nothing before that one is over."""
        self._previous = previous
        self._known = asyncio.Event()  # the shard has said what it released
        self._over = asyncio.Event()  # all of it went out, or the gateway stopped waiting
        self._released: set[str] = set()

    @property
    def over(self) -> bool:
        return self._over.is_set()

    def released(self, tags: Iterable[str]) -> None:
        """What the shard released (in its order). Nothing: the catch-up is over at once."""
        self._released = set(tags)
        self._known.set()
        if not self._released:
            self._over.set()

    def finish(self) -> None:
        """Stop holding sends back (the released ones took too long, or the user left)."""
        self._known.set()
        self._over.set()

    async def wait_over(self) -> None:
        await self._over.wait()

    async def admit(self, tag: str) -> bool:
        """Wait until ``tag`` may go out; whether it is one of the released (a released one is
        never held behind sends parked later: it is older than they are)."""
        if self._previous is not None and not self._previous.over:
            await self._previous.wait_over()
        if not self._known.is_set():
            await self._known.wait()
        if tag in self._released:
            self._released.discard(tag)
            if not self._released:
                self._over.set()
            return True
        if not self._over.is_set():
            await self._over.wait()
        return False
