"""Herald's answers as typed, frozen values.

Each mirrors one JSON answer of Herald's API (``docs`` in Herald's README); fields Herald adds
later are ignored, so an older client keeps working against a newer Herald.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Where a notification is. A ``str`` enum: it compares and serialises as its value."""

    #: Accepted and waiting for its turn (also: held back until ``not_before``).
    QUEUED = "queued"
    #: A delivery attempt is in flight.
    SENDING = "sending"
    #: The last attempt failed transiently; it goes again at ``not_before``.
    RETRYING = "retrying"
    #: The provider took it (a receipt may still turn it into delivered or failed).
    SENT = "sent"
    #: The recipient has it: a provider receipt or the browser's acknowledgement.
    DELIVERED = "delivered"
    #: Refused for good: invalid recipient, expired, a permanent provider error.
    FAILED = "failed"
    #: Its attempts are used up: a dead letter, which ``retry`` sends again.
    DEAD = "dead"
    #: Cancelled before it left.
    CANCELLED = "cancelled"
    #: Never sent: the recipient does not want it or cannot take it (``reason`` says which).
    SUPPRESSED = "suppressed"
    #: Sent, then the mail came back for good (``reason``).
    BOUNCED = "bounced"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """Whether Herald is done with it (``sent`` may still get a receipt)."""
        return self in FINAL


FINAL = frozenset({Status.SENT, Status.DELIVERED, Status.FAILED, Status.DEAD, Status.CANCELLED,
                   Status.SUPPRESSED, Status.BOUNCED})


@dataclass(frozen=True, slots=True)
class Accepted:
    """A notification Herald has stored durably and queued."""

    tag: str
    #: Its place in its queue when it was accepted (1: next).
    pos: int
    #: True when its idempotency key had been used before: ``tag`` is the first one's, and
    #: nothing new was queued.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """One entry of a batch that was not queued, and why."""

    #: Its index in the batch.
    index: int
    code: str
    message: str
    #: Where it is wrong, e.g. ``notifications.3.details.content``.
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One entry of a notification's history: a delivery attempt, a receipt, an expiry, a revival."""

    at: float
    #: ``sent``, ``retry``, ``failed``, ``delivered``, ``revived``…
    outcome: str
    #: The attempt number (None for the queue's own events).
    attempt: int | None = None
    provider: str | None = None
    error: str | None = None
    #: The provider's code (an SMTP reply code, a Twilio error code…).
    code: str | None = None
    provider_id: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    #: A provider's later receipt for an attempt that was sent.
    receipt: bool = False


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification's status as Herald answers it (``status``, ``cancel``, ``retry``)."""

    tag: str
    status: Status
    #: ``<CATEGORY>_<CHANNEL>``, e.g. ``CM_EMAIL``.
    type: str
    #: ``EMAIL``, ``SMS``, ``FAX`` or ``BROWSER``.
    channel: str
    priority: int
    attempts: int
    created_at: float
    updated_at: float
    expires_at: float
    #: When a retry, a delayed send or the end of quiet hours is due; else None.
    not_before: float | None = None
    provider_id: str | None = None
    #: Why it was ``suppressed`` or ``bounced`` (``preference``, ``manual``, ``bounced``, ``stop``…).
    reason: str | None = None
    bill_to: str | None = None
    history: tuple[Attempt, ...] = ()

    @property
    def final(self) -> bool:
        return self.status.final


@dataclass(frozen=True, slots=True)
class BrowserToken:
    """A short-lived token a user's browser connects with (``herald.js``)."""

    token: str
    #: Epoch seconds.
    expires_at: float


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in the user's local time, ``HH:MM`` to ``HH:MM`` (may span midnight)."""

    start: str
    end: str


@dataclass(frozen=True, slots=True)
class UserSettings:
    """What a user wants: a time zone, quiet hours, and channels turned off per category.

    ``preferences`` maps a category (``CM`` of ``CM_EMAIL``) to channel (``email``, ``sms``,
    ``fax``, ``browser``) to on/off; what is not listed is on.
    """

    timezone: str | None = None
    quiet_hours: QuietHours | None = None
    preferences: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suppression:
    """A contact that gets nothing (from this tenant, or from one sending number)."""

    #: An email address (lower-cased) or an E.164 number.
    contact: str
    #: ``manual``, ``bounced``, ``complained`` or ``stop``.
    reason: str
    #: Epoch seconds.
    at: float
    #: For an SMS STOP: the number it was texted to (it holds for that sender only).
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class ShardDepth:
    """One queue shard's depth: lane (``EMAIL``, ``BROWSER.0``…) → state → count."""

    shard: int
    depth: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One notification of a user's inbox feed, rendered as the user sees it."""

    tag: str
    type: str
    channel: str
    status: Status
    priority: int
    title: str | None
    content: str | None
    created_at: float
    read: bool
    read_at: float | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of the feed, newest first; ``next`` is the cursor of the following page."""

    items: tuple[FeedItem, ...]
    #: The user's unread count (all of the feed, not only this page).
    unread: int
    next: str | None = None


@dataclass(frozen=True, slots=True)
class ReadCount:
    """After marking read: how many became read now, and how many remain unread."""

    read: int
    unread: int
