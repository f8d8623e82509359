"""ChannelActor: pulls leases from every queue shard, delivers through its providers, acks in batches.

Pull, not push: an actor only leases what it has room for (``channel_concurrency`` split
evenly across shards), which is the backpressure. Outcomes are acked per shard in batches.
A restarted actor (Ray ``max_restarts``) starts pulling again from ``__init__``, and what its
previous life had leased comes back when the leases expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.provider_chain import ProviderChain
from actors.providers.registry import build_providers
from actors.ratelimiter import RateLimitClient
from actors.ray_metrics import RayMetricsExporter
from herald.channels import Channel, Lane
from herald.config import Settings
from herald.delivery import Delivery
from herald.errors import TemplateError, Unavailable
from herald.outcome import Outcome
from herald.priority import ASAP_PRIORITY
from herald.queue import LeaseRenewal
from herald.render import render_message
from herald.sharding import shard_for_uid

log = logging.getLogger("herald.channels")
ACK_WINDOW_SECONDS = 0.005
#: Sends per shard kept for asap (and higher) notifications: while a backlog fills every
#: normal slot, an asap one is leased at once, not after a quarter of those sends finished.
EXPRESS_SLOTS = 2


class _ShardLink:
    """Per-shard state of one channel actor: in-flight deliveries and the pending acks."""

    def __init__(self, handle: Any, capacity: int) -> None:
        self.handle = handle
        self.capacity = capacity
        self.inflight = 0
        self.express = 0  # sends in flight in the express slots
        self.express_freed = asyncio.Event()
        #: tag → lease token of each delivery being sent: what the heartbeat renews.
        self.sending: dict[str, float] = {}
        self.slot_freed = asyncio.Event()
        self.acks: list[Outcome] = []
        self.acks_ready = asyncio.Event()
        self.acking = 0  # outcomes in an ack call not answered yet


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class ChannelActor:
    def __init__(
        self, channel: Channel, index: int, shards: Sequence[Any], settings: Settings,
        limiter: Any = None,
    ) -> None:
        self._channel = channel
        self._lane = Lane.of_actor(channel, index)
        self._limiter = limiter
        self._index = index
        self._shard_handles = list(shards)
        self._settings = settings
        self._links: list[_ShardLink] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._chain: ProviderChain | None = None
        self._stopping = False
        self._started_at = time.time()
        self.counters = dict.fromkeys(("sent", "delivered", "retry", "failed", "park", "defer"), 0)
        self._starting: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._metrics = RayMetricsExporter.for_channel_actor()
        # Async actors run __init__ on their event loop: start pulling right away.
        asyncio.get_running_loop().create_task(self._ensure_started())

    async def _ensure_started(self) -> None:
        """Start pulling (once). Runs from ``__init__``, so a restarted actor resumes by itself."""
        failed = self._starting is not None and self._starting.done() and (
            self._starting.cancelled() or self._starting.exception() is not None)
        if self._starting is None or failed:  # a failed start is tried again on the next ping
            self._links, self._chain = [], None
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        providers = build_providers(self._channel, self._settings, self._index, self._on_connect,
                                    node_ip=ray.util.get_node_ip_address())
        limits = None
        if self._limiter is not None:
            limits = RateLimitClient(self._limiter, set(self._settings.rate_limits),
                                     set(self._settings.recipient_limits))
        chain = ProviderChain(providers, self._settings.breaker_threshold,
                              self._settings.breaker_cooldown, limits)
        self._chain = chain
        await chain.start()
        per_shard = max(1, self._settings.channel_concurrency // len(self._shard_handles))
        loop = asyncio.get_running_loop()
        for handle in self._shard_handles:
            link = _ShardLink(handle, per_shard)
            self._links.append(link)
            self._tasks.append(loop.create_task(self._pull(link)))
            self._tasks.append(loop.create_task(self._pull_express(link)))
            self._tasks.append(loop.create_task(self._acker(link)))
            self._tasks.append(loop.create_task(self._heartbeat(link)))
        log.info("%s actor %d pulling from %d shards", self._channel.value, self._index,
                 len(self._links))

    async def _on_connect(self, tenant: str, uid: str) -> None:
        """A browser user connected here: ask their shard to release what waits for them."""
        shard = self._shard_handles[shard_for_uid(uid, len(self._shard_handles))]
        await shard.unpark.remote(tenant, uid)

    async def ping(self) -> dict[str, Any]:
        """Health and figures; the Supervisor's health loop calls it every second. ``endpoint``:
        where browsers connect to this actor's gateway (``/v1/browser-endpoint`` asks)."""
        await self._ensure_started()
        providers = self._chain.providers if self._chain else []
        if self._metrics.due():
            self._metrics.publish(self.counters, tags={"channel": self._channel.key,
                                                       "actor": self._index},
                                  breakers=self._chain.states() if self._chain else {})
        return {
            "pid": os.getpid(), "channel": self._channel.value, "index": self._index,
            "started_at": self._started_at,
            "inflight": sum(link.inflight + link.express for link in self._links),
            # Leased and not acked yet (a pool with any is not idle: herald.pool_sizing).
            "sending": len(self._deliveries) + sum(len(link.acks) + link.acking
                                                   for link in self._links),
            "breakers": self._chain.states() if self._chain else {},
            "counters": dict(self.counters),
            "endpoint": next((p.endpoint for p in providers if p.endpoint), None),
        }

    async def _pull(self, link: _ShardLink) -> None:
        batch = self._settings.lease_batch
        while not self._stopping:
            room = link.capacity - link.inflight
            # Lease in batches: while busy, wait until a quarter of the room is free rather than
            # calling the shard for every slot that frees up.
            if room <= 0 or (link.inflight > 0 and room < max(1, link.capacity // 4)):
                link.slot_freed.clear()
                await link.slot_freed.wait()
                continue
            want = min(room, batch)
            link.inflight += want  # reserve before the await so the room stays honest
            try:
                items = await link.handle.lease.remote(self._lane, want, 1.0)
            except RayActorError:
                items = []
                await asyncio.sleep(0.5)
            except Exception as exc:
                # A standby's shards (PostgreSQL: another deployment is active) and a shard
                # that is restarting answer Unavailable for as long as that lasts: no traceback
                # twice a second for each of them.
                if not (isinstance(exc, RayTaskError) and isinstance(exc.cause, Unavailable)):
                    log.exception("lease failed")
                items = []
                await asyncio.sleep(0.5)
            link.inflight -= want - len(items)
            self._spawn(link, items, express=False)

    async def _pull_express(self, link: _ShardLink) -> None:
        """Lease only asap (and higher) work into the express slots."""
        while not self._stopping:
            room = EXPRESS_SLOTS - link.express
            if room <= 0:
                link.express_freed.clear()
                await link.express_freed.wait()
                continue
            link.express += room
            try:
                items = await link.handle.lease.remote(self._lane, room, 1.0, ASAP_PRIORITY)
            except Exception:  # noqa: BLE001 - a restarting shard: the normal puller logs it
                items = []
                await asyncio.sleep(0.5)
            link.express -= room - len(items)
            self._spawn(link, items, express=True)

    def _spawn(self, link: _ShardLink, items: list[Delivery], express: bool) -> None:
        # Even when stopping, what was leased is delivered (drain waits for it).
        for item in items:
            task = asyncio.get_running_loop().create_task(self._deliver(link, item, express))
            self._deliveries.add(task)  # keep a reference: the loop holds tasks weakly
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, link: _ShardLink, delivery: Delivery, express: bool = False) -> None:
        assert self._chain is not None
        link.sending[delivery.tag] = delivery.lease
        try:
            if time.time() >= delivery.expires_at:
                outcome = Outcome(delivery.tag, "failed", "herald", error="expired")
            else:
                # One deadline per attempt, whatever the provider does (a send waiting for a
                # pooled connection included); the heartbeat keeps the lease meanwhile.
                async with asyncio.timeout(self._settings.attempt_timeout):
                    outcome = await self._chain.send(render_message(delivery))
        except TimeoutError:
            outcome = Outcome(delivery.tag, "retry", "herald", code="deadline",
                              error=f"no answer within {self._settings.attempt_timeout:g}s")
        except TemplateError as exc:
            outcome = Outcome(delivery.tag, "failed", "herald", error=exc.message)
        except Exception as exc:
            log.exception("delivery crashed for %s", delivery.tag)
            outcome = Outcome(delivery.tag, "retry", "herald", error=f"{type(exc).__name__}: {exc}")
        finally:
            link.sending.pop(delivery.tag, None)
        self.counters[outcome.kind] += 1
        link.acks.append(dataclasses.replace(outcome, lease=delivery.lease))
        link.acks_ready.set()
        if express:
            link.express -= 1
            link.express_freed.set()
        else:
            link.inflight -= 1
            link.slot_freed.set()

    async def _acker(self, link: _ShardLink) -> None:
        while True:
            await link.acks_ready.wait()
            await asyncio.sleep(ACK_WINDOW_SECONDS)  # let a batch gather
            link.acks_ready.clear()
            batch, link.acks = link.acks, []
            link.acking = len(batch)
            while batch:
                try:
                    await link.handle.ack.remote(batch)
                except Exception:
                    log.exception("ack failed; retrying")
                    await asyncio.sleep(0.5)
                    continue
                acked, batch = batch, []
                link.acking = 0
                if self._chain is not None:
                    for provider in self._chain.providers:
                        await provider.acked(acked)

    async def _heartbeat(self, link: _ShardLink) -> None:
        """Renew the leases of sends still in flight, so a slow provider causes no duplicate."""
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            renewals = [LeaseRenewal(tag, token) for tag, token in link.sending.items()]
            renewals += [LeaseRenewal(o.tag, o.lease) for o in link.acks if o.lease is not None]
            if not renewals:
                continue
            try:
                await link.handle.renew.remote(renewals)
            except Exception:  # noqa: BLE001 - the shard is restarting: the next beat tries again
                log.warning("lease renewal failed", extra={"leases": len(renewals)})

    async def drain(self, timeout: float = 30.0) -> int:
        """Stop leasing, finish what is in flight, ack it; return how many were still in flight."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = sum(link.inflight + link.express for link in self._links)
            pending = sum(len(link.acks) + link.acking for link in self._links)
            if busy == 0 and pending == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(ACK_WINDOW_SECONDS * 4)
        left = sum(link.inflight + link.express for link in self._links)
        if self._chain is not None:
            await self._chain.close()
        return left
