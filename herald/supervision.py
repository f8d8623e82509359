"""What the Supervisor decides, as a plain state machine: ``observe(event, now) -> actions``.

The Supervisor actor (``actors/supervisor.py``) keeps the Ray handles and carries out the actions
(start, ping, replace, drain, kill an actor); what comes of them comes back here as events (both
typed in ``herald.supervision_events``). No Ray and no clock: every ``observe`` is told the
time, so the tests drive it with a fake one.

Each member (a queue process, hosting a run of shards, or a channel actor: ``MemberId``) moves
through ``MemberState``:

- STARTING: created, or replaced before it ever answered; asked on the next round.
- PLACING: its first ping is out and has not come back. On a cluster, an actor a grown pool asked
  for may wait minutes for the node the autoscaler adds, so that ping is left running (it holds
  up neither the other checks nor the pool sizing) and the actor is taken for hung only after
  ``PLACEMENT_TIMEOUT``.
- READY: it has answered. Pinged every round; one that does not answer within
  ``HEALTH_TIMEOUT`` is replaced (killed so that Ray restarts it). Ray restarts a crashed actor by
  itself: a new pid in an answer counts a restart, and the ping wakes the new incarnation.
- DRAINING: a shrink took it out of its pool (neither checked as hung nor replaced any more); it
  finishes what it leased for ``drain_seconds`` before it is killed, in the background, so the
  health rounds go on meanwhile.
- DEAD: killed for good; an actor grown again under its name is a new one, not a restart.

A pool shrinks only when nothing waits and nothing is in flight (``herald.pool_sizing``), and is
sized from the shards' backlog and its actors' own figures every ``SIZE_INTERVAL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from herald.actor_names import SHARD_POOL, actor_name
from herald.channels import Channel
from herald.config import Settings
from herald.metrics import ShardStats
from herald.pool_sizing import PoolSizer, drain_seconds
from herald.pool_views import ChannelPing, SupervisorView
from herald.sharding import shard_hosts
from herald.supervision_events import (
    Action,
    Answered,
    CheckRound,
    Drain,
    Drained,
    Event,
    Failed,
    Kill,
    Measure,
    Measured,
    MemberId,
    MemberState,
    Ping,
    Replace,
    RoundDone,
    Shutdown,
    Start,
    TimedOut,
    Watch,
)

log = logging.getLogger("herald.supervisor")
#: A READY member that does not answer a ping within this is taken for hung and replaced.
HEALTH_TIMEOUT = 15.0
#: How long an actor that has never answered may wait to be placed (a new cluster node can take
#: minutes) before it is taken for hung and replaced.
PLACEMENT_TIMEOUT = 600.0
#: How long ``start`` waits for each actor's first answer.
START_TIMEOUT = 120.0
#: Pools are sized from the shards' backlog this often.
SIZE_INTERVAL = 2.0


@dataclass(slots=True)
class Member:
    """What the Supervision knows of one member."""

    state: MemberState = MemberState.STARTING
    #: The pid of the incarnation that answered last (None: not since it started or was replaced).
    pid: int | None = None
    #: PLACING: when its first ping went out.
    asked_at: float = 0.0


_IN_POOL = (MemberState.STARTING, MemberState.PLACING, MemberState.READY)


class Supervision:
    """The shards and channel pools, their members' states, restarts seen and pool sizes."""

    def __init__(self, queues: Sequence[int], pools: Mapping[Channel, int],
                 sizers: Mapping[Channel, PoolSizer], drain_for: float,
                 previous_life: bool = False) -> None:
        #: The queue processes, by the first shard each hosts; they are neither grown nor shrunk.
        self._queues = [MemberId(SHARD_POOL, first) for first in queues]
        #: Channel → actors in its pool (``0 .. size-1``); those past the size drain or are dead.
        self._sizes = dict(pools)
        self._sizers = dict(sizers)
        #: How long a member a shrink removed is drained before it is killed.
        self._drain_for = drain_for
        self._members: dict[MemberId, Member] = {}
        self._restarts: dict[str, int] = {"supervisor": 1} if previous_life else {}
        self._sized_at: float | None = None
        self._rounds = 0
        self._stopped = False

    def launch(self) -> list[Start]:
        """Start every member: the queue processes first (the channel actors are given their
        shards)."""
        self._members = {m: Member() for m in self._in_pools()}
        return [Start(m) for m in self._members]

    def observe(self, event: Event, now: float) -> list[Action]:
        if self._stopped:
            return []
        match event:
            case CheckRound(wait):
                return self._check(now, wait)
            case Answered(member, pid):
                self._answered(member, pid)
            case Failed(member):
                if self.state(member) is MemberState.PLACING:
                    self._members[member].state = MemberState.STARTING  # asked again next round
            case TimedOut(member, waited):
                if self.state(member) in _IN_POOL:
                    return self._replace(member, waited)
            case RoundDone():
                return self._round_done(now)
            case Measured(shards, held):
                return self._size(now, shards, held) if shards is not None else []
            case Drained(member):
                if self.state(member) is MemberState.DRAINING:
                    return self._kill(member)
            case Shutdown():
                kills = [a for m, r in list(self._members.items()) if r.state is not MemberState.DEAD
                         for a in self._kill(m)]
                self._stopped = True
                return kills
        return []

    # ---- queries -------------------------------------------------------------------------------

    def ready_channel_members(self) -> list[MemberId]:
        """Channel actors that have answered (not those waiting for a node, nor draining)."""
        return [m for m in self._in_pools()
                if m.channel is not None and self.state(m) is MemberState.READY]

    def state(self, member: MemberId) -> MemberState | None:
        found = self._members.get(member)
        return found.state if found is not None else None

    def view(self) -> SupervisorView:
        pids = {m.name: r.pid for m, r in self._members.items()
                if r.state is MemberState.READY and r.pid is not None}
        draining = sorted(m.actor for m, r in self._members.items()
                          if r.state is MemberState.DRAINING)
        pools = {channel.key: n for channel, n in self._sizes.items()}
        return SupervisorView(pids, dict(self._restarts), pools, draining, self._rounds)

    # ---- decisions -----------------------------------------------------------------------------

    def _in_pools(self) -> list[MemberId]:
        return self._queues + [MemberId(channel, i) for channel, size in self._sizes.items()
                               for i in range(size)]

    def _check(self, now: float, wait: float | None) -> list[Action]:
        actions: list[Action] = []
        for member in self._in_pools():
            record = self._members[member]
            if record.state is MemberState.READY:
                actions.append(Ping(member, wait if wait is not None else HEALTH_TIMEOUT))
            elif wait is not None:
                actions.append(Ping(member, wait))
            elif record.state is MemberState.STARTING:
                record.state, record.asked_at = MemberState.PLACING, now
                actions.append(Watch(member))
            elif now - record.asked_at > PLACEMENT_TIMEOUT:
                actions += self._replace(member, PLACEMENT_TIMEOUT)
        return actions

    def _answered(self, member: MemberId, pid: int) -> None:
        record = self._members.get(member)
        if record is None or record.state not in _IN_POOL:
            return  # a late answer from one that left its pool
        if record.pid is not None and record.pid != pid:
            log.warning("%s restarted (pid %s → %s)", member.name, record.pid, pid)
            self._count_restart(member)
        record.state, record.pid = MemberState.READY, pid

    def _replace(self, member: MemberId, waited: float) -> list[Action]:
        log.warning("%s did not answer in %.0fs; replacing it", member.name, waited)
        self._count_restart(member)
        record = self._members[member]
        # Counted once: the new incarnation's pid is not a second restart.
        record.pid = None
        if record.state is not MemberState.READY:
            record.state = MemberState.STARTING  # never answered: placed afresh
        return [Replace(member, waited)]

    def _count_restart(self, member: MemberId) -> None:
        self._restarts[member.label] = self._restarts.get(member.label, 0) + 1

    def _kill(self, member: MemberId) -> list[Action]:
        self._members[member] = Member(MemberState.DEAD)
        return [Kill(member)]

    def _round_done(self, now: float) -> list[Action]:
        self._rounds += 1
        if not self._sizers or (self._sized_at is not None and now < self._sized_at + SIZE_INTERVAL):
            return []
        self._sized_at = now
        return [Measure(tuple(m for m in self.ready_channel_members() if m.channel in self._sizers))]

    def _size(self, now: float, shards: Sequence[ShardStats],
              held: Mapping[MemberId, ChannelPing | None]) -> list[Action]:
        """Grow a pool while its backlog per actor stays high, shrink it when idle (nothing
        waiting and nothing in flight). The backlog counts what the pool's actors leased and
        hold waiting for a provider connection: out of the shards, but not being sent. A pool
        with an actor that did not answer is not known to be idle: it is taken for busy."""
        backlog = _backlog(shards)
        sending: dict[Channel, int] = {}
        unknown: set[Channel] = set()
        for member, ping in held.items():
            channel = member.channel
            if channel is None:
                continue
            if ping is None:
                unknown.add(channel)
                continue
            sending[channel] = sending.get(channel, 0) + ping.sending
            backlog[channel.value] = backlog.get(channel.value, 0) + ping.waiting
        actions: list[Action] = []
        for channel, sizer in self._sizers.items():
            wanted = sizer.decide(self._sizes[channel], backlog.get(channel.value, 0), now,
                                  1 if channel in unknown else sending.get(channel, 0))
            actions += self._resize(channel, wanted)
        return actions

    def _resize(self, channel: Channel, wanted: int) -> list[Action]:
        actions: list[Action] = []
        while self._sizes[channel] < wanted:
            member = MemberId(channel, self._sizes[channel])
            if self.state(member) is MemberState.DRAINING:
                break  # its name is still taken: grow once it is gone
            log.info("growing a pool", extra={"channel": channel.key, "size": member.index + 1})
            self._members[member] = Member()
            self._sizes[channel] += 1
            actions.append(Start(member))
        while self._sizes[channel] > wanted:
            self._sizes[channel] -= 1
            member = MemberId(channel, self._sizes[channel])
            log.info("shrinking a pool", extra={"channel": channel.key, "size": member.index})
            if self.state(member) is MemberState.READY:
                self._members[member] = Member(MemberState.DRAINING)
                actions.append(Drain(member, self._drain_for))
            else:  # one never placed holds no work
                actions += self._kill(member)
        return actions


