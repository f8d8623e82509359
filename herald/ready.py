"""Ready queues of one shard: one priority heap per lane, with counts that answer positions.

Within a lane, higher priority leaves first, then acceptance order (``seq``). Removing an entry
is lazy: a record that leaves (leased, cancelled) is dropped from the membership set and its
heap entry is skipped when it surfaces.

A shard holds tens of thousands of entries, so each is small: a heap entry is one tuple
(sharing the record's ``seq`` and tag), and a member's lane and priority are one small int
(its lane's number × ``LEVELS`` + its priority), not a tuple and a ``Lane`` of its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from herald.channels import Lane
from herald.priority import MAX_PRIORITY

LEVELS = MAX_PRIORITY + 1


class ReadyQueues:
    def __init__(self) -> None:
        self._heaps: dict[Lane, list[tuple[int, int, str]]] = {}
        self._counts: dict[Lane, list[int]] = {}
        #: Every lane seen, by number, and its number.
        self._lanes: list[Lane] = []
        self._numbers: dict[Lane, int] = {}
        #: tag → its lane's number × LEVELS + its priority.
        self._members: dict[str, int] = {}

    def push(self, lane: Lane, priority: int, seq: int, tag: str) -> None:
        if tag in self._members:
            return
        number = self._numbers.get(lane)
        if number is None:
            number = self._numbers[lane] = len(self._lanes)
            self._lanes.append(lane)
            self._heaps[lane], self._counts[lane] = [], [0] * LEVELS
        heapq.heappush(self._heaps[lane], (-priority, seq, tag))
        self._counts[lane][priority] += 1
        self._members[tag] = number * LEVELS + priority

    def remove(self, tag: str) -> None:
        """``tag`` leaves its lane (its heap entry goes stale)."""
        member = self._members.pop(tag, None)
        if member is not None:
            number, priority = divmod(member, LEVELS)
            self._counts[self._lanes[number]][priority] -= 1

    def __contains__(self, tag: str) -> bool:
        return tag in self._members

    def pop(self, lane: Lane, accept: Callable[[str], bool],
            floor: int = 0) -> Iterator[str]:
        """Tags of ``lane`` best first, each removed as it is yielded; ``accept`` skips strays.
        Stops before the first tag of a priority below ``floor``."""
        heap = self._heaps.get(lane)
        while heap:
            if -heap[0][0] < floor:
                return
            _, _, tag = heapq.heappop(heap)
            if tag not in self._members or not accept(tag):
                continue
            self.remove(tag)
            yield tag

    def count(self, lane: Lane, priority: int) -> int:
        """How many wait in ``lane`` at exactly ``priority``."""
        counts = self._counts.get(lane)
        return counts[priority] if counts else 0

    def ahead(self, lane: Lane, priority: int) -> int:
        """How many wait in ``lane`` at ``priority`` or higher."""
        counts = self._counts.get(lane)
        return sum(counts[priority:]) if counts else 0

    def clear(self) -> None:
        self._heaps.clear()
        self._counts.clear()
        self._lanes.clear()
        self._numbers.clear()
        self._members.clear()
