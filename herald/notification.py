"""A validated notification: what intake hands to a queue shard, and what the shard answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herald.channels import Channel
from herald.wire import compact


@compact
@dataclass(frozen=True, slots=True)
class Notification:
    """One notification that passed intake's validation, tagged and routed to its shard.

    ``payload`` is the client's JSON as validated (aliases kept, ``None`` fields dropped):
    templates render against it, and the status API never returns it.
    """

    tag: str
    shard: int
    tenant: str
    type: str
    category: str
    channel: Channel
    priority: int
    uid: str
    #: The client's ``user.mq-uuid-btag``: the same key twice (per tenant) is accepted once.
    idempotency_key: str | None
    #: The address the channel delivers to (email, E.164 number); None for BROWSER.
    recipient: str | None
    created_at: float
    expires_at: float
    payload: dict[str, Any]
    #: Approximate bytes of ``payload`` as stored (what the queue's byte limit counts).
    size: int = 0
    #: Not sent before this (``details.send_at``, epoch seconds); 0.0: at once.
    not_before: float = 0.0


@compact
@dataclass(frozen=True, slots=True)
class Accepted:
    """A shard's answer for one notification: its tag, its place in line, and whether it was
    already there (a retried call or a repeated idempotency key: nothing new was queued)."""

    tag: str
    pos: int
    duplicate: bool = False
