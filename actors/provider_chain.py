"""Ordered providers of one channel with a circuit breaker each: failover in one place."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from actors.providers.base import Provider, attempt
from herald.breaker import HALF_OPEN, OPEN, CircuitBreaker
from herald.outcome import Outcome
from herald.render import Message

#: Breakers kept per chain at most (per-destination ones are dropped least recently used first).
MAX_BREAKERS = 10_000


class RateLimitGate(Protocol):
    """What the chain needs of a rate limiter (``actors.ratelimiter.RateLimitClient``)."""

    async def wait_for(self, provider: str, channel: str, recipient: str | None) -> float:
        """0.0 to go now, else seconds to wait."""
        ...


class ProviderChain:
    """Sends each message through the first provider whose breaker lets it through.

    A transient outcome counts against that provider's breaker; once it opens, traffic moves to
    the next provider, and comes back when a half-open probe succeeds. Any other outcome
    (including a permanent refusal, which says nothing about the provider's health) counts as
    a success. ``clock`` is the monotonic time the breakers run on; tests pass their own.

    A breaker is per ``Provider.breaker_key(message)``: the provider's name, or for a provider
    that breaks per destination (webhooks) ``<name>:<host:port>``, so one dead destination
    defers only its own messages. Destinations come from callers, so those breakers are kept
    least-recently-used up to ``max_breakers``; the providers' own are never dropped.
    """

    def __init__(
        self, providers: Sequence[Provider], threshold: int = 5, cooldown: float = 30.0,
        limits: RateLimitGate | None = None, clock: Callable[[], float] = time.monotonic,
        max_breakers: int = MAX_BREAKERS,
    ) -> None:
        if not providers:
            raise ValueError("a channel needs at least one provider")
        self.providers = list(providers)
        self.limits = limits
        self.clock = clock
        self.threshold, self.cooldown, self.max_breakers = threshold, cooldown, max_breakers
        self._names = frozenset(p.name for p in self.providers)
        #: Breaker key → breaker, least recently used first.
        self.breakers: OrderedDict[str, CircuitBreaker] = OrderedDict(
            (p.name, CircuitBreaker(threshold, cooldown)) for p in self.providers)

    async def start(self) -> None:
        for provider in self.providers:
            await provider.start()

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    def breaker(self, key: str) -> CircuitBreaker:
        """The breaker for ``key``, made closed on first use; the oldest destination's goes
        when there are more than ``max_breakers`` (forgetting one only closes its circuit)."""
        breaker = self.breakers.get(key)
        if breaker is None:
            breaker = self.breakers[key] = CircuitBreaker(self.threshold, self.cooldown)
            if len(self.breakers) > max(self.max_breakers, len(self._names) + 1):
                oldest = next(k for k in self.breakers if k not in self._names)
                del self.breakers[oldest]
        self.breakers.move_to_end(key)
        return breaker

    def pick(self, message: Message, now: float) -> tuple[Provider, CircuitBreaker] | float:
        """The first provider whose breaker lets ``message`` through, with that breaker; else
        the seconds until one of them would let a probe through."""
        waits = []
        for provider in self.providers:
            breaker = self.breaker(provider.breaker_key(message))
            if breaker.allow(now):
                return provider, breaker
            waits.append(breaker.retry_in(now))
        return min(waits)

    async def send(self, message: Message) -> Outcome:
        picked = self.pick(message, self.clock())
        if not isinstance(picked, tuple):
            # The providers are down, not this message: wait without using up an attempt.
            return Outcome(message.tag, "defer", "none", error="every provider's circuit is open",
                           retry_after=max(1.0, picked))
        provider, breaker = picked
        # A half-open breaker lets a message through only by handing it the one probe.
        probe = breaker.state == HALF_OPEN
        try:
            if self.limits is not None:
                wait = await self.limits.wait_for(provider.name, message.channel, message.to)
                if wait > 0:
                    if probe:
                        breaker.release_probe()
                    return Outcome(message.tag, "defer", provider.name, error="rate limited",
                                   retry_after=wait)
            outcome = await attempt(provider, message)
        except BaseException:
            # Cut short (the actor is stopping, the limiter failed): no verdict on the provider,
            # but the breaker must not wait for ever for a probe that will never answer.
            if probe:
                breaker.release_probe()
            raise
        if outcome.kind == "retry":
            breaker.record_failure(self.clock())
        else:
            breaker.record_success()
        return outcome

    def states(self) -> dict[str, str]:
        """Each provider's own breaker, for health and metrics: one entry per provider, never
        one per destination (callers' URLs must not become metric labels)."""
        return {p.name: self.breakers[p.name].state for p in self.providers}

    def open_destinations(self) -> dict[str, int]:
        """Per provider name, how many of its per-destination breakers are open now."""
        counts = {p.name: 0 for p in self.providers}
        for key, breaker in self.breakers.items():
            name = key.partition(":")[0]
            if key not in self._names and name in counts and breaker.state == OPEN:
                counts[name] += 1
        return counts
