"""QueueActor: one shard of the durable queue, a thin Ray shell around ``herald.queue.QueueShard``.

Every method that changes state flushes to the shard's SQLite file before it returns, so a
caller that got an answer can rely on it. Methods return plain dicts (errors as
``{"error": {...}}``) rather than raising: they cross process boundaries.
Leases long-poll: ``lease(channel, n, wait)`` returns as soon as something is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray

from herald.channels import Channel
from herald.config import Settings
from herald.errors import HeraldError, QueueFull
from herald.outcome import Outcome
from herald.queue import WEBHOOK, QueueShard
from herald.record import FINAL
from herald.sharding import lane_for
from herald.storage import SQLiteStorage

log = logging.getLogger("herald.queue")


def shard_path(settings: Settings, shard: int) -> Any:
    return settings.data_dir / "queue" / f"shard-{shard}.db"


def error_dict(error: HeraldError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class QueueActor:
    def __init__(self, shard: int, settings: Settings) -> None:
        self._shard_id = shard
        self._settings = settings
        storage = SQLiteStorage(shard_path(settings, shard), settings.sqlite_synchronous)
        policies = {c.value: settings.retry_policy(c) for c in Channel}
        policies[WEBHOOK] = settings.retry_policy_for(WEBHOOK)
        gateways = settings.pools.get("browser", 1)
        self._lane = lambda channel, tenant, uid: lane_for(channel, tenant, uid, gateways)
        self._shard = QueueShard(storage, policies, time.time(),
                                 lane_of=lambda r: self._lane(r.channel, r.tenant, r.uid))
        self._wakeups: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._ensure_timer()  # async actors run __init__ on their event loop
        log.info("shard %d ready with %d live notifications", shard, self._shard.live_count())

    # -- plumbing -------------------------------------------------------------------------
    def _event(self, channel: str) -> asyncio.Event:
        event = self._wakeups.get(channel)
        if event is None:
            event = self._wakeups[channel] = asyncio.Event()
        return event

    def _ensure_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """Wake lease waiters when a retry or an expired lease falls due."""
        while True:
            due = self._shard.next_wakeup()
            delay = 1.0 if due is None else min(1.0, max(0.01, due - time.time()))
            await asyncio.sleep(delay)
            if due is not None and due <= time.time():
                for event in self._wakeups.values():
                    event.set()

    def _notify(self, channels: set[str]) -> None:
        for channel in channels:
            self._event(channel).set()

    def _finished(self, tags: Sequence[str]) -> None:
        for tag in tags:
            for future in self._waiters.pop(tag, ()):
                if not future.done():
                    future.set_result(None)

    # -- API ------------------------------------------------------------------------------
    async def pid(self) -> int:
        self._ensure_timer()
        return os.getpid()

    async def enqueue(self, notifications: list[dict[str, Any]]) -> dict[str, Any]:
        """Accept validated notifications; durable before this returns."""
        self._ensure_timer()
        live = self._shard.live_count()
        limit = self._settings.queue_limit // self._settings.shards
        if live + len(notifications) > limit:
            return error_dict(QueueFull(f"shard {self._shard_id} holds {live} notifications"))
        now = time.time()
        results = self._shard.enqueue(notifications, now)
        self._shard.flush()
        self._notify({self._lane(n["channel"], n["tenant"], n["uid"]) for n in notifications})
        return {"results": results}

    async def lease(self, channel: str, limit: int, wait: float = 1.0) -> list[dict[str, Any]]:
        """Up to ``limit`` notifications of a lane (``EMAIL``, ``BROWSER.0``…).

        Waits up to ``wait`` s for the first one: a long poll, so idle pools cost nothing.
        """
        self._ensure_timer()
        deadline = time.monotonic() + wait
        event = self._event(channel)
        while True:
            event.clear()
            leased = self._shard.lease(channel, limit, time.time(), self._settings.lease_seconds)
            self._shard.flush()
            if leased:
                return leased
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return []

    async def ack(self, outcomes: list[dict[str, Any]]) -> int:
        """Apply outcomes; durable before this returns. Returns how many reached a final state."""
        finished = self._shard.ack([Outcome.from_dict(o) for o in outcomes], time.time())
        self._shard.flush()
        self._finished(finished)
        if finished:
            self._notify({WEBHOOK})  # final states may have queued requester callbacks
        return len(finished)

    async def unpark(self, tenant: str, uid: str) -> int:
        """A browser user connected: their parked notifications become ready, in order."""
        count = self._shard.unpark(tenant, uid, time.time())
        if count:
            self._notify({self._lane("BROWSER", tenant, uid)})
        return count

    async def receipts(self, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
        """Provider receipts (delivered/failed) for sent notifications, in one commit."""
        now = time.time()
        applied = [self._shard.receipt(Outcome.from_dict(o), now) for o in outcomes]
        self._shard.flush()
        done = [o["tag"] for o, ok in zip(outcomes, applied, strict=True) if ok]
        if done:
            self._finished(done)
            self._notify({WEBHOOK})
        return {"results": applied}

    async def get(self, tag: str, tenant: str, wait: float = 0.0) -> dict[str, Any]:
        try:
            record = self._shard.get(tag, tenant)
            if wait > 0 and record.status not in FINAL:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                waiters = self._waiters.setdefault(tag, [])
                waiters.append(future)
                try:
                    await asyncio.wait_for(future, wait)
                except TimeoutError:
                    pass
                finally:  # a timed-out wait must not stay registered until the tag is final
                    if future in waiters:
                        waiters.remove(future)
                    if not waiters:
                        self._waiters.pop(tag, None)
                record = self._shard.get(tag, tenant)
            return record.public()
        except HeraldError as exc:
            return error_dict(exc)

    async def cancel(self, tag: str, tenant: str) -> dict[str, Any]:
        try:
            record = self._shard.cancel(tag, tenant, time.time())
        except HeraldError as exc:
            return error_dict(exc)
        self._shard.flush()
        self._finished([tag])
        return record.public()

    async def revive(self, tag: str, tenant: str) -> dict[str, Any]:
        """Retry a dead-lettered notification."""
        try:
            record = self._shard.revive(tag, tenant, time.time())
        except HeraldError as exc:
            return error_dict(exc)
        self._shard.flush()
        self._notify({self._lane(record.channel, record.tenant, record.uid)})
        return record.public()

    async def stats(self) -> dict[str, Any]:
        return {
            "shard": self._shard_id,
            "depth": self._shard.depth(),
            "counters": dict(self._shard.counters),
            "latency": self._shard.latency.to_dict(),
        }
