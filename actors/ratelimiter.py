"""RateLimiter actor: one set of limits for the whole service, asked once per batch.

``RateLimitClient`` lives in each channel actor and coalesces the questions of a few
milliseconds into one actor call (``herald.coalescer``), so limits hold globally without a call
per message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import ray

from herald.coalescer import Coalescer
from herald.ratelimit import RateLimits

RATE_LIMITER_NAME = "herald-rate-limiter"
COALESCE_SECONDS = 0.002
#: Seconds a message waits when the limiter cannot be asked (it is restarting).
UNREACHABLE_WAIT = 1.0

#: One question to the limiter: (provider, channel, recipient).
Question = tuple[str, str, str | None]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimiter:
    def __init__(self, per_provider: Mapping[str, float], per_recipient: Mapping[str, str]) -> None:
        self._limits = RateLimits(per_provider, per_recipient)

    def admit(self, requests: list[Question]) -> list[float]:
        return self._limits.admit(requests, time.monotonic())


class RateLimitClient:
    """``await client.wait_for(provider, channel, recipient)`` → 0.0 (go) or seconds to wait."""

    def __init__(self, handle: Any, providers: set[str], channels: set[str]) -> None:
        self._handle = handle
        self._providers = providers
        self._channels = {c.lower() for c in channels}
        self._coalescer: Coalescer[Question, float] = Coalescer(self._admit, window=COALESCE_SECONDS)

    def applies(self, provider: str, channel: str) -> bool:
        return provider in self._providers or channel.lower() in self._channels

    async def wait_for(self, provider: str, channel: str, recipient: str | None) -> float:
        if not self.applies(provider, channel):
            return 0.0
        return await self._coalescer.submit_one((provider, channel, recipient))

    async def _admit(self, questions: list[Question]) -> list[float]:
        try:
            return list(await self._handle.admit.remote(questions))
        except Exception:  # noqa: BLE001 - the limiter is restarting: hold these back briefly
            return [UNREACHABLE_WAIT] * len(questions)
