"""One entry of a notification's history: a delivery attempt, a receipt, an expiry or a revival."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: What an entry records besides an outcome kind: the queue's own events.
EXPIRED, REVIVED = "expired", "revived"


@dataclass(frozen=True, slots=True)
class Attempt:
    """``outcome`` is an outcome kind (``sent``, ``retry``, ``failed``…), ``revived`` for a dead
    letter sent again, or ``failed`` with ``error="expired"`` when the TTL ran out while waiting.

    ``attempt`` is the attempt number it belongs to (None for queue events that are not
    attempts); ``receipt`` marks a provider's later receipt for an attempt that was ``sent``.
    """

    at: float
    outcome: str
    provider: str | None = None
    attempt: int | None = None
    error: str | None = None
    code: str | None = None
    provider_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    receipt: bool = False

    @classmethod
    def expired(cls, at: float) -> Attempt:
        return cls(at=at, outcome="failed", error=EXPIRED)

    @classmethod
    def revived(cls, at: float) -> Attempt:
        return cls(at=at, outcome=REVIVED)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the record and shown by the status API."""
        out: dict[str, Any] = {"attempt": self.attempt, "at": self.at, "provider": self.provider,
                               "outcome": self.outcome, "error": self.error, "code": self.code}
        if self.provider_id:
            out["provider_id"] = self.provider_id
        if self.info:
            out["info"] = self.info
        if self.receipt:
            out["receipt"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            at=float(data["at"]), outcome=str(data["outcome"]), provider=data.get("provider"),
            attempt=data.get("attempt"), error=data.get("error"), code=data.get("code"),
            provider_id=data.get("provider_id"), info=dict(data.get("info") or {}),
            receipt=bool(data.get("receipt", False)),
        )
