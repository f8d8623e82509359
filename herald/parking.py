"""Parked notifications: browser users who are offline wait here until they connect or expire.

Parking is not an attempt: a notification for an offline user waits (status ``queued``) until
the user's gateway reports a connection (``release``) or its TTL passes (``expired``).
"""

from __future__ import annotations

import heapq

from herald.record import Record


class Parking:
    def __init__(self) -> None:
        self._by_user: dict[tuple[str, str], set[str]] = {}
        self._owner: dict[str, tuple[str, str]] = {}
        self._expiry: list[tuple[float, str]] = []

    def park(self, record: Record) -> None:
        user = (record.tenant, record.uid)
        self._by_user.setdefault(user, set()).add(record.tag)
        self._owner[record.tag] = user
        heapq.heappush(self._expiry, (record.expires_at, record.tag))

    def release(self, tenant: str, uid: str) -> set[str]:
        """The tags parked for this user (no longer parked)."""
        tags = self._by_user.pop((tenant, uid), set())
        for tag in tags:
            self._owner.pop(tag, None)
        return tags

    def expired(self, now: float) -> list[str]:
        """Tags still parked whose TTL has passed (no longer parked)."""
        out = []
        while self._expiry and self._expiry[0][0] <= now:
            _, tag = heapq.heappop(self._expiry)
            user = self._owner.pop(tag, None)
            if user is None:
                continue  # released (or expired) already: a stale heap entry
            tags = self._by_user[user]
            tags.discard(tag)
            if not tags:
                del self._by_user[user]
            out.append(tag)
        return out

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None
