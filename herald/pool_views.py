"""What the pools' actors answer about themselves: a channel actor's ping, the Supervisor's view.

Typed values, because they cross Ray: the Supervisor's health loop, ``/metrics``, the admin
overview and ``/v1/browser-endpoint`` read them by attribute, never by key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from herald.metrics import ChannelActorStats

__all__ = ["ChannelPing", "SupervisorView"]


@dataclass(frozen=True, slots=True)
class ChannelPing:
    """A channel actor's health answer (every second, from the Supervisor)."""

    pid: int
    channel: str
    index: int
    started_at: float
    #: Sends being made now (normal and express slots).
    inflight: int = 0
    #: Leased and not yet handed back: a pool with any is not idle (``herald.pool_sizing``).
    sending: int = 0
    #: Leased sends waiting for a provider connection: backlog held here, not at the shards.
    waiting: int = 0
    breakers: Mapping[str, str] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    #: Where browsers connect to this actor's gateway (browser pools only, once listening).
    endpoint: str | None = None

    def stats(self) -> ChannelActorStats:
        return ChannelActorStats(self.channel, self.index, dict(self.counters),
                                 dict(self.breakers))


@dataclass(frozen=True, slots=True)
class SupervisorView:
    """The Supervisor's members as it sees them (``describe``)."""

    #: Member name (``shard-0``, ``email-1``…) → pid of each actor that has answered.
    pids: Mapping[str, int] = field(default_factory=dict)
    #: Pool (``queue``, ``email``…, ``supervisor``) → restarts seen since it started.
    restarts: Mapping[str, int] = field(default_factory=dict)
    #: Pool → actors in it now.
    pools: Mapping[str, int] = field(default_factory=dict)
    #: Actors a shrink took out of their pool, finishing their sends before they go.
    draining: Sequence[str] = ()
    #: Health rounds done since it started (the loop goes on during a drain).
    health_rounds: int = 0
