"""Requester callbacks: a final state becomes a durable WEBHOOK record to POST to ``callback_url``.

The record is queued in the same flush as the final state it reports, so the callback is as
durable, retried and dead-lettered as any notification. Its tag is ``<tag>.<status>`` (see
``callback_tag``): one callback per final state, each stored, even after a dead letter is retried.
"""

from __future__ import annotations

from herald.attempt import REVIVED
from herald.channels import Channel
from herald.record import Record

#: How long a requester's endpoint may stay unreachable before its callback is given up.
CALLBACK_TTL_SECONDS = 3 * 86400
CALLBACK_TYPE = "HERALD_CALLBACK"
#: How often a callback may be held back without an attempt (its endpoint's breaker open, a
#: rate limit) before it ends ``dead``: a dead endpoint's callbacks do not wait out their TTL.
CALLBACK_MAX_DEFERRALS = 50
#: The longest one deferral of a callback waits: with the budget above, a callback is deferred
#: for at most about four hours in all.
CALLBACK_MAX_DEFER_SECONDS = 300.0


def deferral_budget_spent(record: Record) -> bool:
    """Whether a callback has been deferred as often as it may be (``CALLBACK_MAX_DEFERRALS``)."""
    return record.channel is Channel.WEBHOOK and record.deferrals >= CALLBACK_MAX_DEFERRALS


def defer_seconds(record: Record, seconds: float) -> float:
    """How long ``record`` waits when deferred for ``seconds`` (a callback's wait is capped)."""
    if record.channel is Channel.WEBHOOK:
        return min(seconds, CALLBACK_MAX_DEFER_SECONDS)
    return seconds


def callback_url(record: Record) -> str | None:
    """Where this notification's final states are reported, if anywhere."""
    if record.channel is Channel.WEBHOOK:
        return None  # a callback does not report on itself
    url = (record.payload.get("requester") or {}).get("callback_url")
    return str(url) if url else None


def callback_tag(record: Record) -> str:
    """``<tag>.<status>``, and ``.<n>`` after the n-th revival of a dead letter, so each final
    state gets its own durable record (and its own ``webhook-id``)."""
    revivals = sum(1 for entry in record.history if entry.outcome == REVIVED)
    suffix = f".{revivals}" if revivals else ""
    return f"{record.tag}.{record.status.value}{suffix}"


def callback_record(record: Record, url: str, seq: int, now: float) -> Record:
    """The WEBHOOK record that POSTs ``record``'s current (final) state to ``url``."""
    return Record(
        tag=callback_tag(record), tenant=record.tenant, type=CALLBACK_TYPE,
        channel=Channel.WEBHOOK, priority=record.priority, seq=seq, uid=record.uid,
        recipient=url, idempotency_key=None, created_at=now,
        expires_at=now + CALLBACK_TTL_SECONDS,
        payload={"url": url, "body": {"event": "notification.status", **record.public()}},
        updated_at=now,
    )
