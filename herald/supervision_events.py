"""What the Supervisor's state machine (``herald.supervision``) is about, is told and answers:
typed member ids and states, the events the Supervisor actor reports and the actions it carries
out. Plain values: they never cross Ray, but they are the whole vocabulary between the actor
and its decisions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from herald.actor_names import Pool, actor_name, pool_key
from herald.channels import Channel
from herald.metrics import ShardStats
from herald.pool_views import ChannelPing

#: The shards' pool in ``restarts`` (and the ``herald_actor_restarts`` metric).
QUEUE_LABEL = "queue"


class MemberState(str, enum.Enum):
    """Where a member is in its life (``herald.supervision`` says what each state means)."""

    STARTING = "starting"
    PLACING = "placing"
    READY = "ready"
    DRAINING = "draining"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class MemberId:
    """One actor the Supervisor keeps: actor ``index`` of ``pool``. A queue process is named
    after the first shard it hosts (``herald.sharding.shard_hosts``)."""

    pool: Pool
    index: int

    @property
    def channel(self) -> Channel | None:
        return self.pool if isinstance(self.pool, Channel) else None

    @property
    def name(self) -> str:
        """``shard-0``, ``email-1``: its key in ``SupervisorView.pids``."""
        return f"{pool_key(self.pool)}-{self.index}"

    @property
    def actor(self) -> str:
        """Its Ray name (``herald-email-1``)."""
        return actor_name(self.pool, self.index)

    @property
    def label(self) -> str:
        """Its pool in ``restarts``: ``queue`` or the channel's key."""
        return QUEUE_LABEL if self.channel is None else pool_key(self.pool)


# ---- events: what happened ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckRound:
    """A health round starts. ``wait``: also wait this long for the first answer of members that
    never answered (``start``), instead of leaving their first ping running."""

    wait: float | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    member: MemberId
    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A ping raised: the actor died and Ray is restarting it."""

    member: MemberId


@dataclass(frozen=True, slots=True)
class TimedOut:
    member: MemberId
    waited: float


@dataclass(frozen=True, slots=True)
class RoundDone:
    """Every ping of a round came back (or timed out): time to size the pools, if due."""


@dataclass(frozen=True, slots=True)
class Measured:
    """The answer to ``Measure``: every shard's figures (None if one did not answer), and each
    asked member's ping (None if it did not answer)."""

    shards: Sequence[ShardStats] | None
    held: Mapping[MemberId, ChannelPing | None]


@dataclass(frozen=True, slots=True)
class Drained:
    member: MemberId


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Every actor goes; nothing is decided after it."""


Event = CheckRound | Answered | Failed | TimedOut | RoundDone | Measured | Drained | Shutdown


# ---- actions: what the actor is to do ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Start:
    member: MemberId


@dataclass(frozen=True, slots=True)
class Ping:
    """Ask for its pid and wait up to ``timeout``: ``Answered``, ``Failed`` or ``TimedOut``."""

    member: MemberId
    timeout: float


@dataclass(frozen=True, slots=True)
class Watch:
    """Ask for its pid without waiting: ``Answered`` or ``Failed`` whenever it comes; the call is
    dropped if the member is replaced or killed meanwhile."""

    member: MemberId


@dataclass(frozen=True, slots=True)
class Replace:
    """Kill it so that Ray restarts it."""

    member: MemberId
    waited: float


@dataclass(frozen=True, slots=True)
class Measure:
    """Ask the shards for their figures and ``members`` for their pings: ``Measured``."""

    members: tuple[MemberId, ...]


@dataclass(frozen=True, slots=True)
class Drain:
    """Let it finish what it leased, for up to ``seconds``, in the background: ``Drained``."""

    member: MemberId
    seconds: float


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill it for good (no restart)."""

    member: MemberId


Action = Start | Ping | Watch | Replace | Measure | Drain | Kill