def _backlog(shards: Iterable[ShardStats]) -> dict[str, int]:
    """Lane → notifications waiting at the shards (queued or retrying)."""
    backlog: dict[str, int] = {}
    for stats in shards:
        for lane, states in stats.depth.items():
            backlog[lane] = backlog.get(lane, 0) + states.get("queued", 0) + states.get("retrying", 0)
    return backlog


def plan(settings: Settings, channels: Iterable[Channel],
         running: Callable[[str], bool]) -> Supervision:
    """The Supervision ``settings`` ask for. ``running`` says whether an actor of that name is
    alive: a restarted Supervisor takes over what its previous life started and grew."""
    pools: dict[Channel, int] = {}
    sizers: dict[Channel, PoolSizer] = {}
    for channel in channels:
        size = settings.pools.get(channel.key, 1)
        if channel is not Channel.BROWSER:  # a gateway owns its users: that pool stays put
            sizer = sizers[channel] = PoolSizer(
                size, settings.pool_max.get(channel.key, size),
                grow_backlog=settings.pool_grow_backlog, idle_seconds=settings.pool_idle_seconds)
            while size < sizer.maximum and running(actor_name(channel, size)):
                size += 1  # a previous life grew this pool: take those actors over too
        pools[channel] = size
    queues = [hosted.start for hosted in shard_hosts(settings.shards, settings.shards_per_process)]
    return Supervision(queues, pools, sizers, drain_seconds(settings.attempt_timeout),
                       previous_life=running(actor_name(SHARD_POOL, 0)))
