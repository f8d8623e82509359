"""The Supervisor's decisions (``herald.supervision``) without Ray, on a fake clock: what it starts,
pings, replaces, drains and kills, from what its actors answered and when."""

from __future__ import annotations

from collections.abc import Mapping

from herald.actor_names import SHARD_POOL
from herald.channels import Channel
from herald.config import Settings
from herald.metrics import Histogram, ShardStats
from herald.pool_sizing import GROW_AFTER_SECONDS, PoolSizer
from herald.pool_views import ChannelPing
from herald.supervision import (
    HEALTH_TIMEOUT,
    PLACEMENT_TIMEOUT,
    SIZE_INTERVAL,
    START_TIMEOUT,
    Supervision,
    plan,
)
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

EMAIL = Channel.EMAIL
SHARD_0, EMAIL_0, EMAIL_1, EMAIL_2 = (MemberId(SHARD_POOL, 0), MemberId(EMAIL, 0),
                                      MemberId(EMAIL, 1), MemberId(EMAIL, 2))
IDLE_SECONDS = 5.0
DRAIN_FOR = 60.0


class Clock:
    """The fake clock every event is observed at."""

    def __init__(self, machine: Supervision) -> None:
        self.machine, self.now = machine, 1000.0

    def observe(self, event: Event, after: float = 0.0) -> list[Action]:
        self.now += after
        return self.machine.observe(event, self.now)


def _started(email: int = 1, maximum: int = 3) -> Clock:
    """One queue process and an email pool of ``email`` actors (up to ``maximum``), all started."""
    machine = Supervision([0], {EMAIL: email}, {EMAIL: PoolSizer(
        1, maximum, grow_backlog=10, idle_seconds=IDLE_SECONDS)}, DRAIN_FOR)
    machine.launch()
    return Clock(machine)


def _ready(email: int = 1, maximum: int = 3) -> Clock:
    """As ``_started``, every actor having answered its first ping (pid 100 + its index)."""
    clock = _started(email, maximum)
    for action in clock.observe(CheckRound(), after=1.0):
        assert isinstance(action, Watch)
        clock.observe(Answered(action.member, 100 + action.member.index))
    return clock


def _stats(queued: int) -> list[ShardStats]:
    return [ShardStats(0, {"EMAIL": {"queued": queued}}, {}, Histogram())]


def _ping(member: MemberId, sending: int = 0, waiting: int = 0) -> ChannelPing:
    return ChannelPing(pid=100 + member.index, channel="EMAIL", index=member.index, started_at=0.0,
                       sending=sending, waiting=waiting)


def _measured(clock: Clock, queued: int, after: float,
              pings: Mapping[MemberId, ChannelPing | None] | None = None) -> list[Action]:
    """A sizing round ``after`` seconds on: the shards hold ``queued``; each ready email actor
    answers ``pings`` (by default: idle)."""
    [measure] = clock.observe(RoundDone(), after=after)
    assert isinstance(measure, Measure)
    held = {m: _ping(m) for m in measure.members} if pings is None else pings
    return clock.observe(Measured(_stats(queued), held))


def test_launch_starts_the_queue_processes_first_then_the_pools() -> None:
    settings = Settings(shards=6, shards_per_process=4, pools={"email": 2, "browser": 1, "webhook": 0})
    machine = plan(settings, [EMAIL, Channel.BROWSER, Channel.WEBHOOK], lambda name: False)
    started = [a.member.actor for a in machine.launch()]
    # Named after the first shard each hosts: shards 0-3, then 4-5.
    assert started == ["herald-shard-0", "herald-shard-4", "herald-email-0", "herald-email-1",
                       "herald-browser-0"]
    assert machine.state(SHARD_0) is MemberState.STARTING
    assert machine.view().pools == {"email": 2, "browser": 1, "webhook": 0}


def test_a_new_actor_is_watched_not_waited_for_and_ready_once_it_answers() -> None:
    clock = _started()
    assert clock.observe(CheckRound(), after=1.0) == [Watch(SHARD_0), Watch(EMAIL_0)]
    assert clock.machine.state(EMAIL_0) is MemberState.PLACING
    assert clock.observe(CheckRound(), after=1.0) == []  # its first ping is still out
    clock.observe(Answered(EMAIL_0, 42))
    assert clock.machine.state(EMAIL_0) is MemberState.READY
    assert clock.machine.ready_channel_members() == [EMAIL_0]
    assert clock.observe(CheckRound(), after=1.0) == [Ping(EMAIL_0, HEALTH_TIMEOUT)]
    assert clock.machine.view().pids == {"email-0": 42}


