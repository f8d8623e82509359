"""Ordered providers of one channel with a circuit breaker each: failover in one place."""

from __future__ import annotations

import time
from collections.abc import Sequence

from actors.providers.base import Provider
from actors.ratelimiter import RateLimitClient
from herald.breaker import CircuitBreaker
from herald.outcome import Outcome
from herald.render import Message


class ProviderChain:
    """Sends each message through the first provider whose breaker lets it through.

    A transient outcome counts against that provider's breaker; once it opens, traffic moves to
    the next provider, and comes back when a half-open probe succeeds.
    """

    def __init__(
        self, providers: Sequence[Provider], threshold: int = 5, cooldown: float = 30.0,
        limits: RateLimitClient | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a channel needs at least one provider")
        self.providers = list(providers)
        self.limits = limits
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
        now = time.monotonic()
        provider = self.pick(now)
        if provider is None:
            wait = min(b.retry_in(now) for b in self.breakers.values())
            # The providers are down, not this message: wait without using up an attempt.
            return Outcome(message.tag, "defer", "none", error="every provider's circuit is open",
                           retry_after=max(1.0, wait))
        breaker = self.breakers[provider.name]
        if self.limits is not None:
            wait = await self.limits.wait_for(provider.name, message.channel, message.to)
            if wait > 0:
                breaker.release_probe()
                return Outcome(message.tag, "defer", provider.name, error="rate limited",
                               retry_after=wait)
        (outcome,) = await provider.deliver([message])
        if outcome.kind == "retry":
            breaker.record_failure(time.monotonic())
        else:
            breaker.record_success()
        return outcome

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in self.breakers.items()}
