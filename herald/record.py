"""One notification as the queue keeps it: identity, routing, state and attempt history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUEUED, SENDING, RETRYING = "queued", "sending", "retrying"
SENT, DELIVERED, FAILED, DEAD, CANCELLED = "sent", "delivered", "failed", "dead", "cancelled"
#: States in which the queue is done with a notification (``sent`` may still get a receipt).
FINAL = frozenset({SENT, DELIVERED, FAILED, DEAD, CANCELLED})
#: States from which the queue hands a notification out (``retrying`` once ``not_before`` passed).
WAITING = frozenset({QUEUED, RETRYING})


@dataclass(slots=True)
class Record:
    tag: str
    tenant: str
    type: str
    channel: str
    priority: int
    seq: int
    uid: str
    recipient: str | None
    idempotency_key: str | None
    created_at: float
    expires_at: float
    payload: dict[str, Any]
    status: str = QUEUED
    attempts: int = 0
    not_before: float = 0.0
    lease_until: float = 0.0
    updated_at: float = 0.0
    provider_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def new(cls, notification: dict[str, Any], seq: int) -> Record:
        """From a validated notification (``herald.models.validate_notification``)."""
        return cls(
            tag=notification["tag"], tenant=notification["tenant"], type=notification["type"],
            channel=notification["channel"], priority=notification["priority"], seq=seq,
            uid=notification["uid"], recipient=notification.get("recipient"),
            idempotency_key=notification.get("idempotency_key"),
            created_at=notification["created_at"], expires_at=notification["expires_at"],
            payload=notification["payload"], updated_at=notification["created_at"],
        )

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def delivery(self) -> dict[str, Any]:
        """What a channel actor needs to deliver this notification once."""
        return {
            "tag": self.tag, "tenant": self.tenant, "type": self.type, "channel": self.channel,
            "priority": self.priority, "uid": self.uid, "recipient": self.recipient,
            "attempt": self.attempts + 1, "lease": self.lease_until, "created_at": self.created_at,
            "expires_at": self.expires_at, "payload": self.payload,
        }

    def public(self) -> dict[str, Any]:
        """The status view the API returns (no tenant, no raw payload)."""
        details = self.payload.get("details", {})
        return {
            "tag": self.tag, "status": self.status, "type": self.type, "channel": self.channel,
            "priority": self.priority, "attempts": self.attempts,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "not_before": self.not_before if self.status == RETRYING else None,
            "provider_id": self.provider_id,
            "bill_to": details.get("bill_to"),
            "history": list(self.history),
        }