def test_an_actor_waiting_for_a_node_is_replaced_only_after_the_placement_timeout() -> None:
    clock = _started()
    clock.observe(CheckRound(), after=1.0)
    clock.observe(Answered(SHARD_0, 7))
    assert clock.observe(CheckRound(), after=PLACEMENT_TIMEOUT) == [Ping(SHARD_0, HEALTH_TIMEOUT)]
    assert clock.machine.view().restarts == {}
    assert clock.observe(CheckRound(), after=1.0) == [Ping(SHARD_0, HEALTH_TIMEOUT),
                                                      Replace(EMAIL_0, PLACEMENT_TIMEOUT)]
    assert clock.machine.view().restarts == {"email": 1}
    assert clock.machine.state(EMAIL_0) is MemberState.STARTING
    # Placed afresh: asked again, with a placement timeout of its own.
    assert Watch(EMAIL_0) in clock.observe(CheckRound(), after=1.0)
    assert Replace(EMAIL_0, PLACEMENT_TIMEOUT) not in clock.observe(CheckRound(), after=PLACEMENT_TIMEOUT - 2)


def test_a_first_ping_that_fails_is_sent_again_and_the_placement_clock_starts_over() -> None:
    clock = _started()
    clock.observe(CheckRound(), after=1.0)
    clock.observe(Failed(EMAIL_0), after=PLACEMENT_TIMEOUT - 1)  # Ray restarted it meanwhile
    assert Watch(EMAIL_0) in clock.observe(CheckRound(), after=1.0)
    assert Replace(EMAIL_0, PLACEMENT_TIMEOUT) not in clock.observe(CheckRound(), after=PLACEMENT_TIMEOUT - 1)


def test_a_hung_actor_is_replaced_and_counted_once() -> None:
    clock = _ready()
    assert Ping(EMAIL_0, HEALTH_TIMEOUT) in clock.observe(CheckRound(), after=1.0)
    assert clock.observe(TimedOut(EMAIL_0, HEALTH_TIMEOUT), after=HEALTH_TIMEOUT) == [
        Replace(EMAIL_0, HEALTH_TIMEOUT)]
    assert clock.machine.view().restarts == {"email": 1}
    # Still in its pool and checked as before; its new incarnation is not a second restart.
    assert Ping(EMAIL_0, HEALTH_TIMEOUT) in clock.observe(CheckRound(), after=1.0)
    clock.observe(Answered(EMAIL_0, 555))
    assert clock.machine.view().restarts == {"email": 1}
    assert clock.machine.view().pids["email-0"] == 555


def test_an_actor_ray_restarted_after_its_death_is_counted_from_its_new_pid() -> None:
    clock = _ready()
    clock.observe(CheckRound(), after=1.0)
    assert clock.observe(Failed(SHARD_0)) == []  # dead: Ray is restarting it, nothing to do
    assert clock.machine.view().restarts == {}
    clock.observe(CheckRound(), after=1.0)
    clock.observe(Answered(SHARD_0, 9000))
    assert clock.machine.view().restarts == {"queue": 1}
    assert clock.machine.view().pids["shard-0"] == 9000


def test_start_waits_for_every_first_answer_and_replaces_what_does_not_come() -> None:
    clock = _started()
    assert clock.observe(CheckRound(wait=START_TIMEOUT), after=0.1) == [
        Ping(SHARD_0, START_TIMEOUT), Ping(EMAIL_0, START_TIMEOUT)]
    clock.observe(Answered(SHARD_0, 7))
    assert clock.observe(TimedOut(EMAIL_0, START_TIMEOUT), after=START_TIMEOUT) == [
        Replace(EMAIL_0, START_TIMEOUT)]


def test_a_sustained_backlog_grows_the_pool_and_counts_what_actors_hold_waiting() -> None:
    clock = _ready()
    # 5 at the shards and 25 leased and waiting for a connection: 30 > 10 per actor.
    pings = {EMAIL_0: _ping(EMAIL_0, sending=2, waiting=25)}
    assert _measured(clock, 5, after=0.0, pings=pings) == []  # a burst is not enough
    assert _measured(clock, 5, after=GROW_AFTER_SECONDS, pings=pings) == [Start(EMAIL_1)]
    assert clock.machine.view().pools == {"email": 2}
    assert clock.machine.state(EMAIL_1) is MemberState.STARTING
    # The new actor is watched, not pinged, and not asked for its figures until it answers.
    round_ = clock.observe(CheckRound(), after=1.0)
    assert Watch(EMAIL_1) in round_ and Ping(EMAIL_1, HEALTH_TIMEOUT) not in round_
    assert clock.observe(RoundDone(), after=SIZE_INTERVAL) == [Measure((EMAIL_0,))]


def test_no_decision_without_every_shard_s_figures_nor_more_often_than_the_interval() -> None:
    clock = _ready()
    assert clock.observe(RoundDone(), after=1.0) == [Measure((EMAIL_0,))]
    busy = {EMAIL_0: _ping(EMAIL_0, waiting=500)}
    assert clock.observe(Measured(None, busy)) == []  # a shard is restarting
    assert clock.observe(RoundDone(), after=SIZE_INTERVAL / 2) == []
    assert clock.observe(RoundDone(), after=SIZE_INTERVAL / 2) == [Measure((EMAIL_0,))]
    assert clock.observe(Measured(None, busy), after=GROW_AFTER_SECONDS) == []
    assert clock.machine.view().health_rounds == 3 and clock.machine.view().pools == {"email": 1}


