"""The states of a notification, and which of them are waiting, in flight or final."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """Where a notification is. A ``str`` enum: it compares, stores and serialises as its value."""

    #: Accepted and waiting for a channel actor (also: parked for an offline browser user).
    QUEUED = "queued"
    #: Leased to a channel actor: a delivery attempt is in flight.
    SENDING = "sending"
    #: The last attempt failed transiently; it waits for ``not_before``.
    RETRYING = "retrying"
    #: The provider took it (a receipt may still turn it into ``delivered`` or ``failed``).
    SENT = "sent"
    #: The recipient has it: a provider receipt or the browser's ack.
    DELIVERED = "delivered"
    #: Refused for good: invalid recipient, expired, permanent provider error.
    FAILED = "failed"
    #: The attempt budget is used up: a dead letter, which can be retried by API.
    DEAD = "dead"
    #: Cancelled by its sender before it left.
    CANCELLED = "cancelled"
    #: Never sent: its recipient does not want it (a preference, an unsubscribe) or cannot take
    #: it (a bounced address, a complaint, an SMS STOP); ``reason`` in its status says which.
    SUPPRESSED = "suppressed"
    #: Sent, then its mail came back: a delivery status notification said it failed for good.
    BOUNCED = "bounced"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self in FINAL


#: States in which the queue is done with a notification (``sent`` may still get a receipt).
FINAL = frozenset({Status.SENT, Status.DELIVERED, Status.FAILED, Status.DEAD, Status.CANCELLED,
                   Status.SUPPRESSED, Status.BOUNCED})
#: States from which the queue hands a notification out (``retrying`` once ``not_before`` passed).
WAITING = frozenset({Status.QUEUED, Status.RETRYING})
