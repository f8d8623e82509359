"""Browser sends awaiting their ack: found by user and tag when the ack comes, by deadline when not.

The browser gateway's bookkeeping without sockets, futures or a clock of its own. A send is
``expect``-ed with a ticket (the gateway's future) before its frame is written, so an ack that
overtakes the writer is not lost, and its clock starts once the frame is written
(``start_clock``): time spent waiting for the user's earlier frames is not the browser's. It
then leaves exactly once: acked by its own user (``ack``; no other user's key finds it), dropped
with its user's last connection (``drop``), past its deadline (``expire``), or withdrawn
(``withdraw``: not written, or cancelled). One timeout for every send and clocks started in
time order make deadlines come in the order clocks started: a deque replaces a timer per send,
and the gateway keeps one timer, at ``next_deadline``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["AwaitingAcks", "Waiting"]

User = TypeVar("User", bound=Hashable)
Ticket = TypeVar("Ticket")


class Waiting(Generic[User, Ticket]):
    """One send awaiting its ack: the handle ``expect`` gives back."""

    __slots__ = ("deadline", "settled", "tag", "ticket", "user")

    def __init__(self, user: User, tag: str, ticket: Ticket) -> None:
        self.user, self.tag, self.ticket = user, tag, ticket
        self.deadline: float | None = None  # until its frame is written
        self.settled = False


class AwaitingAcks(Generic[User, Ticket]):
    """Sends to users' connections, each waiting for that user's ack of its tag."""

    def __init__(self, ack_timeout: float) -> None:
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        self.ack_timeout = ack_timeout
        self._by_user: dict[User, dict[str, list[Waiting[User, Ticket]]]] = {}
        #: Sends whose clock started, in that order, hence of deadline; settled ones leave lazily.
        self._by_deadline: deque[Waiting[User, Ticket]] = deque()
        self._count = 0

    def __len__(self) -> int:
        """Sends still waiting (their frame written or about to be)."""
        return self._count

    def expect(self, user: User, tag: str, ticket: Ticket) -> Waiting[User, Ticket]:
        """``ticket``'s send of ``tag`` to ``user`` awaits an ack; no deadline yet."""
        waiting = Waiting(user, tag, ticket)
        self._by_user.setdefault(user, {}).setdefault(tag, []).append(waiting)
        self._count += 1
        return waiting

    def start_clock(self, waiting: Waiting[User, Ticket], now: float) -> None:
        """The frame is written: the ack is due by ``now + ack_timeout``. ``now`` never goes
        back from one call to the next (a monotonic clock). Nothing if it left already."""
        if waiting.settled or waiting.deadline is not None:
            return
        waiting.deadline = now + self.ack_timeout
        self._by_deadline.append(waiting)

    def ack(self, user: User, tag: str) -> list[Ticket]:
        """``user`` acked ``tag``: the tickets of every send of it to them (a tag sent twice is
        acked once); none for a tag of another user or one not waiting."""
        tags = self._by_user.get(user)
        if tags is None:
            return []
        entries = tags.pop(tag, None)
        if entries is None:
            return []
        if not tags:
            del self._by_user[user]
        return self._settle(entries)

    def drop(self, user: User) -> list[Ticket]:
        """``user``'s last connection closed: the tickets of everything they had not acked."""
        tags = self._by_user.pop(user, None)
        if tags is None:
            return []
        return self._settle([waiting for entries in tags.values() for waiting in entries])

    def withdraw(self, waiting: Waiting[User, Ticket]) -> None:
        """Forget a send (not written, or cancelled); nothing if it left already."""
        if not waiting.settled:
            self._unindex(waiting)
            self._settle([waiting])

    def expire(self, now: float) -> list[Ticket]:
        """The tickets whose deadline is ``now`` or earlier, oldest first."""
        expired: list[Waiting[User, Ticket]] = []
        queue = self._by_deadline
        while queue and (queue[0].settled or queue[0].deadline <= now):  # type: ignore[operator]
            waiting = queue.popleft()
            if not waiting.settled:
                self._unindex(waiting)
                expired.append(waiting)
        return self._settle(expired)

    def next_deadline(self) -> float | None:
        """When the oldest written send still waiting expires; None when none does."""
        queue = self._by_deadline
        while queue and queue[0].settled:
            queue.popleft()
        return queue[0].deadline if queue else None

    def _unindex(self, waiting: Waiting[User, Ticket]) -> None:
        tags = self._by_user[waiting.user]
        entries = tags[waiting.tag]
        entries.remove(waiting)
        if not entries:
            del tags[waiting.tag]
            if not tags:
                del self._by_user[waiting.user]

    def _settle(self, entries: list[Waiting[User, Ticket]]) -> list[Ticket]:
        for waiting in entries:
            waiting.settled = True
        self._count -= len(entries)
        return [waiting.ticket for waiting in entries]
