"""A shard's users' settings at hand: every one it keeps, in memory, written through to its
documents (``herald.documents``, kind ``recipient``, keyed by uid).

What the shard asks when it accepts a notification (``refusal``, ``quiet_until``) is answered
from memory; ``put``/``forget`` are written to storage before memory changes, so a user's
settings that were answered as saved are on disk.
"""

from __future__ import annotations

from collections.abc import Collection

from herald.documents import Documents
from herald.recipients import Recipient, parse_recipient
from herald.record import Record

KIND = "recipient"
#: ``reason`` of a notification suppressed by its user's preferences.
PREFERENCE = "preference"
#: Categories whose notifications ignore preferences unless configured otherwise.
DEFAULT_REQUIRED = frozenset({"OTP"})


def categories(text: str) -> frozenset[str]:
    """``HERALD_REQUIRED_CATEGORIES`` (``OTP,SECURITY``) as a set; blank entries skipped."""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class RecipientBook:
    def __init__(self, documents: Documents, required: Collection[str] = DEFAULT_REQUIRED) -> None:
        self._documents = documents
        self._required = frozenset(required)
        self._kept = {user: Recipient.from_json(text)
                      for user, text in documents.load_all(KIND).items()}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, tenant: str, uid: str) -> Recipient | None:
        return self._kept.get((tenant, uid))

    def put(self, tenant: str, uid: str, recipient: Recipient, now: float) -> None:
        self._documents.save(KIND, tenant, uid, recipient.to_json(), now)
        self._kept[(tenant, uid)] = recipient

    def set_preference(self, tenant: str, uid: str, category: str, channel_key: str, on: bool,
                       now: float) -> Recipient:
        """The user's settings with one preference changed and the rest kept (a one-click
        unsubscribe), on disk before this returns: read and written in one call, so no other
        change to the user falls between. What a ``PUT /v1/users`` body could not say (a
        category over 64 characters, too many) is a ``ValidationError``: what is kept must
        load again (``Recipient.from_json``)."""
        current = self._kept.get((tenant, uid)) or Recipient()
        if current.preferences.get(category, {}).get(channel_key) is on:
            return current  # already so: nothing to write
        changed = parse_recipient(current.with_preference(category, channel_key, on).public())
        self.put(tenant, uid, changed, now)
        return changed

    def forget(self, tenant: str, uid: str, now: float) -> bool:
        """Drop the user's settings; whether there were any."""
        if (tenant, uid) not in self._kept:
            return False
        self._documents.save(KIND, tenant, uid, None, now)
        del self._kept[(tenant, uid)]
        return True

    def refusal(self, record: Record) -> str | None:
        """Why the record's user does not want it (``PREFERENCE``), or None."""
        recipient = self._kept.get((record.tenant, record.uid)) if self._kept else None
        if recipient is None:
            return None
        category = record.type.rsplit("_", 1)[0]
        if category in self._required or recipient.allows(category, record.channel.key):
            return None
        return PREFERENCE

    def quiet_until(self, record: Record, now: float) -> float | None:
        """When the user's quiet hours around ``now`` end, if the record must wait for it."""
        recipient = self._kept.get((record.tenant, record.uid)) if self._kept else None
        return None if recipient is None else recipient.quiet_until(now, record.priority)
