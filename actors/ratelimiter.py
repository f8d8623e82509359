"""RateLimiter actor: one set of limits for the whole service, asked once per batch.

``RateLimitClient`` lives in each channel actor and coalesces the questions of a few
milliseconds into one actor call, so limits hold globally without a call per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import ray

from herald.ratelimit import RateLimits

RATE_LIMITER_NAME = "herald-rate-limiter"
COALESCE_SECONDS = 0.002


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimiter:
    def __init__(self, per_provider: Mapping[str, float], per_recipient: Mapping[str, str]) -> None:
        self._limits = RateLimits(per_provider, per_recipient)

    def admit(self, requests: list[tuple[str, str, str | None]]) -> list[float]:
        return self._limits.admit(requests, time.monotonic())


class RateLimitClient:
    """``await client.wait_for(provider, channel, recipient)`` → 0.0 (go) or seconds to wait."""

    def __init__(self, handle: Any, providers: set[str], channels: set[str]) -> None:
        self._handle = handle
        self._providers = providers
        self._channels = {c.lower() for c in channels}
        self._pending: list[tuple[tuple[str, str, str | None], asyncio.Future[float]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def applies(self, provider: str, channel: str) -> bool:
        return provider in self._providers or channel.lower() in self._channels

    async def wait_for(self, provider: str, channel: str, recipient: str | None) -> float:
        if not self.applies(provider, channel):
            return 0.0
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending.append(((provider, channel, recipient), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                waits = await self._handle.admit.remote([request for request, _ in batch])
            except Exception:  # noqa: BLE001 - the limiter is restarting: hold these back briefly
                waits = [1.0] * len(batch)
            for (_, future), wait in zip(batch, waits, strict=True):
                if not future.done():
                    future.set_result(wait)
