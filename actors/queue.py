"""QueueActor: one shard of the durable queue, a thin Ray shell around ``herald.queue.QueueShard``.

Every method that changes state flushes to the shard's SQLite file before it returns, so a
caller that got an answer can rely on it. Values crossing Ray are the core's typed values
(``Notification`` in, ``Accepted`` / ``Delivery`` / ``NotificationView`` out, ``Outcome`` back),
and failures are the core's errors (``NotFound``, ``Conflict``, ``QueueFull``), raised: Ray
carries them to the caller. Leases long-poll: ``lease(lane, n, wait)`` returns as soon as
something is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from actors.ray_metrics import RayMetricsExporter
from herald.channels import Channel, Lane
from herald.config import Settings
from herald.delivery import Delivery
from herald.errors import QueueFull
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.status import FINAL
from herald.storage import SQLiteStorage

log = logging.getLogger("herald.queue")


def shard_path(settings: Settings, shard: int) -> Path:
    return settings.data_dir / "queue" / f"shard-{shard}.db"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class QueueActor:
    def __init__(self, shard: int, settings: Settings) -> None:
        self._shard_id = shard
        self._settings = settings
        storage = SQLiteStorage(shard_path(settings, shard), settings.sqlite_synchronous)
        policies = {c: settings.retry_policy(c) for c in Channel}
        self._shard = QueueShard(storage, policies, time.time(),
                                 gateways=settings.pools.get(Channel.BROWSER.key, 1))
        self._wakeups: dict[Lane, asyncio.Event] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._metrics = RayMetricsExporter.for_shard()
        self._ensure_timer()  # async actors run __init__ on their event loop
        log.info("shard %d ready with %d live notifications", shard, self._shard.live_count())

    # -- plumbing -------------------------------------------------------------------------
    def _event(self, lane: Lane) -> asyncio.Event:
        event = self._wakeups.get(lane)
        if event is None:
            event = self._wakeups[lane] = asyncio.Event()
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
            if self._metrics.due():  # Ray's metrics, every few seconds, never per message
                self._metrics.publish(self._shard.counters, self._shard.depth(),
                                      tags={"shard": self._shard_id})
            if due is not None and due <= time.time():
                for event in self._wakeups.values():
                    event.set()

    def _notify(self, lanes: set[Lane]) -> None:
        for lane in lanes:
            self._event(lane).set()

    def _finished(self, tags: Sequence[str]) -> None:
        for tag in tags:
            for future in self._waiters.pop(tag, ()):
                if not future.done():
                    future.set_result(None)
        if tags:
            self._notify({Lane(Channel.WEBHOOK)})  # final states may have queued callbacks

    # -- API ------------------------------------------------------------------------------
    async def pid(self) -> int:
        self._ensure_timer()
        return os.getpid()

    async def enqueue(self, notifications: list[Notification]) -> list[Accepted]:
        """Accept validated notifications; durable before this returns. ``QueueFull`` over the
        limit."""
        self._ensure_timer()
        live = self._shard.live_count()
        limit = self._settings.queue_limit // self._settings.shards
        if live + len(notifications) > limit:
            raise QueueFull(f"shard {self._shard_id} holds {live} notifications", retry_after=2.0)
        results = self._shard.enqueue(notifications, time.time())
        self._shard.flush()
        self._notify({self._shard.lane_of(n.channel, n.tenant, n.uid) for n in notifications})
        return results

    async def lease(self, lane: Lane, limit: int, wait: float = 1.0) -> list[Delivery]:
        """Up to ``limit`` deliveries of a lane; waits up to ``wait`` s for the first one (a long
        poll, so idle pools cost nothing)."""
        self._ensure_timer()
        deadline = time.monotonic() + wait
        event = self._event(lane)
        while True:
            event.clear()
            leased = self._shard.lease(lane, limit, time.time(), self._settings.lease_seconds)
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

    async def ack(self, outcomes: list[Outcome]) -> int:
        """Apply outcomes; durable before this returns. Returns how many reached a final state."""
        finished = self._shard.ack(outcomes, time.time())
        self._shard.flush()
        self._finished(finished)
        return len(finished)

    async def unpark(self, tenant: str, uid: str) -> int:
        """A browser user connected: their parked notifications become ready, in order."""
        count = self._shard.unpark(tenant, uid, time.time())
        if count:
            self._notify({self._shard.lane_of(Channel.BROWSER, tenant, uid)})
        return count

    async def receipts(self, outcomes: list[Outcome]) -> list[bool]:
        """Provider receipts (delivered/failed) for sent notifications, in one commit."""
        now = time.time()
        applied = [self._shard.receipt(outcome, now) for outcome in outcomes]
        self._shard.flush()
        self._finished([o.tag for o, ok in zip(outcomes, applied, strict=True) if ok])
        return applied

    async def get(self, tag: str, tenant: str, wait: float = 0.0) -> dict[str, Any]:
        """The status view of a notification (``NotFound`` if it is not this tenant's); with
        ``wait``, hold up to that many seconds for a final state."""
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

    async def cancel(self, tag: str, tenant: str) -> dict[str, Any]:
        record = self._shard.cancel(tag, tenant, time.time())
        self._shard.flush()
        self._finished([tag])
        return record.public()

    async def revive(self, tag: str, tenant: str) -> dict[str, Any]:
        """Retry a dead-lettered notification (``Conflict`` unless it is dead)."""
        record = self._shard.revive(tag, tenant, time.time())
        self._shard.flush()
        self._notify({self._shard.lane_of(record.channel, record.tenant, record.uid)})
        return record.public()

    async def stats(self) -> dict[str, Any]:
        return {
            "shard": self._shard_id,
            "depth": self._shard.depth(),
            "counters": dict(self._shard.counters),
            "latency": self._shard.latency.to_dict(),
        }
