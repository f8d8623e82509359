"""A delivery: one notification handed to a channel actor under a lease, with its lease token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herald.channels import Channel
from herald.wire import compact

#: Identifies one lease of one notification. An outcome carries the token of the lease it
#: answers, so a late answer to an expired lease cannot touch a newer one.
LeaseToken = float


@compact
@dataclass(frozen=True, slots=True)
class Delivery:
    """Everything a channel actor needs to deliver one notification once."""

    tag: str
    tenant: str
    type: str
    channel: Channel
    priority: int
    uid: str
    recipient: str | None
    #: This attempt's number (1 for the first).
    attempt: int
    lease: LeaseToken
    created_at: float
    expires_at: float
    payload: dict[str, Any]
