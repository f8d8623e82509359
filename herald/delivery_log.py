"""The delivery log: one row per event of a notification, for analytics.

A shard records ``accepted`` when it takes a notification, ``attempt`` for each delivery attempt
(its outcome in ``status``) and ``final`` when it reaches a final state (``sent``, ``delivered``,
``failed``, ``dead``, ``cancelled``; a receipt that turns ``sent`` into ``delivered`` adds
another ``final``). Events are written to the shard's storage in the same transaction as the
state change they describe, each with a per-shard id, so a crash can neither lose an
acknowledged event nor make one up; the log shipper copies them into segment files and the
rollup counts each (shard, id) once.
"""

from __future__ import annotations

from dataclasses import dataclass

from herald.attempt import Attempt
from herald.channels import Channel
from herald.record import Record

ACCEPTED, ATTEMPT, FINAL = "accepted", "attempt", "final"

@dataclass(frozen=True, slots=True)
class LogEvent:
    tag: str
    tenant: str
    type: str
    #: Lower-case channel: ``email``, ``sms``, ``fax``, ``browser`` (``webhook`` for callbacks).
    channel: str
    event: str
    #: ``accepted``: ``queued``; ``attempt``: the outcome kind (``sent``, ``retry``, ``failed``…);
    #: ``final``: the final status.
    status: str
    provider: str | None
    attempt: int
    error_code: str | None
    requester_service: str | None
    priority: int
    #: Seconds since the epoch (UTC).
    at: float
    #: Milliseconds from acceptance to this event.
    latency_ms: float


def log_event(record: Record, event: str, status: str, entry: Attempt | None,
              now: float) -> LogEvent | None:
    """The row for ``event`` of ``record`` (None for requester callbacks, Herald's own traffic)."""
    if record.channel is Channel.WEBHOOK:
        return None
    if entry is None and event == FINAL and record.history:
        entry = record.history[-1]  # a dead letter: its last attempt says why
    requester = record.payload.get("requester") or {}
    return LogEvent(
        tag=record.tag, tenant=record.tenant, type=record.type, channel=record.channel.key,
        event=event, status=status, provider=entry.provider if entry else None,
        attempt=record.attempts, error_code=entry.code if entry else None,
        requester_service=requester.get("service") if isinstance(requester, dict) else None,
        priority=record.priority, at=now, latency_ms=max(0.0, (now - record.created_at) * 1000),
    )
