"""Contacts a tenant must not send to: addresses that bounced or complained, numbers that texted STOP.

A suppression names a contact (an email address, lower-cased; an E.164 number), why (``reason``:
``bounced``, ``complained``, ``stop``, or ``manual`` from the API) and, for an SMS STOP, the
sending number it was texted to: a STOP holds for that sender only (the carriers' rule: a user
stops one program, not every number of the business); every other reason holds for any sender.
A notification to a suppressed contact ends ``suppressed`` with that reason, never sent.

A contact's notifications may live on any shard (shards go by user, not by contact), so every
shard keeps the whole list (documents of kind ``suppression``, ``herald.documents``) and the API
changes it on all of them. Pure: storage is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from herald.documents import Documents

KIND = "suppression"
#: The "tenant" of an SMS STOP: it holds for whoever sends from the number that was texted.
EVERY_TENANT = "*"
BOUNCED, COMPLAINED, STOP, MANUAL = "bounced", "complained", "stop", "manual"
REASONS = frozenset({BOUNCED, COMPLAINED, STOP, MANUAL})


def contact_key(contact: str) -> str:
    """How a contact is compared: an email address lower-cased, a number as given (E.164)."""
    return contact.strip().lower()


@dataclass(frozen=True, slots=True)
class Suppression:
    contact: str
    reason: str
    at: float
    #: The sending number an SMS STOP was texted to ("" = it holds for every sender).
    sender: str = ""

    @property
    def key(self) -> str:
        return f"{self.contact}|{self.sender}"

    def public(self) -> dict[str, Any]:
        return {"contact": self.contact, "reason": self.reason, "at": self.at,
                "sender": self.sender or None}

    def to_json(self) -> str:
        return orjson.dumps(self.public()).decode()

    @classmethod
    def from_json(cls, text: str) -> Suppression:
        data = orjson.loads(text)
        return cls(str(data["contact"]), str(data["reason"]), float(data["at"]),
                   str(data.get("sender") or ""))


class SuppressionList:
    """One shard's copy of every tenant's list, in memory, written through to its documents."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents
        self._by_tenant: dict[str, dict[str, Suppression]] = {}
        for (tenant, _), text in documents.load_all(KIND).items():
            entry = Suppression.from_json(text)
            self._by_tenant.setdefault(tenant, {})[entry.key] = entry

    def add(self, tenant: str, entry: Suppression, now: float) -> None:
        self._documents.save(KIND, tenant, entry.key, entry.to_json(), now)
        self._by_tenant.setdefault(tenant, {})[entry.key] = entry

    def remove(self, tenant: str, contact: str, now: float, sender: str | None = None) -> int:
        """Lift the contact's suppressions (those for ``sender`` only, if given); how many."""
        contact = contact_key(contact)
        kept = self._by_tenant.get(tenant, {})
        gone = [e for e in kept.values() if e.contact == contact
                and (sender is None or e.sender == sender)]
        for entry in gone:
            self._documents.save(KIND, tenant, entry.key, None, now)
            del kept[entry.key]
        return len(gone)

    def refusal(self, tenant: str, contact: str | None, sender: str | None) -> str | None:
        """Why ``contact`` must not get a message from ``sender`` (a reason), or None."""
        if not self._by_tenant or contact is None:
            return None
        contact = contact_key(contact)
        for kept in (self._by_tenant.get(tenant), self._by_tenant.get(EVERY_TENANT)):
            if kept:
                entry = kept.get(f"{contact}|") or (
                    kept.get(f"{contact}|{sender}") if sender else None)
                if entry is not None:
                    return entry.reason
        return None

    def of(self, tenant: str) -> Iterator[Suppression]:
        """The tenant's suppressions and the STOPs of every sender, newest first."""
        entries = [*self._by_tenant.get(tenant, {}).values(),
                   *self._by_tenant.get(EVERY_TENANT, {}).values()]
        return iter(sorted(entries, key=lambda e: -e.at))
