"""QueueActor: a process of the durable queue, hosting one or several shards (``actors.
shard_service.ShardService`` each, a thin shell around ``herald.queue.QueueShard``).

Each call names its shard (``actors.clients.ShardClient`` adds it) and goes to that shard's
service; the shards of one process share nothing but the process and its event loop.
``HERALD_SHARDS_PER_PROCESS`` says how many one process hosts: several on one box, where each
Ray worker process costs ~80 MiB at rest and one core serves every shard's calls with room to
spare; one where shards should fail and move alone (a cluster's queue nodes).

Every method that changes state returns only once its change is committed to the shard's store
(``actors.group_commit``), so a caller that got an answer can rely on it. Values crossing Ray
are the core's typed values, and failures the core's errors, raised: Ray carries them to the
caller.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import ray

from actors.ray_metrics import RayMetricsExporter, ray_counter, ray_gauge
from actors.shard_service import ShardService
from herald.bounce_reports import BounceReport
from herald.channels import Channel
from herald.config import Settings
from herald.errors import HeraldError, QueueFull
from herald.exchange import Exchange, ExchangeAnswer
from herald.inbox import FeedPage, FeedQuery, ReadAnswer, ReadMarks
from herald.metrics import ShardStats
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.overview import ShardFigures
from herald.recipients import Recipient
from herald.search import SearchPage, SearchQuery
from herald.shard_health import ShardHealth
from herald.suppressions import Suppression


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class QueueActor:
    def __init__(self, shards: Sequence[int], settings: Settings) -> None:
        # Ray registers a metric once per process: the hosted shards share each one (their
        # series differ by the ``shard`` tag).
        counter, gauge = functools.cache(ray_counter), functools.cache(ray_gauge)
        self._shards = {index: ShardService(index, settings, RayMetricsExporter.for_shard(
            counter_factory=counter, gauge_factory=gauge)) for index in shards}

    async def pid(self, shard: int) -> int:
        """Health: this process, answered at once (each shard it hosts checks its timer)."""
        for hosted in self._shards.values():
            await hosted.pid()
        return os.getpid()

    async def health(self, shard: int) -> ShardHealth:
        return await self._shards[shard].health()

    async def close(self, shard: int) -> None:
        return await self._shards[shard].close()

    async def ready(self, shard: int) -> bool:
        return await self._shards[shard].ready()

    async def enqueue(self, shard: int, notifications: list[Notification]) -> list[Accepted | QueueFull]:
        return await self._shards[shard].enqueue(notifications)

    async def exchange(self, shard: int, request: Exchange) -> ExchangeAnswer:
        return await self._shards[shard].exchange(request)

    async def ack(self, shard: int, outcomes: list[Outcome]) -> int:
        return await self._shards[shard].ack(outcomes)

    async def claimed(self, shard: int, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return await self._shards[shard].claimed(keys)

    async def claim(self, shard: int, entries: list[tuple[str, str, str]]) -> list[str]:
        return await self._shards[shard].claim(entries)

    async def recipient(self, shard: int, tenant: str, uid: str) -> Recipient | None:
        return await self._shards[shard].recipient(tenant, uid)

    async def set_recipient(self, shard: int, tenant: str, uid: str, recipient: Recipient | None) -> None:
        return await self._shards[shard].set_recipient(tenant, uid, recipient)

    async def feed(self, shard: int, query: FeedQuery) -> FeedPage:
        return await self._shards[shard].feed(query)

    async def mark_read(self, shard: int, tenant: str, uid: str, marks: ReadMarks) -> ReadAnswer:
        return await self._shards[shard].mark_read(tenant, uid, marks)

    async def bounce(self, shard: int, report: BounceReport) -> tuple[str, Suppression] | None:
        return await self._shards[shard].bounce(report)

    async def suppressions(self, shard: int, tenant: str) -> list[Suppression]:
        return await self._shards[shard].suppressions(tenant)

    async def suppress(self, shard: int, tenant: str, entry: Suppression | None,
                       contact: str = "", sender: str | None = None) -> int:
        return await self._shards[shard].suppress(tenant, entry, contact, sender)

    async def unpark(self, shard: int, tenant: str, uid: str) -> list[str]:
        return await self._shards[shard].unpark(tenant, uid)

    async def receipts(self, shard: int, outcomes: list[Outcome]) -> list[bool]:
        return await self._shards[shard].receipts(outcomes)

    async def get(self, shard: int, tag: str, tenant: str, wait: float = 0.0) -> dict[str, Any]:
        return await self._shards[shard].get(tag, tenant, wait)

    async def cancel(self, shard: int, tag: str, tenant: str) -> dict[str, Any]:
        return await self._shards[shard].cancel(tag, tenant)

    async def revive(self, shard: int, tag: str, tenant: str) -> dict[str, Any]:
        return await self._shards[shard].revive(tag, tenant)

    async def stats(self, shard: int, tenant: str | None = None) -> ShardStats:
        return await self._shards[shard].stats(tenant)

    async def admin_stats(self, shard: int) -> ShardFigures:
        return await self._shards[shard].admin_stats()

    async def admin_search(self, shard: int, query: SearchQuery) -> SearchPage:
        return await self._shards[shard].admin_search(query)

    async def admin_get(self, shard: int, tag: str) -> dict[str, Any]:
        return await self._shards[shard].admin_get(tag)

    async def admin_retry(self, shard: int, tags: list[str]) -> list[dict[str, Any] | HeraldError]:
        return await self._shards[shard].admin_retry(tags)

    async def admin_cancel(self, shard: int, tags: list[str]) -> list[dict[str, Any] | HeraldError]:
        return await self._shards[shard].admin_cancel(tags)

    async def pause(self, shard: int, channel: Channel) -> dict[str, float]:
        return await self._shards[shard].pause(channel)

    async def resume(self, shard: int, channel: Channel) -> dict[str, float]:
        return await self._shards[shard].resume(channel)

    async def set_preference(self, shard: int, tenant: str, uid: str, category: str,
                             channel_key: str, on: bool) -> Recipient:
        return await self._shards[shard].set_preference(tenant, uid, category, channel_key, on)
