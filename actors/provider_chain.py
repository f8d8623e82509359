"""Ordered providers of one channel with a circuit breaker each: failover in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from actors.providers.base import Provider
from herald.breaker import HALF_OPEN, CircuitBreaker
from herald.outcome import Outcome
from herald.render import Message


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
    """

    def __init__(
        self, providers: Sequence[Provider], threshold: int = 5, cooldown: float = 30.0,
        limits: RateLimitGate | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("a channel needs at least one provider")
        self.providers = list(providers)
        self.limits = limits
        self.clock = clock
        self.breakers = {p.name: CircuitBreaker(threshold, cooldown) for p in self.providers}

    async def start(self) -> None:
        for provider in self.providers:
            await provider.start()

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    def pick(self, now: float) -> Provider | None:
        for provider in self.providers:
            if self.breakers[provider.name].allow(now):
                return provider
        return None

    async def send(self, message: Message) -> Outcome:
        now = self.clock()
        provider = self.pick(now)
        if provider is None:
            wait = min(b.retry_in(now) for b in self.breakers.values())
            # The providers are down, not this message: wait without using up an attempt.
            return Outcome(message.tag, "defer", "none", error="every provider's circuit is open",
                           retry_after=max(1.0, wait))
        breaker = self.breakers[provider.name]
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
            (outcome,) = await provider.deliver([message])
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
        return {name: b.state for name, b in self.breakers.items()}
