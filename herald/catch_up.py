"""A browser user's catch-up: what the shard released for them goes out before anything newer.

When a user connects (or a park of theirs is recorded while they are connected), the gateway asks
their shard to release what was parked for them. Those notifications come back through a lease,
a round trip later; a newer notification of the same user may already be inside the gateway
(leased while the user was offline, its send running just after the connection) and would
overtake them. While a ``CatchUp`` runs, ``admit`` lets the released tags through at once and
holds every other send of the user until every release asked for has answered and all it
released has gone out (or the gateway gives up waiting: ``finish``). A user has one catch-up at
a time: a release asked for while one runs joins it (``begin``). Waiters are woken in the order
they came, so frames keep the order ``send`` was called in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class CatchUp:
    def __init__(self) -> None:
        self._asked = 0  # releases asked for and not answered yet
        self._released: set[str] = set()  # released and not gone out yet
        self._over = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def over(self) -> bool:
        return self._over.is_set()

    def begin(self) -> None:
        """One more release is asked for: nothing newer goes out before it has answered."""
        self._asked += 1

    def released(self, tags: Iterable[str]) -> None:
        """A release answered with these tags (nothing, if it failed)."""
        self._asked = max(0, self._asked - 1)
        self._released.update(tags)
        self._settle()

    def finish(self) -> None:
        """Stop holding sends back (what was released took too long, or the user left)."""
        self._over.set()
        self._wake()

    async def wait_over(self) -> None:
        await self._over.wait()

    async def admit(self, tag: str) -> bool:
        """Wait until ``tag`` may go out; whether it is one of the released (a released one is
        never held behind anything: it is older than what waits)."""
        while True:
            if tag in self._released:
                self._released.discard(tag)
                self._settle()
                return True
            if self._over.is_set():
                return False
            changed = self._changed
            await changed.wait()  # a release answered, a released one went, or the end

    def _settle(self) -> None:
        if not self._asked and not self._released:
            self._over.set()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
