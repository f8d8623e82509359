"""ProviderChain: failover when a breaker opens, back after a good probe, defer when all are down."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import replace

import pytest

from actors.provider_chain import ProviderChain
from actors.providers.base import Provider
from herald.breaker import CLOSED, HALF_OPEN, OPEN
from herald.channels import Channel
from herald.errors import PermanentProviderError, TransientProviderError
from herald.outcome import Outcome
from herald.priority_gate import PriorityGate
from herald.render import Message

THRESHOLD, COOLDOWN = 3, 30.0


class ScriptedProvider(Provider):
    """Answers each ``send`` with the next step of its script, then with ``then``.

    Steps: ``sent``; ``transient`` / ``permanent`` (raise that ``ProviderError``); ``hang``
    (wait until cancelled).
    """

    def __init__(self, name: str, *script: str, then: str = "sent") -> None:
        self.name = name
        self.script = deque(script)
        self.then = then
        self.calls: list[str] = []
        self.hanging = asyncio.Event()
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, message: Message) -> Outcome:
        self.calls.append(message.tag)
        step = self.script.popleft() if self.script else self.then
        if step == "transient":
            raise TransientProviderError("provider busy", "503", retry_after=2.0)
        if step == "permanent":
            raise PermanentProviderError("invalid number", "21211")
        if step == "hang":
            self.hanging.set()
            await asyncio.Event().wait()
        return Outcome(message.tag, "sent", self.name, provider_id=f"{self.name}-{message.tag}")


class FakeLimits:
    """The ``wait_for`` interface of ``RateLimitClient``: a fixed wait per provider."""

    def __init__(self, **waits: float) -> None:
        self.waits = waits
        self.questions: list[tuple[str, str, str | None]] = []

    async def wait_for(self, provider: str, channel: str, recipient: str | None) -> float:
        self.questions.append((provider, channel, recipient))
        return self.waits.get(provider, 0.0)


class Clock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_tags = iter(range(1_000_000))


def message() -> Message:
    return Message(
        tag=f"tag-{next(_tags)}", tenant="acme", type="OTP_SMS", channel=Channel.SMS, uid="42", attempt=1,
        to="+14155550100", sender=None, subject=None, title=None, text="Your code is 123456",
        html=None, media_url=None, bill_to=None, expires_at=time.time() + 60,
    )


def chain(*providers: Provider, clock: Clock, limits: FakeLimits | None = None) -> ProviderChain:
    return ProviderChain(providers, THRESHOLD, COOLDOWN, limits, clock=clock)


async def open_breaker(chain: ProviderChain, provider: ScriptedProvider) -> None:
    """Send ``THRESHOLD`` messages that ``provider`` (scripted ``transient``) answers busy."""
    for _ in range(THRESHOLD):
        outcome = await chain.send(message())
        assert (outcome.kind, outcome.provider) == ("retry", provider.name)
    assert chain.states()[provider.name] == OPEN


async def test_the_first_provider_takes_everything_while_healthy() -> None:
    primary, backup = ScriptedProvider("primary"), ScriptedProvider("backup")
    providers = chain(primary, backup, clock=Clock())
    outcomes = [await providers.send(message()) for _ in range(5)]
    assert {(o.kind, o.provider) for o in outcomes} == {("sent", "primary")}
    assert len(primary.calls) == 5 and backup.calls == []
    assert providers.states() == {"primary": CLOSED, "backup": CLOSED}


async def test_fails_over_once_the_breaker_opens_after_threshold_transient_failures() -> None:
    primary, backup = ScriptedProvider("primary", then="transient"), ScriptedProvider("backup")
    providers = chain(primary, backup, clock=Clock())
    for sent in range(THRESHOLD - 1):
        await providers.send(message())
        assert providers.states()["primary"] == CLOSED, f"open after {sent + 1} failures"
    await providers.send(message())
    assert providers.states() == {"primary": OPEN, "backup": CLOSED}
    outcome = await providers.send(message())
    assert (outcome.kind, outcome.provider) == ("sent", "backup")
    assert len(primary.calls) == THRESHOLD and len(backup.calls) == 1


async def test_traffic_comes_back_after_the_cooldown_when_the_probe_succeeds() -> None:
    clock = Clock()
    primary = ScriptedProvider("primary", *["transient"] * THRESHOLD)  # then healthy again
    backup = ScriptedProvider("backup")
    providers = chain(primary, backup, clock=clock)
    await open_breaker(providers, primary)
    clock.advance(COOLDOWN - 1)
    assert (await providers.send(message())).provider == "backup"  # still cooling down
    clock.advance(1)
    probe = await providers.send(message())
    assert (probe.kind, probe.provider) == ("sent", "primary")
    assert providers.states()["primary"] == CLOSED
    assert (await providers.send(message())).provider == "primary"
    assert len(backup.calls) == 1


async def test_a_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    clock = Clock()
    primary, backup = ScriptedProvider("primary", then="transient"), ScriptedProvider("backup")
    providers = chain(primary, backup, clock=clock)
    await open_breaker(providers, primary)
    clock.advance(COOLDOWN)
    probe = await providers.send(message())
    assert (probe.kind, probe.provider) == ("retry", "primary")
    assert providers.states()["primary"] == OPEN  # one failed probe is enough
    clock.advance(COOLDOWN - 1)
    assert (await providers.send(message())).provider == "backup"
    assert len(primary.calls) == THRESHOLD + 1


async def test_permanent_failures_do_not_count_against_the_breaker() -> None:
    primary, backup = ScriptedProvider("primary", then="permanent"), ScriptedProvider("backup")
    providers = chain(primary, backup, clock=Clock())
    outcomes = [await providers.send(message()) for _ in range(THRESHOLD * 3)]
    assert {(o.kind, o.provider, o.code) for o in outcomes} == {("failed", "primary", "21211")}
    assert providers.states()["primary"] == CLOSED and backup.calls == []


async def test_a_permanent_answer_breaks_a_run_of_transient_failures() -> None:
    # A refusal proves the provider is up and answering: the count is of *consecutive* failures.
    script = ["transient"] * (THRESHOLD - 1) + ["permanent"] + ["transient"] * (THRESHOLD - 1)
    primary = ScriptedProvider("primary", *script)
    providers = chain(primary, ScriptedProvider("backup"), clock=Clock())
    for _ in script:
        await providers.send(message())
    assert providers.states()["primary"] == CLOSED


async def test_every_circuit_open_defers_without_calling_a_provider() -> None:
    clock = Clock()
    primary = ScriptedProvider("primary", then="transient")
    backup = ScriptedProvider("backup", then="transient")
    providers = chain(primary, backup, clock=clock)
    await open_breaker(providers, primary)
    clock.advance(5)
    for _ in range(THRESHOLD):
        await providers.send(message())
    assert providers.states() == {"primary": OPEN, "backup": OPEN}
    calls = len(primary.calls), len(backup.calls)

    clock.advance(5)
    deferred = await providers.send(message())
    assert (deferred.kind, deferred.provider) == ("defer", "none")
    assert deferred.retry_after == pytest.approx(COOLDOWN - 10)  # the sooner of the two breakers
    clock.advance(COOLDOWN - 10.5)
    assert (await providers.send(message())).retry_after == 1.0  # never less than a second
    assert (len(primary.calls), len(backup.calls)) == calls


async def test_rate_limited_defers_without_calling_the_provider() -> None:
    primary = ScriptedProvider("primary")
    limits = FakeLimits(primary=4.5)
    providers = chain(primary, clock=Clock(), limits=limits)
    sms = message()
    outcome = await providers.send(sms)
    assert (outcome.kind, outcome.provider, outcome.retry_after) == ("defer", "primary", 4.5)
    assert primary.calls == [] and limits.questions == [("primary", "SMS", "+14155550100")]
    assert providers.states()["primary"] == CLOSED


async def test_a_rate_limited_probe_is_released_for_the_next_message() -> None:
    clock = Clock()
    primary = ScriptedProvider("primary", *["transient"] * THRESHOLD)
    limits = FakeLimits()
    providers = chain(primary, ScriptedProvider("backup"), clock=clock, limits=limits)
    await open_breaker(providers, primary)
    clock.advance(COOLDOWN)
    limits.waits["primary"] = 2.0
    limited = await providers.send(message())
    assert (limited.kind, limited.provider) == ("defer", "primary")
    assert providers.states()["primary"] == HALF_OPEN and not providers.breakers["primary"].probing
    limits.waits["primary"] = 0.0
    probe = await providers.send(message())  # had the probe stayed claimed, this went to backup
    assert (probe.kind, probe.provider) == ("sent", "primary")
    assert providers.states()["primary"] == CLOSED


async def test_while_the_probe_hangs_others_go_to_the_next_provider() -> None:
    clock = Clock()
    primary = ScriptedProvider("primary", *["transient"] * THRESHOLD, "hang")
    providers = chain(primary, ScriptedProvider("backup"), clock=clock)
    await open_breaker(providers, primary)
    clock.advance(COOLDOWN)
    probe = asyncio.create_task(providers.send(message()))
    await asyncio.wait_for(primary.hanging.wait(), 1)
    assert (await providers.send(message())).provider == "backup"  # one probe at a time

    probe.cancel()  # e.g. the actor is stopping: the probe never answers
    with pytest.raises(asyncio.CancelledError):
        await probe
    # The breaker does not wait for ever on a probe that is gone: the next message probes.
    assert providers.states()["primary"] == HALF_OPEN
    assert (await providers.send(message())).provider == "primary"
    assert providers.states()["primary"] == CLOSED


async def test_start_and_close_reach_every_provider() -> None:
    primary, backup = ScriptedProvider("primary"), ScriptedProvider("backup")
    providers = chain(primary, backup, clock=Clock())
    await providers.start()
    assert primary.started and backup.started
    await providers.close()
    assert primary.closed and backup.closed


def test_a_chain_needs_a_provider_and_runs_on_the_monotonic_clock_by_default() -> None:
    with pytest.raises(ValueError):
        ProviderChain([])
    assert ProviderChain([ScriptedProvider("only")]).clock is time.monotonic


# ---- breakers per destination ---------------------------------------------------------------

class DestinationProvider(ScriptedProvider):
    """Breaks per destination like the webhook provider; ``dead`` destinations answer busy."""

    def __init__(self, name: str, *dead: str) -> None:
        super().__init__(name)
        self.dead = set(dead)

    def breaker_key(self, message: Message) -> str:
        return f"{self.name}:{message.to}"

    async def send(self, message: Message) -> Outcome:
        if message.to in self.dead:
            self.calls.append(message.tag)
            raise TransientProviderError("connection refused", "network")
        return await super().send(message)


def to(destination: str) -> Message:
    return replace(message(), to=destination)


async def test_one_failing_destination_opens_only_its_own_breaker() -> None:
    clock = Clock()
    hooks = DestinationProvider("webhook", "dead.example:443")
    providers = chain(hooks, clock=clock)
    for _ in range(THRESHOLD):
        assert (await providers.send(to("dead.example:443"))).kind == "retry"
    assert providers.breakers["webhook:dead.example:443"].state == OPEN
    calls = len(hooks.calls)

    deferred = await providers.send(to("dead.example:443"))  # defers, not an attempt
    assert (deferred.kind, deferred.provider, deferred.retry_after) == ("defer", "none", COOLDOWN)
    assert len(hooks.calls) == calls
    sent = await providers.send(to("alive.example:443"))  # another destination is unaffected
    assert (sent.kind, sent.provider) == ("sent", "webhook")
    assert providers.breakers["webhook:alive.example:443"].state == CLOSED
    # Health and metrics see one entry per provider; open destinations are only counted.
    assert providers.states() == {"webhook": CLOSED}
    assert providers.open_destinations() == {"webhook": 1}

    clock.advance(COOLDOWN)
    hooks.dead.clear()
    assert (await providers.send(to("dead.example:443"))).kind == "sent"  # the probe closes it
    assert providers.open_destinations() == {"webhook": 0}


async def test_a_destination_breaker_falls_back_to_the_next_provider() -> None:
    primary = DestinationProvider("primary", "dead.example")
    providers = chain(primary, ScriptedProvider("backup"), clock=Clock())
    for _ in range(THRESHOLD):
        await providers.send(to("dead.example"))
    assert (await providers.send(to("dead.example"))).provider == "backup"
    assert (await providers.send(to("alive.example"))).provider == "primary"


async def test_destination_breakers_are_bounded_least_recently_used_first() -> None:
    clock = Clock()
    hooks = DestinationProvider("webhook", "dead-0")
    plain = ScriptedProvider("plain")
    providers = ProviderChain([hooks, plain], THRESHOLD, COOLDOWN, clock=clock, max_breakers=5)
    for _ in range(THRESHOLD):
        await providers.send(to("dead-0"))
    for number in range(1, 3):  # five in all: the two providers' own, three destinations
        await providers.send(to(f"host-{number}"))
    assert "webhook:dead-0" in providers.breakers
    await providers.send(to("dead-0"))  # used again: the most recent now
    await providers.send(to("host-3"))  # host-1 goes, not dead-0
    assert "webhook:dead-0" in providers.breakers and "webhook:host-1" not in providers.breakers
    for number in range(4, 100):
        await providers.send(to(f"host-{number}"))
    assert len(providers.breakers) <= 5
    assert "webhook:dead-0" not in providers.breakers  # forgotten: the circuit starts closed
    # The providers' own breakers are never dropped, whatever callers send.
    assert {"webhook", "plain"} <= set(providers.breakers)
    assert providers.states() == {"webhook": CLOSED, "plain": CLOSED}
    assert ProviderChain([hooks]).max_breakers == 10_000


async def test_a_provider_counts_the_sends_waiting_for_a_connection() -> None:
    """What the Supervisor adds to a pool's backlog: sends leased into an actor, queued at a
    provider whose connections are all busy (0 for a provider without a gate)."""
    release = asyncio.Event()

    class Gated(Provider):
        name = "gated"

        def __init__(self) -> None:
            self.gate = PriorityGate(2)

        async def send(self, message: Message) -> Outcome:
            assert self.gate is not None
            async with self.gate.slot(message.priority):
                await release.wait()
            return Outcome(message.tag, "sent", self.name)

    provider = Gated()
    sends = [asyncio.create_task(provider.send(replace(message(), tag=f"t{i}"))) for i in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert provider.waiting() == 3
    release.set()
    await asyncio.gather(*sends)
    assert provider.waiting() == 0
