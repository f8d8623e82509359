"""One exchange between a channel actor and a queue shard: outcomes back, leases kept, work out.

A channel actor used to make three kinds of call to each shard — ``ack`` for outcomes,
``renew`` for sends still in flight, ``lease`` for new work — each paying Ray's per-call cost
and a commit of its own for a handful of notifications. An ``Exchange`` carries all three at
once, so at load one call (and one commit) moves hundreds: the shard applies the outcomes,
then the renewals, then leases up to ``want`` of the lane (of ``min_priority`` or higher: the
express slots), waiting up to ``wait`` seconds for the first one when it has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.channels import Lane
from herald.delivery import Delivery
from herald.outcome import Outcome
from herald.queue import LeaseRenewal

__all__ = ["Exchange", "ExchangeAnswer"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a channel actor hands a shard in one call."""

    lane: Lane
    outcomes: list[Outcome] = field(default_factory=list)
    renewals: list[LeaseRenewal] = field(default_factory=list)
    #: How many new deliveries the actor has room for (0: only hand back).
    want: int = 0
    #: Seconds to wait for the first delivery when none is ready (a long poll; 0: answer now).
    wait: float = 0.0
    min_priority: int = 0

    def __post_init__(self) -> None:
        if self.want < 0 or self.wait < 0:
            raise ValueError("want and wait must be >= 0")


@dataclass(frozen=True, slots=True)
class ExchangeAnswer:
    """What the shard made of it: every change in it committed before it was answered."""

    leased: list[Delivery] = field(default_factory=list)
    #: Renewals that matched a lease still held (the others' sends are answered already).
    renewed: int = 0
    #: Outcomes that brought their notification to a final state.
    finished: int = 0