def test_an_idle_pool_shrinks_and_the_actor_removed_is_drained_then_killed() -> None:
    clock = _ready(email=2)
    assert _measured(clock, 0, after=SIZE_INTERVAL) == []
    assert _measured(clock, 0, after=IDLE_SECONDS) == [Drain(EMAIL_1, DRAIN_FOR)]
    view = clock.machine.view()
    assert view.pools == {"email": 1} and view.draining == ["herald-email-1"]
    assert "email-1" not in view.pids
    # Out of its pool: neither checked (nor so replaced) nor asked for its figures while it drains.
    assert clock.observe(CheckRound(), after=1.0) == [Ping(SHARD_0, HEALTH_TIMEOUT),
                                                      Ping(EMAIL_0, HEALTH_TIMEOUT)]
    assert clock.observe(TimedOut(EMAIL_1, HEALTH_TIMEOUT)) == []
    assert clock.machine.ready_channel_members() == [EMAIL_0]
    # A backlog meanwhile does not start a second actor under the name it still holds.
    busy = {EMAIL_0: _ping(EMAIL_0)}
    _measured(clock, 500, after=SIZE_INTERVAL, pings=busy)
    assert _measured(clock, 500, after=GROW_AFTER_SECONDS, pings=busy) == []
    assert clock.observe(Drained(EMAIL_1), after=DRAIN_FOR) == [Kill(EMAIL_1)]
    assert clock.machine.state(EMAIL_1) is MemberState.DEAD
    assert clock.machine.view().draining == []
    # Gone: the pool grows again under that name, and its first pid is not a restart.
    assert _measured(clock, 500, after=GROW_AFTER_SECONDS, pings=busy) == [Start(EMAIL_1)]
    clock.observe(CheckRound(), after=1.0)
    clock.observe(Answered(EMAIL_1, 4242))
    assert clock.machine.view().restarts == {}


def test_a_pool_with_sends_in_flight_or_an_actor_that_did_not_answer_does_not_shrink() -> None:
    clock = _ready(email=2)
    sending = {EMAIL_0: _ping(EMAIL_0), EMAIL_1: _ping(EMAIL_1, sending=1)}
    silent = {EMAIL_0: _ping(EMAIL_0), EMAIL_1: None}
    for held in (sending, silent, sending, silent):
        assert _measured(clock, 0, after=IDLE_SECONDS, pings=held) == []
    assert clock.machine.view().pools == {"email": 2}


def test_an_actor_that_never_answered_is_killed_at_once_when_its_pool_shrinks() -> None:
    clock = _started(email=2)
    clock.observe(CheckRound(), after=1.0)
    clock.observe(Answered(SHARD_0, 7))
    clock.observe(Answered(EMAIL_0, 100))  # email-1 waits for a node: it holds no work
    _measured(clock, 0, after=SIZE_INTERVAL)
    assert _measured(clock, 0, after=IDLE_SECONDS) == [Kill(EMAIL_1)]
    assert clock.machine.view().draining == [] and clock.machine.view().pools == {"email": 1}


def test_shutdown_kills_every_member_even_one_draining_and_then_decides_nothing() -> None:
    clock = _ready(email=2)
    _measured(clock, 0, after=SIZE_INTERVAL)
    assert _measured(clock, 0, after=IDLE_SECONDS) == [Drain(EMAIL_1, DRAIN_FOR)]
    assert clock.observe(Shutdown()) == [Kill(SHARD_0), Kill(EMAIL_0), Kill(EMAIL_1)]
    assert clock.observe(CheckRound(), after=1.0) == []
    assert clock.observe(Drained(EMAIL_1)) == []


def test_a_restarted_supervisor_takes_over_the_pools_its_previous_life_grew() -> None:
    settings = Settings(shards=2, smtp_url="smtp://127.0.0.1:2525", pools={"email": 1, "browser": 2},
                        pool_max={"email": 4})
    alive = {"herald-shard-0", "herald-email-0", "herald-email-1",
             "herald-email-2", "herald-browser-0", "herald-browser-1"}
    machine = plan(settings, settings.channels_configured(), alive.__contains__)
    started = {a.member.actor for a in machine.launch()}
    assert alive <= started and "herald-email-3" not in started
    assert machine.view().restarts == {"supervisor": 1}
    assert machine.view().pools["email"] == 3 and machine.view().pools["browser"] == 2
    first = plan(settings, settings.channels_configured(), lambda name: False)
    assert first.view().restarts == {} and first.view().pools["email"] == 1
