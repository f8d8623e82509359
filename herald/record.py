"""One notification as the queue keeps it: identity, routing, state and attempt history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herald.attempt import Attempt
from herald.channels import Channel
from herald.delivery import Delivery
from herald.notification import Notification
from herald.status import FINAL, Status


@dataclass(slots=True)
class Record:
    tag: str
    tenant: str
    type: str
    channel: Channel
    priority: int
    seq: int
    uid: str
    recipient: str | None
    idempotency_key: str | None
    created_at: float
    expires_at: float
    payload: dict[str, Any]
    status: Status = Status.QUEUED
    attempts: int = 0
    not_before: float = 0.0
    lease_until: float = 0.0
    updated_at: float = 0.0
    provider_id: str | None = None
    history: list[Attempt] = field(default_factory=list)
    #: Names the current lease (``Delivery.lease``); an outcome carrying another is late.
    lease_token: float = 0.0
    #: Times this notification was held back without an attempt (``defer``: a rate limit or
    #: every breaker open); a requester callback has a budget of them (``herald.requester_callbacks``).
    deferrals: int = 0
    #: Where a waiting record kept on disk only waits outside the line (``herald.held``):
    #: ``"deferred"`` until ``not_before``, ``"parked"`` until its user connects; None in line.
    held: str | None = None
    #: Bytes of the stored payload: what the queue limit by bytes counts (not persisted).
    size: int = field(default=0, compare=False)

    @classmethod
    def new(cls, notification: Notification, seq: int) -> Record:
        """From a validated notification (``herald.models.validate_notification``)."""
        n = notification
        return cls(
            tag=n.tag, tenant=n.tenant, type=n.type, channel=n.channel, priority=n.priority,
            seq=seq, uid=n.uid, recipient=n.recipient, idempotency_key=n.idempotency_key,
            created_at=n.created_at, expires_at=n.expires_at, payload=n.payload,
            updated_at=n.created_at, size=n.size, not_before=n.not_before,
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def delivery(self) -> Delivery:
        """What a channel actor needs to deliver this notification once, under this lease."""
        return Delivery(
            tag=self.tag, tenant=self.tenant, type=self.type, channel=self.channel,
            priority=self.priority, uid=self.uid, recipient=self.recipient,
            attempt=self.attempts + 1, lease=self.lease_token, created_at=self.created_at,
            expires_at=self.expires_at, payload=self.payload,
        )

    def public(self) -> dict[str, Any]:
        """The status view the API returns (no tenant, no raw payload)."""
        details = self.payload.get("details", {})
        return {
            "tag": self.tag, "status": self.status.value, "type": self.type,
            "channel": self.channel.value, "priority": self.priority, "attempts": self.attempts,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            # A retry's time, or when a notification sent later (or held back) is due.
            "not_before": self.not_before if self.status is Status.RETRYING or (
                self.status is Status.QUEUED and self.not_before > self.updated_at) else None,
            "provider_id": self.provider_id,
            # Why it was never sent (``suppressed``) or came back (``bounced``).
            "reason": self.history[-1].code if self.history and self.status in (
                Status.SUPPRESSED, Status.BOUNCED) else None,
            "bill_to": details.get("bill_to"),
            "history": [entry.to_dict() for entry in self.history],
        }
